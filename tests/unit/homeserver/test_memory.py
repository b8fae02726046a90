"""The process memory settings the `myelin` command applies at start, and the
single process's imports (modules only the split deployment needs stay out)."""

from __future__ import annotations

import json
import sys

import pytest

from homeserver.memory import limit_malloc_arenas
from tests.unit.homeserver.fresh_process import run_python


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_arena_cap_is_set_unless_the_operator_chose_one() -> None:
    assert run_python("from homeserver.memory import limit_malloc_arenas as f; print(f())") == "True"
    chosen = run_python("from homeserver.memory import limit_malloc_arenas as f; print(f())",
                         {"MALLOC_ARENA_MAX": "4"})
    assert chosen == "False"


def test_arena_cap_respects_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    assert limit_malloc_arenas() is False


def test_single_process_imports_leave_out_grpc_kafka_pygments_and_pillow() -> None:
    # What `myelin` (no personality) imports before serving: the monolith
    # and every component it builds, after the start-up memory settings.
    code = (
        "import sys, json\n"
        "from homeserver.memory import configure_process_memory\n"
        "configure_process_memory()\n"
        "import homeserver.cli, homeserver.monolith\n"
        "import roomserver.component, userapi.component, clientapi.component\n"
        "import syncapi.component, federationapi.component, mediaapi.component\n"
        "import clientapi.routing.directory, common.storage, alembic.command\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    loaded = set(json.loads(run_python(code)))
    assert "alembic" in loaded  # the check below would be vacuous otherwise
    assert "mako" in loaded
    for absent in ("grpc", "aiokafka", "pygments", "PIL"):
        assert absent not in loaded, f"{absent} is imported by the single process"
