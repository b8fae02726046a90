"""The client-server API as served matches the spec's OpenAPI description.

The routes come from the single process's own app (``myelin_routes``);
each spec operation one of them serves counts as implemented. A scenario
(``client_server_examples``) calls the implemented operations with success
and error requests against a running single process, and every answer's
body is validated against the schema the spec gives for its status. The
report (printed with ``pytest -s``, and written to the test's temporary
directory) lists what is implemented, exercised, and missing.

When Myelin serves more of the spec, raise ``IMPLEMENTED_FLOOR``: the count
may only go up.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.contract.client_server_examples import Context, examples
from tests.contract.client_server_runner import Coverage, ScenarioRunner, coverage_of
from tests.contract.myelin_routes import monolith_app
from tests.contract.openapi_spec import ClientServerSpec
from tests.e2e.harness import start_monolith

pytestmark = pytest.mark.e2e

# How many of the spec's client-server operations Myelin served when this
# was last raised. Raise it when you add endpoints; never lower it.
IMPLEMENTED_FLOOR = 155


@pytest.fixture(scope="module")
def coverage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coverage]:
    workdir = tmp_path_factory.mktemp("client_server_contract")
    spec = ClientServerSpec()
    found = coverage_of(monolith_app(workdir / "routes"), spec)
    # With a TURN server, so /voip/turnServer answers credentials.
    hs = start_monolith(workdir / "monolith", "--turn-uri", "turn:turn.example.org:3478?transport=udp",
                        "--turn-shared-secret", "contract")
    try:
        context = Context(hs.server_name)
        context["userId"] = context.user_id("alice")
        with httpx.Client(base_url=hs.base_url, timeout=30) as http:
            runner = ScenarioRunner(http, spec, found, context)
            runner.run_all(examples())
            runner.check_without_token(None, "M_MISSING_TOKEN")
            runner.check_without_token("not_a_token", "M_UNKNOWN_TOKEN")
    finally:
        hs.stop()
    found.report_path = str(workdir / "report.txt")
    report = found.report()
    (workdir / "report.txt").write_text(report + "\n")
    print("\n" + report)
    yield found


def test_every_answer_matches_the_spec(coverage: Coverage) -> None:
    failures = "\n".join(o.describe() for o in coverage.failures)
    assert not coverage.failures, f"{coverage.summary()}\n{failures}"


def test_examples_fit_the_spec(coverage: Coverage) -> None:
    assert not coverage.mistakes, f"{coverage.summary()}\n" + "\n".join(coverage.mistakes)


def test_implemented_count_does_not_drop(coverage: Coverage) -> None:
    assert len(coverage.implemented) >= IMPLEMENTED_FLOOR, (
        f"{coverage.summary()}; the floor is {IMPLEMENTED_FLOOR}: an endpoint stopped being served\n"
        + "\n".join(sorted(coverage.implemented)))


def test_implemented_operations_are_exercised_or_listed(coverage: Coverage) -> None:
    # Not exercised is allowed (reported); but an operation the scenario did
    # exercise must be one that is served.
    assert coverage.exercised <= set(coverage.implemented)


def test_spec_loads_and_counts_its_operations() -> None:
    spec = ClientServerSpec()
    assert len(spec.operations) > 150
    assert len({op.key for op in spec.operations}) == len(spec.operations)
    # The loader resolves $refs into definitions/ (the 401 error schema) and checks types and patterns.
    whoami = next(op for op in spec.operations if op.key == "GET /_matrix/client/v3/account/whoami")
    assert spec.validate_response(whoami, 200, {"user_id": "@a:example.org", "device_id": "D"}) == []
    assert spec.validate_response(whoami, 200, {"user_id": "a:example.org"}) != []
    assert spec.validate_response(whoami, 401, {"errcode": "M_UNKNOWN_TOKEN", "error": "x"}) == []
    assert spec.validate_response(whoami, 401, {"error": "no errcode"}) != []
    assert spec.validate_response(whoami, 201, {"user_id": "@a:example.org"}) != []


def test_vendored_spec_is_complete() -> None:
    # Every file an operation's schemas refer to was vendored.
    spec = ClientServerSpec()
    for file in spec.referenced_files():
        assert file.exists(), file


def _contains_ref(value: object) -> bool:
    if isinstance(value, dict):
        return "$ref" in value or any(_contains_ref(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_ref(v) for v in value)
    return False


def test_the_specs_own_examples_validate() -> None:
    # Every schema of every operation resolves, and accepts the spec's own
    # example answers (those written out; some point at event examples
    # with a $ref instead, which is not an answer).
    spec = ClientServerSpec()
    checked, problems = 0, []
    for operation in spec.operations:
        for status, response in operation.operation.get("responses", {}).items():
            if not status.isdigit() or "$ref" in response:
                continue
            for name, example in response.get("content", {}).get("application/json", {}).get(
                    "examples", {}).items():
                if "value" not in example or _contains_ref(example["value"]):
                    continue
                checked += 1
                found = spec.validate_response(operation, int(status), example["value"])
                problems += [f"{operation.key} {status} {name}: {p}" for p in found]
    assert checked > 200, checked
    assert problems == []
