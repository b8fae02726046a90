"""Runs the client-server examples against a live Myelin and checks every
answer against the spec; builds the coverage report."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from common.http import App
from tests.contract.client_server_examples import Context, Example, RawBody, resolve
from tests.contract.myelin_routes import MyelinRoute, route_for, routes_of
from tests.contract.openapi_spec import ClientServerSpec, SpecOperation


@dataclass
class Outcome:
    """One request the scenario made and what was wrong with its answer."""

    operation: SpecOperation
    what: str                  # "PUT /_matrix/client/v3/rooms/!abc/send/..." as sent
    status: int
    problems: list[str]

    def describe(self) -> str:
        return f"{self.operation.key}: {self.what} -> {self.status}: " + "; ".join(self.problems)


@dataclass
class Coverage:
    """Which spec operations Myelin serves, and which the scenario called."""

    spec: ClientServerSpec
    implemented: dict[str, MyelinRoute]                 # operation key -> the route serving it
    other_routes: list[MyelinRoute]                     # routes no spec operation reaches
    exercised: set[str] = field(default_factory=set)
    outcomes: list[Outcome] = field(default_factory=list)
    mistakes: list[str] = field(default_factory=list)   # examples that do not fit the spec
    report_path: str = ""                               # where the full report was written

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.problems]

    def summary(self) -> str:
        return (f"Myelin implements {len(self.implemented)} of {len(self.spec.operations)} client-server "
                f"operations; the scenario exercised {len(self.exercised & set(self.implemented))} of them "
                f"with {len(self.outcomes)} requests, {len(self.failures)} not matching the spec"
                + (f" (full report: {self.report_path})" if self.report_path else ""))

    def report(self) -> str:
        lines = [self.summary(), ""]
        lines.append("implemented and exercised:")
        lines += [f"  {k}" for k in sorted(self.implemented) if k in self.exercised]
        lines.append("implemented, not exercised (add an example to client_server_examples.py):")
        lines += [f"  {k}" for k in sorted(self.implemented) if k not in self.exercised]
        lines.append("not implemented:")
        lines += [f"  {op.key}{' (deprecated)' if op.deprecated else ''}"
                  for op in self.spec.operations if op.key not in self.implemented]
        lines.append("Myelin routes no client-server operation reaches (other prefixes, other APIs):")
        lines += [f"  {r}" for r in self.other_routes]
        if self.failures:
            lines.append("answers not matching the spec:")
            lines += [f"  {o.describe()}" for o in self.failures]
        if self.mistakes:
            lines.append("examples that do not fit the spec (fix the table):")
            lines += [f"  {m}" for m in self.mistakes]
        return "\n".join(lines)


def coverage_of(app: App, spec: ClientServerSpec) -> Coverage:
    implemented: dict[str, MyelinRoute] = {}
    for operation in spec.operations:
        route = route_for(app, operation.method, operation.example_path())
        if route is not None:
            implemented[operation.key] = route
    reached = set(implemented.values())
    # The r0 prefix repeats v3 (served for old clients): not reported as extra.
    other = [r for r in routes_of(app) if r not in reached and "/_matrix/client/r0/" not in r.path]
    return Coverage(spec=spec, implemented=implemented, other_routes=other)


class ScenarioRunner:
    def __init__(self, http: httpx.Client, spec: ClientServerSpec, coverage: Coverage, context: Context) -> None:
        self.http = http
        self.spec = spec
        self.coverage = coverage
        self.context = context
        self.by_key = {op.key: op for op in spec.operations}

    def run_all(self, examples: list[Example]) -> None:
        for example in examples:
            operation = self.by_key.get(example.operation_key)
            if operation is None:
                self.coverage.mistakes.append(f"{example.operation_key}: no such operation in the spec")
                continue
            if example.operation_key not in self.coverage.implemented:
                continue
            if any(need not in self.coverage.implemented for need in example.needs):
                continue
            self.run(operation, example)

    def _path_for(self, operation: SpecOperation, example: Example) -> str:
        values: dict[str, str] = {}
        for parameter in operation.path_parameters:
            name = parameter["name"]
            if name in example.path_values:
                values[name] = resolve(example.path_values[name], self.context)
            elif name == "txnId":
                values[name] = uuid.uuid4().hex
            else:
                values[name] = self.context[name]
        return operation.example_path(values)

    def run(self, operation: SpecOperation, example: Example) -> Any:
        """Sends the example, checks the answer; answers the JSON body."""
        self.coverage.exercised.add(operation.key)
        try:
            path = self._path_for(operation, example)
            body = resolve(example.body, self.context)
            query = {k: str(resolve(v, self.context)) for k, v in example.query.items()}
            headers = {}
            if example.user is not None:
                headers["Authorization"] = f"Bearer {self.context.tokens[example.user]}"
        except KeyError as missing:
            # An earlier example that would have provided it was passed over or failed.
            self.coverage.mistakes.append(f"{example.operation_key}: no value for {missing} (an earlier step "
                                          "did not run or failed)")
            return None
        if isinstance(body, RawBody):
            response = self.http.request(example.method, path, params=query, headers=headers,
                                         content=bytes(body))
        elif body is None and example.method in ("GET", "DELETE"):
            response = self.http.request(example.method, path, params=query, headers=headers)
        else:
            response = self.http.request(example.method, path, params=query, headers=headers,
                                         json=body if body is not None else {})
        return self.check(operation, example, f"{example.method} {path}", response)

    def check(self, operation: SpecOperation, example: Example, what: str, response: httpx.Response) -> Any:
        problems: list[str] = []
        expected = example.expect if isinstance(example.expect, tuple) else (example.expect,)
        try:
            body = response.json()
        except json.JSONDecodeError:
            body = None
            problems.append(f"the body is not JSON: {response.text[:200]!r}")
        if response.status_code not in expected:
            problems.append(f"expected status {' or '.join(map(str, expected))}, body {response.text[:300]}")
        if body is not None and example.token_failure:
            problems += self.spec.validate_error(body)
        elif body is not None:
            problems += self.spec.validate_response(operation, response.status_code, body)
            if example.errcode is not None and response.status_code >= 400 and (
                    not isinstance(body, dict) or body.get("errcode") != example.errcode):
                problems.append(f"expected errcode {example.errcode}, body {response.text[:300]}")
        self.coverage.outcomes.append(Outcome(operation, what, response.status_code, problems))
        # Successes, and the 401 that opens interactive auth, carry what later examples use.
        if not problems and example.keep is not None and (response.status_code < 300
                                                          or response.status_code == 401):
            example.keep(self.context, body)
        return body

    def check_without_token(self, token: str | None, errcode: str) -> None:
        """Every implemented operation that needs an access token refuses a
        request without one (or with a bad one) with the spec's 401 error."""
        for key in sorted(self.coverage.implemented):
            operation = self.by_key[key]
            if not operation.needs_access_token:
                continue
            values = {p["name"]: str(self.context.values.get(p["name"], p.get("example") or "x"))
                      for p in operation.path_parameters}
            path = operation.example_path(values)
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            if operation.method in ("GET", "DELETE"):
                response = self.http.request(operation.method, path, headers=headers)
            else:
                response = self.http.request(operation.method, path, headers=headers, json={})
            example = Example(operation.method, operation.full_path, user=None, expect=401, errcode=errcode,
                              token_failure=True)
            self.check(operation, example, f"{operation.method} {path} ({'bad' if token else 'no'} token)",
                       response)
