"""X-Matrix request authentication: header syntax, signing and verifying."""

from __future__ import annotations

import pytest
import signedjson.key
import signedjson.sign

from matrixlib.federation_auth import (
    AuthHeaderError,
    XMatrixAuthorization,
    format_x_matrix_header,
    parse_x_matrix_header,
    request_json,
    sign_request,
    verify_request,
)
from matrixlib.signing import SignatureError, SigningKey, generate_signing_key

ORIGIN = "origin.example:8448"
DESTINATION = "dest.example"
URI = "/_matrix/federation/v1/send/txn1?x=1"
BODY = {"pdus": [], "edus": [{"edu_type": "m.typing", "content": {"typing": True}}]}


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate_signing_key("k1")


def signed_header(key: SigningKey, **overrides: object) -> XMatrixAuthorization:
    args: dict[str, object] = {"method": "PUT", "uri": URI, "origin": ORIGIN, "destination": DESTINATION,
                               "content": BODY}
    args.update(overrides)
    return parse_x_matrix_header(sign_request(key, **args))  # type: ignore[arg-type]


# -- parsing ------------------------------------------------------------------------


def test_parse_the_spec_example() -> None:
    auth = parse_x_matrix_header('X-Matrix origin="origin.hs.example.com",destination="destination.hs.example.com",'
                                 'key="ed25519:key1",sig="ABCDEF..."')
    assert auth == XMatrixAuthorization(origin="origin.hs.example.com", key_id="ed25519:key1",
                                        signature="ABCDEF...", destination="destination.hs.example.com")


def test_parse_unquoted_values_with_colons_spaces_case_and_unknown_params() -> None:
    auth = parse_x_matrix_header('x-matrix   Origin=a.example:8448 ,\tKEY=ed25519:k1 , sig=abc+/ ,'
                                 ' foo="bar, baz",Destination=b.example')
    assert auth.origin == "a.example:8448"
    assert auth.key_id == "ed25519:k1"
    assert auth.signature == "abc+/"
    assert auth.destination == "b.example"


def test_parse_unescapes_quoted_values() -> None:
    auth = parse_x_matrix_header(r'X-Matrix origin="a.example",key="ed25519:k\1",sig="s\"ig"')
    assert auth.key_id == "ed25519:k1"
    assert auth.signature == 's"ig'


def test_destination_is_optional_for_old_senders() -> None:
    assert parse_x_matrix_header('X-Matrix origin=a.example,key="ed25519:k",sig="s"').destination is None


@pytest.mark.parametrize("header", [
    "",
    "Bearer abc",
    "X-Matrix",
    'X-Matrix key="ed25519:k",sig="s"',                        # no origin
    'X-Matrix origin="a.example",sig="s"',                      # no key
    'X-Matrix origin="a.example",key="ed25519:k"',              # no sig
    'X-Matrix origin="a.example",key="ed25519:k",sig="s',       # unterminated quote
    'X-Matrix origin="a.example" key="ed25519:k",sig="s"',      # no comma
    'X-Matrix origin="a.example",key="ed25519:k",sig=',         # empty value
    'X-Matrix origin="a.example",origin="b.example",key="ed25519:k",sig="s"',  # twice
    'X-Matrix origin="not a server",key="ed25519:k",sig="s"',
    'X-Matrix origin="a.example",key="rsa:k",sig="s"',          # unknown algorithm
    'X-Matrix origin="a.example",destination="b example",key="ed25519:k",sig="s"',
    'X-Matrix =x,origin="a.example",key="ed25519:k",sig="s"',
])
def test_malformed_headers_are_refused(header: str) -> None:
    with pytest.raises(AuthHeaderError):
        parse_x_matrix_header(header)


def test_format_round_trips_and_follows_the_compatibility_advice() -> None:
    auth = XMatrixAuthorization(origin="a.example:1", key_id="ed25519:k", signature="s/ig", destination="b.example")
    header = format_x_matrix_header(auth)
    assert header == 'X-Matrix origin="a.example:1",destination="b.example",key="ed25519:k",sig="s/ig"'
    assert parse_x_matrix_header(header) == auth


# -- signing and verifying ----------------------------------------------------------


def test_signed_request_verifies(key: SigningKey) -> None:
    auth = signed_header(key)
    assert (auth.origin, auth.destination, auth.key_id) == (ORIGIN, DESTINATION, "ed25519:k1")
    verify_request(auth, key.verify_key, method="PUT", uri=URI, our_server_name=DESTINATION, content=BODY)


def test_request_without_body_verifies(key: SigningKey) -> None:
    auth = signed_header(key, method="GET", content=None)
    verify_request(auth, key.verify_key, method="GET", uri=URI, our_server_name=DESTINATION)


def test_signature_matches_signedjson(key: SigningKey) -> None:
    """The signed object is the one the spec's example code signs (checked
    with the reference implementation, signedjson)."""
    auth = signed_header(key)
    obj = request_json("PUT", URI, ORIGIN, DESTINATION, BODY)
    obj["signatures"] = {ORIGIN: {auth.key_id: auth.signature}}
    verify_key = signedjson.key.decode_verify_key_bytes("ed25519:k1", bytes(key.verify_key))
    signedjson.sign.verify_signed_json(obj, ORIGIN, verify_key)


def test_wrong_key_is_refused(key: SigningKey) -> None:
    auth = signed_header(key)
    with pytest.raises(SignatureError):
        verify_request(auth, generate_signing_key("k1").verify_key, method="PUT", uri=URI,
                       our_server_name=DESTINATION, content=BODY)


def test_wrong_destination_is_refused(key: SigningKey) -> None:
    auth = signed_header(key)
    with pytest.raises(SignatureError, match=r"not other\.example"):
        verify_request(auth, key.verify_key, method="PUT", uri=URI, our_server_name="other.example",
                       content=BODY)


def test_signature_for_another_destination_is_refused_even_without_the_header_param(key: SigningKey) -> None:
    auth = signed_header(key)
    old_style = XMatrixAuthorization(origin=auth.origin, key_id=auth.key_id, signature=auth.signature)
    with pytest.raises(SignatureError):
        verify_request(old_style, key.verify_key, method="PUT", uri=URI, our_server_name="other.example",
                       content=BODY)
    verify_request(old_style, key.verify_key, method="PUT", uri=URI, our_server_name=DESTINATION, content=BODY)


@pytest.mark.parametrize(("method", "uri", "content"), [
    ("PUT", URI, {**BODY, "pdus": [{"type": "x"}]}),   # tampered body
    ("PUT", URI, None),                                  # body dropped
    ("POST", URI, BODY),                                 # other method
    ("PUT", "/_matrix/federation/v1/send/txn2?x=1", BODY),   # other path
    ("PUT", "/_matrix/federation/v1/send/txn1?x=2", BODY),   # other query
])
def test_tampered_request_is_refused(key: SigningKey, method: str, uri: str, content: object) -> None:
    auth = signed_header(key)
    with pytest.raises(SignatureError):
        verify_request(auth, key.verify_key, method=method, uri=uri, our_server_name=DESTINATION, content=content)


def test_spoofed_origin_is_refused(key: SigningKey) -> None:
    auth = signed_header(key)
    spoofed = XMatrixAuthorization(origin="evil.example", key_id=auth.key_id, signature=auth.signature,
                                   destination=DESTINATION)
    with pytest.raises(SignatureError):
        verify_request(spoofed, key.verify_key, method="PUT", uri=URI, our_server_name=DESTINATION, content=BODY)


def test_garbage_signature_is_refused(key: SigningKey) -> None:
    auth = signed_header(key)
    bad = XMatrixAuthorization(origin=auth.origin, key_id=auth.key_id, signature="!!notbase64",
                               destination=DESTINATION)
    with pytest.raises(SignatureError):
        verify_request(bad, key.verify_key, method="PUT", uri=URI, our_server_name=DESTINATION, content=BODY)
