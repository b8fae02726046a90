"""The client-server API's OpenAPI description, loaded for response checks.

The Matrix spec describes each endpoint in ``data/api/client-server/*.yaml``
(OpenAPI 3.1, whose schemas are JSON Schema 2020-12) with ``$ref``s into
``definitions/``, into other APIs' definitions and into the event schemas,
all as paths relative to the referring file. Every YAML file becomes a
``referencing`` resource at its ``file://`` URI, so a ``$ref`` resolves the
way the spec's own tooling resolves it; a response is checked against
``{"$ref": "<file URI>#<pointer to the response's schema>"}``.

The spec files used are vendored under ``matrix_spec/`` (see its README),
so the test runs the same on every machine.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_ROOT = Path(__file__).resolve().parent / "matrix_spec"
CLIENT_SERVER_DIR = SPEC_ROOT / "data" / "api" / "client-server"

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
_PARAMETER = re.compile(r"\{([^}]+)\}")


def _stringify_keys(value: Any) -> Any:
    # YAML turns unquoted response codes (200:) into ints; JSON pointers need strings.
    if isinstance(value, dict):
        return {str(k): _stringify_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify_keys(v) for v in value]
    return value


@cache
def load_yaml(path: Path) -> Any:
    return _stringify_keys(yaml.safe_load(path.read_text()))


def _escape_pointer(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _retrieve(uri: str) -> Resource[Any]:
    if not uri.startswith("file://"):
        raise LookupError(f"the spec refers outside its files: {uri}")
    return Resource.from_contents(load_yaml(Path(uri.removeprefix("file://"))),
                                  default_specification=DRAFT202012)


@dataclass(frozen=True)
class SpecOperation:
    """One method on one path of the client-server API."""

    method: str                 # upper case: "PUT"
    base_path: str              # "/_matrix/client/v3"
    spec_path: str              # "/rooms/{roomId}/send/{eventType}/{txnId}"
    yaml_path: str              # the key in the file's paths (spec_path, but verbatim)
    file: Path
    operation: dict[str, Any]
    path_parameters: tuple[dict[str, Any], ...]

    @property
    def key(self) -> str:
        """How the reports name it: "PUT /_matrix/client/v3/rooms/{roomId}/send/...". """
        return f"{self.method} {self.full_path}"

    @property
    def full_path(self) -> str:
        return self.base_path + self.spec_path

    @property
    def needs_access_token(self) -> bool:
        """True when the operation requires an access token (not merely accepts one)."""
        schemes = self.operation.get("security")
        if not schemes:
            return False
        # An empty requirement ({}) among the alternatives means "no token needed".
        return all(requirement for requirement in schemes)

    @property
    def deprecated(self) -> bool:
        return bool(self.operation.get("deprecated"))

    @property
    def pointer(self) -> str:
        return f"/paths/{_escape_pointer(self.yaml_path)}/{self.method.lower()}"

    def documented_statuses(self) -> set[str]:
        return set(self.operation.get("responses", {}))

    def json_schema_pointer(self, status: int) -> str | None:
        """The JSON pointer (in ``file``) to the schema of the JSON body
        documented for ``status``, or None when that status has none."""
        response = self.operation.get("responses", {}).get(str(status))
        if response is None:
            return None
        pointer = f"{self.pointer}/responses/{status}"
        # A response may itself be a $ref (#/components/responses/...).
        while "$ref" in response:
            ref = response["$ref"]
            if not ref.startswith("#/"):
                raise LookupError(f"{self.key}: response $ref outside the file: {ref}")
            pointer = ref[1:]
            response = _follow_pointer(load_yaml(self.file), pointer)
        content = response.get("content", {})
        if "application/json" not in content or "schema" not in content["application/json"]:
            return None
        return f"{pointer}/content/{_escape_pointer('application/json')}/schema"

    def example_path(self, values: dict[str, str] | None = None) -> str:
        """The full path with every parameter filled (from ``values``, else the
        spec's example, else a placeholder), each quoted as one path segment."""
        values = values or {}
        examples = {p["name"]: p.get("example") for p in self.path_parameters}

        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            value = values.get(name, examples.get(name) or f"example_{name}")
            return quote(str(value), safe="")

        return _PARAMETER.sub(fill, self.full_path)


def _follow_pointer(document: Any, pointer: str) -> Any:
    node = document
    for token in pointer.lstrip("/").split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


def _base_path(document: dict[str, Any]) -> str:
    for server in document.get("servers", []):
        base = server.get("variables", {}).get("basePath", {}).get("default")
        if base is not None:
            return str(base)
    return "/_matrix/client/v3"


def _path_parameters(document: dict[str, Any], path_item: dict[str, Any],
                     operation: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    found: dict[str, dict[str, Any]] = {}
    for parameter in [*path_item.get("parameters", []), *operation.get("parameters", [])]:
        while "$ref" in parameter:
            parameter = _follow_pointer(document, parameter["$ref"].removeprefix("#"))
        if parameter.get("in") == "path":
            found[parameter["name"]] = parameter
    return tuple(found.values())


class ClientServerSpec:
    """Every operation of the client-server API, and response validation."""

    def __init__(self, directory: Path = CLIENT_SERVER_DIR) -> None:
        self.directory = directory
        self.error_schema = directory / "definitions" / "errors" / "error.yaml"
        self.registry: Registry[Any] = Registry(retrieve=_retrieve)  # type: ignore[call-arg]
        # peeking_events.yaml repeats GET /events (spelt "/events " to keep
        # the YAML keys apart): the first description of a key wins.
        by_key: dict[str, SpecOperation] = {}
        for operation in self._operations():
            by_key.setdefault(operation.key, operation)
        self.operations: list[SpecOperation] = list(by_key.values())

    def _operations(self) -> Iterator[SpecOperation]:
        for file in sorted(self.directory.glob("*.yaml")):
            document = load_yaml(file)
            if not isinstance(document, dict) or "paths" not in document:
                continue
            base = _base_path(document)
            for spec_path, path_item in document["paths"].items():
                for method in HTTP_METHODS:
                    if method in path_item:
                        operation = path_item[method]
                        yield SpecOperation(
                            method=method.upper(), base_path=base, spec_path=spec_path.strip(),
                            yaml_path=spec_path, file=file,
                            operation=operation,
                            path_parameters=_path_parameters(document, path_item, operation))

    def _validator(self, file: Path, pointer: str) -> Draft202012Validator:
        schema = {"$ref": f"{file.as_uri()}#{pointer}"}
        return Draft202012Validator(schema, registry=self.registry)

    def validate_response(self, operation: SpecOperation, status: int, body: Any) -> list[str]:
        """What is wrong with ``body`` as ``operation``'s answer with ``status``:
        an empty list when it matches. A status the operation does not document
        is accepted for errors (any endpoint may fail with the common error
        codes) when the body is the spec's standard error object, and is a
        problem for successes."""
        pointer = operation.json_schema_pointer(status)
        if pointer is not None:
            return _problems(self._validator(operation.file, pointer), body)
        if str(status) in operation.documented_statuses():
            return []  # documented without a JSON body (a redirect, media bytes)
        if status >= 400:
            return self.validate_error(body)
        return [f"status {status} is not documented (documented: "
                f"{', '.join(sorted(operation.documented_statuses()))})"]

    def validate_error(self, body: Any) -> list[str]:
        """What is wrong with ``body`` as the spec's standard error object.
        Token failures (401 M_MISSING_TOKEN, M_UNKNOWN_TOKEN) are described
        once for every endpoint, not in each operation's 401 (which for
        interactive-auth endpoints documents the auth flows instead)."""
        return _problems(self._validator(self.error_schema, ""), body)

    def referenced_files(self) -> set[Path]:
        """Every file the operations' schemas reach (for vendoring the spec)."""
        seen: set[Path] = set()
        pending = [op.file for op in self.operations]
        while pending:
            file = pending.pop()
            if file in seen:
                continue
            seen.add(file)
            for ref in _refs(load_yaml(file)):
                target = ref.split("#", 1)[0]
                if target:
                    pending.append((file.parent / target).resolve())
        return seen


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _problems(validator: Draft202012Validator, body: Any) -> list[str]:
    return [f"{'/'.join(str(p) for p in error.absolute_path) or '(body)'}: {error.message}"
            for error in sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.path)))]


def vendor(source_spec_root: Path, target_root: Path = SPEC_ROOT) -> list[Path]:
    """Copies the client-server API's files, and every file they refer to,
    from a checkout of matrix-org/matrix-spec into ``target_root``."""
    import shutil

    source_spec_root = source_spec_root.resolve()
    spec = ClientServerSpec(source_spec_root / "data" / "api" / "client-server")
    copied = []
    for file in sorted(spec.referenced_files()):
        target = target_root / file.relative_to(source_spec_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target)
        copied.append(target)
    shutil.copyfile(source_spec_root / "LICENSE", target_root / "LICENSE")
    return copied


if __name__ == "__main__":
    import sys

    print(f"copied {len(vendor(Path(sys.argv[1])))} files")
