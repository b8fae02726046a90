"""The interop suite's module-scoped pairings (tests/e2e/federation/harness.py)."""

from tests.e2e.federation.harness import myelin_and_synapse, myelin_pair

__all__ = ["myelin_and_synapse", "myelin_pair"]
