"""Canonical JSON (appendices: Signing JSON): sorted keys, no insignificant
whitespace, UTF-8, integers in [-(2**53)+1, (2**53)-1], no floats."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import canonicaljson
import orjson

MAX_SAFE_INTEGER = 2**53 - 1


class CanonicalJSONError(ValueError):
    pass


def encode_canonical_json(value: Any, *, strict: bool = True) -> bytes:
    """The canonical encoding of ``value`` as UTF-8 bytes.

    ``strict=False`` skips the integer-range and float checks: events of room
    versions 1-5 may hold such values (the spec asks servers to cope), and
    their hashes and signatures were computed over this same encoding."""
    if _is_plain(value, strict):
        # orjson gives the same bytes as the reference encoder below for
        # these values (sorted keys by code point, the same escapes, UTF-8),
        # about twenty times faster; it refuses integers beyond 64 bits. An
        # exact-size copy: the bytes orjson returns may hold its whole working
        # buffer (4 KiB for a small event), and some callers keep the result.
        try:
            return bytes(memoryview(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)))
        except orjson.JSONEncodeError:
            pass
    if strict:
        _check_values(value)
    return bytes(canonicaljson.encode_canonical_json(value))


def _is_plain(value: Any, strict: bool) -> bool:
    """Whether ``value`` holds only dicts with string keys, lists, strings,
    booleans, None and integers (within the canonical range if ``strict``),
    all of exactly those types: what orjson encodes as canonical JSON. Floats
    (which orjson formats its own way), subclasses and anything else are
    left to the reference encoder and ``_check_values``."""
    limit = MAX_SAFE_INTEGER if strict else 2**63 - 1
    pending = [value]
    while pending:
        current = pending.pop()
        kind = type(current)
        items: Iterable[Any]
        if kind is dict:
            for key in current:
                if type(key) is not str:
                    return False
            items = current.values()
        elif kind is list:
            items = current
        elif kind is str or kind is bool or current is None:
            continue
        elif kind is not int or not -limit <= current <= limit:
            return False
        else:
            continue
        # A container's members: scalars checked here, containers queued.
        for item in items:
            item_kind = type(item)
            if item_kind is str or item_kind is bool or item is None:
                continue
            if item_kind is dict or item_kind is list:
                pending.append(item)
            elif item_kind is not int or not -limit <= item <= limit:
                return False
    return True


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
