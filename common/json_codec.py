"""Fast JSON for hot paths (a /sync body, stored events read back): orjson,
with the standard library where orjson would differ.

orjson parses several times faster than ``json`` and serialises a large
/sync body in a fraction of the time. It differs in a few places: it
refuses to write integers beyond 64 bits, NaN and Infinity, and keys that
are not strings, and it reads an integer outside [-2**63, 2**64) as a float
(events of old room versions may carry such integers: their canonical JSON
had no integer range). So ``dumps`` falls back to ``json`` on a refusal, and
``loads`` leaves text with a run of 19 digits or more to ``json`` (a cheap
byte scan; such text is rare). Output is the same either way: compact,
UTF-8, not ASCII-escaped.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# Digits to "0", everything else to a space: a run of 19 zeros marks a long number.
_DIGITS_ONLY = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_LONG_NUMBER = b"0" * 19


def loads(text: str | bytes) -> Any:
    data = text.encode() if isinstance(text, str) else text
    if _LONG_NUMBER in data.translate(_DIGITS_ONLY):
        return json.loads(data)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        # What json accepts and orjson does not (NaN, Infinity): json decides.
        return json.loads(data)


class Serialised:
    """A value already written as JSON, put in a body that ``dumps`` writes
    (a large body then holds one object per part instead of its whole tree)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def serialised(value: Any) -> Serialised:
    # A copy of the exact size is what is kept: the bytes orjson returns keep
    # its whole working buffer (4 KiB and more for a 300-byte event), and a
    # 1,000-room /sync holds thousands of these until it is written out.
    return Serialised(bytes(memoryview(dumps(value))))


def _as_fragment(value: Any) -> Any:
    if isinstance(value, Serialised):
        return orjson.Fragment(value.data)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, as ``json.dumps(value, ensure_ascii=False, separators=(",", ":"))``;
    a ``Serialised`` part is written as it is."""
    try:
        return orjson.dumps(value, default=_as_fragment)
    except TypeError:
        # orjson.JSONEncodeError is a TypeError: a key that is not a string,
        # an integer beyond 64 bits, a type it does not know.
        return json.dumps(_parsed(value), ensure_ascii=False, separators=(",", ":")).encode()


def _parsed(value: Any) -> Any:
    """``value`` with its ``Serialised`` parts read back (for json, which cannot write them)."""
    if isinstance(value, Serialised):
        return json.loads(value.data)
    if isinstance(value, dict):
        return {k: _parsed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_parsed(v) for v in value]
    return value
