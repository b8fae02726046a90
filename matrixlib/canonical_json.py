"""Canonical JSON (appendices: Signing JSON): sorted keys, no insignificant
whitespace, UTF-8, integers in [-(2**53)+1, (2**53)-1], no floats."""

from __future__ import annotations

import json
from typing import Any

import canonicaljson

MAX_SAFE_INTEGER = 2**53 - 1


class CanonicalJSONError(ValueError):
    pass


def encode_canonical_json(value: Any, *, strict: bool = True) -> bytes:
    """The canonical encoding of ``value`` as UTF-8 bytes.

    ``strict=False`` skips the integer-range and float checks: events of room
    versions 1-5 may hold such values (the spec asks servers to cope), and
    their hashes and signatures were computed over this same encoding."""
    if strict:
        _check_values(value)
    return bytes(canonicaljson.encode_canonical_json(value))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Called for every object of every parsed event: the dict is built in C,
    # and the pairs are looked at one by one only when a key came twice.
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return result


def decode_json(data: bytes | str) -> Any:
    """Parses JSON, refusing the constants JSON does not have (NaN,
    Infinity) and keys that appear twice."""
    return json.loads(data, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)


def _check_values(value: Any) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise CanonicalJSONError(f"integer {value} is out of the canonical range")
        return
    if isinstance(value, float):
        raise CanonicalJSONError("floats are not allowed in canonical JSON")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalJSONError("object keys must be strings")
            _check_values(item)
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check_values(item)
        return
    raise CanonicalJSONError(f"{type(value).__name__} is not a JSON value")
