"""Canonical JSON: the spec's examples (appendices "Canonical JSON") and
properties of the encoding."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from matrixlib.canonical_json import (
    MAX_SAFE_INTEGER,
    CanonicalJSONError,
    decode_json,
    encode_canonical_json,
)

# (input JSON text, canonical output) pairs, verbatim from appendices.md.
SPEC_EXAMPLES = [
    ("{}", "{}"),
    ('{\n    "one": 1,\n    "two": "Two"\n}', '{"one":1,"two":"Two"}'),
    ('{\n    "b": "2",\n    "a": "1"\n}', '{"a":"1","b":"2"}'),
    ('{"b":"2","a":"1"}', '{"a":"1","b":"2"}'),
    (
        """{
    "auth": {
        "success": true,
        "mxid": "@john.doe:example.com",
        "profile": {
            "display_name": "John Doe",
            "three_pids": [
                {
                    "medium": "email",
                    "address": "john.doe@example.org"
                },
                {
                    "medium": "msisdn",
                    "address": "123456789"
                }
            ]
        }
    }
}""",
        '{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":'
        '[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},'
        '"success":true}}',
    ),
    ('{\n    "a": "日本語"\n}', '{"a":"日本語"}'),
    ('{\n    "本": 2,\n    "日": 1\n}', '{"日":1,"本":2}'),
    ('{\n    "a": "\\u65E5"\n}', '{"a":"日"}'),
    ('{\n    "a": null\n}', '{"a":null}'),
    ('{\n    "a": -0,\n    "b": 1e10\n}', '{"a":0,"b":10000000000}'),
]


def _integral_number(text: str) -> int | float:
    # JSON has one number type: the spec's `1e10` is the integer 10**10,
    # which Python's parser would hand over as a float.
    value = float(text)
    return int(value) if value.is_integer() else value


@pytest.mark.parametrize(("source", "expected"), SPEC_EXAMPLES)
def test_spec_examples(source: str, expected: str) -> None:
    value = json.loads(source, parse_float=_integral_number)
    assert encode_canonical_json(value) == expected.encode("utf-8")


def test_spec_examples_through_decode_json() -> None:
    # decode_json keeps exponent numbers as floats (and the strict encoder
    # refuses them); every other example goes through it unchanged.
    for source, expected in SPEC_EXAMPLES[:-1]:
        assert encode_canonical_json(decode_json(source)) == expected.encode("utf-8")
    with pytest.raises(CanonicalJSONError):
        encode_canonical_json(decode_json(SPEC_EXAMPLES[-1][0]))


def test_control_characters_use_the_spec_escapes() -> None:
    encoded = encode_canonical_json({"a": "\b\t\n\f\r\"\\\x00\x1f\x7f"})
    assert encoded == b'{"a":"\\b\\t\\n\\f\\r\\"\\\\\\u0000\\u001f\x7f"}'


def test_keys_sort_by_code_point_not_utf16() -> None:
    # U+FFFF sorts before U+10000 by code point; in UTF-16 units the
    # surrogate pair of U+10000 (0xD800...) would sort first.
    encoded = encode_canonical_json({"\U00010000": 1, "\uffff": 2})
    assert encoded == '{"\uffff":2,"\U00010000":1}'.encode()


@pytest.mark.parametrize("value", [MAX_SAFE_INTEGER + 1, -MAX_SAFE_INTEGER - 1, 2**63])
def test_integers_out_of_range_are_refused(value: int) -> None:
    with pytest.raises(CanonicalJSONError):
        encode_canonical_json({"n": value})
    # ... unless asked to be lenient (old room versions' events).
    assert encode_canonical_json({"n": value}, strict=False) == f'{{"n":{value}}}'.encode()


def test_range_limits_are_inclusive() -> None:
    assert encode_canonical_json([MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER]) == (
        f"[{MAX_SAFE_INTEGER},{-MAX_SAFE_INTEGER}]".encode()
    )


@pytest.mark.parametrize("value", [1.5, 1.0, float("nan"), {"nested": [0.1]}])
def test_floats_are_refused(value: Any) -> None:
    with pytest.raises(CanonicalJSONError):
        encode_canonical_json(value)


def test_non_string_keys_are_refused() -> None:
    with pytest.raises(CanonicalJSONError):
        encode_canonical_json({1: "a"})


@pytest.mark.parametrize("text", ['{"a":1,"a":2}', '{"x":[{"b":1,"c":2,"b":1}]}', '{"a":NaN}',
                                  '{"a":Infinity}', '[-Infinity]'])
def test_decode_refuses_duplicates_and_constants(text: str) -> None:
    with pytest.raises(ValueError):
        decode_json(text)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), json_values, max_size=8), st.randoms())
def test_encoding_does_not_depend_on_key_order(obj: dict[str, Any], rnd: Any) -> None:
    items = list(obj.items())
    rnd.shuffle(items)
    assert encode_canonical_json(dict(items)) == encode_canonical_json(obj)


@given(json_values)
def test_encoding_round_trips_and_is_a_fixed_point(value: Any) -> None:
    encoded = encode_canonical_json(value)
    decoded = decode_json(encoded)
    assert decoded == value
    assert encode_canonical_json(decoded) == encoded
    # Shortest form: no insignificant whitespace outside strings.
    assert encoded == json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


# The fast path (orjson, for plain values) must give the reference
# encoder's bytes, and leave everything else to it.
lenient_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


def _reference(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True,
                      allow_nan=False).encode("utf-8")


@given(lenient_values)
def test_lenient_encoding_is_the_reference_encoding(value: Any) -> None:
    assert encode_canonical_json(value, strict=False) == _reference(value)


@pytest.mark.parametrize("value", [
    {"big": 2**64, "small": -(2**64)},
    {"f": 1e16, "g": 0.1, "h": -0.0},
    {"nested": [{"x": 1.5}]},
    [True, False, None, 2**63 - 1, -(2**63)],
])
def test_lenient_values_orjson_would_write_differently(value: Any) -> None:
    assert encode_canonical_json(value, strict=False) == _reference(value)


def test_subclasses_encode_as_their_base_types() -> None:
    class Text(str):
        pass

    class Mapping(dict[str, Any]):
        pass

    value = Mapping(b=Text("x"), a=[Text("y")])
    assert encode_canonical_json(value) == b'{"a":["y"],"b":"x"}'


def test_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(ValueError):
        encode_canonical_json({"a": "\ud800"})


def test_kept_encodings_cost_about_their_length() -> None:
    # orjson's result may carry its whole working buffer (4 KiB); what
    # encode_canonical_json returns is an exact-size copy, as callers keep it.
    import tracemalloc

    values = [{"body": f"message {n}", "n": n, "list": ["$p1", "$a1"]} for n in range(200)]
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        kept = [encode_canonical_json(value) for value in values]
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    length = sum(len(data) for data in kept)
    assert after - before < length + 200 * 150
