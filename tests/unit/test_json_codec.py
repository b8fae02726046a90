"""common.json_codec: orjson's speed with json's answers."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from common import json_codec


@pytest.mark.parametrize("value", [
    {"type": "m.room.message", "content": {"body": "héllo ☃ \u2028", "n": [1, -2, 2**53 - 1]}},
    {"nested": {"a": [None, True, False, 1.5, "x"]}, "empty": {}},
    [],
])
def test_dumps_is_compact_utf8_json(value: Any) -> None:
    assert json_codec.dumps(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def test_dumps_falls_back_for_what_orjson_refuses() -> None:
    # Integers beyond 64 bits and keys that are not strings.
    assert json_codec.dumps({"a": 2**70}) == b'{"a":1180591620717411303424}'
    assert json_codec.dumps({1: "x"}) == b'{"1":"x"}'


@pytest.mark.parametrize("number", [2**64, -(2**63) - 1, 10**30, 2**63, -(2**63)])
def test_loads_keeps_long_integers_exact(number: int) -> None:
    # orjson would read those outside [-2**63, 2**64) as floats.
    parsed = json_codec.loads(json.dumps({"content": {"n": number}}))
    assert parsed["content"]["n"] == number and isinstance(parsed["content"]["n"], int)


def test_loads_reads_what_json_reads() -> None:
    text = '{"a": [1, 2.25, "\\u00e9", null], "b": {"c": true}}'
    assert json_codec.loads(text) == json.loads(text)
    assert json_codec.loads(text.encode()) == json.loads(text)
    assert math.isnan(json_codec.loads('{"x": NaN}')["x"])


def test_serialised_parts_are_written_as_they_are() -> None:
    event = {"type": "m.room.message", "content": {"body": "é", "n": 2**70}}
    body: dict[str, Any] = {"rooms": {"join": {"!r": {"timeline": {"events": [json_codec.serialised(event)]}}}}}
    expected: dict[str, Any] = {"rooms": {"join": {"!r": {"timeline": {"events": [event]}}}}}
    assert json.loads(json_codec.dumps(body)) == expected
    # A body orjson refuses elsewhere (a long integer) still writes its parts.
    body["account_data"] = {"n": 2**70}
    expected["account_data"] = {"n": 2**70}
    assert json.loads(json_codec.dumps(body)) == expected


def test_serialised_parts_keep_only_their_own_size() -> None:
    # What a 1,000-room /sync holds until it is written: thousands of parts.
    import tracemalloc

    event = {"type": "m.room.member", "state_key": "@a:b", "sender": "@a:b", "content": {"membership": "join"}}
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        parts = [json_codec.serialised(event) for _ in range(1000)]
        held = (tracemalloc.get_traced_memory()[0] - before) / len(parts)
    finally:
        tracemalloc.stop()
    assert json_codec.dumps([parts[0]]) == json_codec.dumps([event])
    # The JSON is under 100 bytes; orjson's own result would hold 4 KiB.
    assert held < 400, held
