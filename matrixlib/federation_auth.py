"""Federation request authentication: the ``X-Matrix`` Authorization header.

Spec: server-server-api "Request Authentication". The sender signs a JSON
object of the request's method, target (path and query, as sent), origin,
destination and, when there is a body, its parsed JSON content, and puts
the signature in an ``Authorization: X-Matrix`` header. The recipient
parses the header, rebuilds the same object from the request it received
and checks the signature with the origin's key.

The header is an RFC 9110 credentials string: ``X-Matrix`` then
comma-separated ``name=value`` parameters, names case-insensitive, values
either tokens or quoted strings with backslash escapes. As the spec asks
for compatibility, unquoted values may contain colons (server names with
ports, key IDs). We send lower-case names, one space, quoted values, no
spaces around commas.

Pure: no I/O. The verify key comes from the caller (the KeyRing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import nacl.signing

from matrixlib.ids import is_valid_server_name
from matrixlib.signing import SignatureError, SigningKey, is_supported_key_id, sign_json, verify_json

SCHEME = "X-Matrix"


class AuthHeaderError(ValueError):
    """The Authorization header is missing, not X-Matrix, or malformed."""


@dataclass(frozen=True)
class XMatrixAuthorization:
    """The parameters of one ``X-Matrix`` Authorization header.
    ``destination`` is None when an older sender left it out."""

    origin: str
    key_id: str
    signature: str
    destination: str | None = None


# -- formatting -------------------------------------------------------------------


def _quote(value: str) -> str:
    # The spec asks senders to avoid backslashes; escape quotes and
    # backslashes anyway so that any value round-trips.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_x_matrix_header(auth: XMatrixAuthorization) -> str:
    """The header value: ``X-Matrix origin="…",destination="…",key="…",sig="…"``."""
    params = [f"origin={_quote(auth.origin)}"]
    if auth.destination is not None:
        params.append(f"destination={_quote(auth.destination)}")
    params.append(f"key={_quote(auth.key_id)}")
    params.append(f"sig={_quote(auth.signature)}")
    return f"{SCHEME} " + ",".join(params)


# -- parsing ----------------------------------------------------------------------

# RFC 9110 tchar: what a parameter name is made of.
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_WHITESPACE = " \t"


def _parse_params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _WHITESPACE:
            i += 1
        if i >= n:
            break
        start = i
        while i < n and text[i] in _TOKEN_CHARS:
            i += 1
        name = text[start:i].lower()
        if not name:
            raise AuthHeaderError(f"expected a parameter name at position {start}")
        while i < n and text[i] in _WHITESPACE:
            i += 1
        if i >= n or text[i] != "=":
            raise AuthHeaderError(f"parameter {name!r} has no value")
        i += 1
        while i < n and text[i] in _WHITESPACE:
            i += 1
        if i < n and text[i] == '"':
            i += 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise AuthHeaderError(f"unterminated quoted value of {name!r}")
                c = text[i]
                if c == "\\":
                    if i + 1 >= n:
                        raise AuthHeaderError(f"dangling backslash in {name!r}")
                    chars.append(text[i + 1])
                    i += 2
                elif c == '"':
                    i += 1
                    break
                else:
                    chars.append(c)
                    i += 1
            value = "".join(chars)
        else:
            # Leniently (as Synapse): an unquoted value runs to the next comma
            # or whitespace, so unquoted base64 with '/' and '+' is read too.
            start = i
            while i < n and text[i] not in _WHITESPACE and text[i] not in ',"':
                i += 1
            value = text[start:i]
            if not value:
                raise AuthHeaderError(f"parameter {name!r} has an empty or invalid value")
        if name in params:
            raise AuthHeaderError(f"parameter {name!r} given twice")
        params[name] = value
        while i < n and text[i] in _WHITESPACE:
            i += 1
        if i >= n:
            break
        if text[i] != ",":
            raise AuthHeaderError(f"expected ',' at position {i}")
        i += 1
    return params


def parse_x_matrix_header(header: str) -> XMatrixAuthorization:
    """Parses an ``Authorization`` header value; raises ``AuthHeaderError``.
    Unknown parameters are ignored, as the spec says."""
    scheme, sep, rest = header.strip().partition(" ")
    if scheme.lower() != SCHEME.lower() or not sep:
        raise AuthHeaderError("not an X-Matrix Authorization header")
    params = _parse_params(rest)
    for required in ("origin", "key", "sig"):
        if not params.get(required):
            raise AuthHeaderError(f"X-Matrix header has no {required}")
    origin = params["origin"]
    if not is_valid_server_name(origin):
        raise AuthHeaderError(f"origin {origin!r} is not a server name")
    destination = params.get("destination")
    if destination is not None and not is_valid_server_name(destination):
        raise AuthHeaderError(f"destination {destination!r} is not a server name")
    if not is_supported_key_id(params["key"]):
        raise AuthHeaderError(f"unsupported key ID {params['key']!r}")
    return XMatrixAuthorization(origin=origin, key_id=params["key"], signature=params["sig"],
                                destination=destination)


# -- signing and verifying ----------------------------------------------------------


def request_json(method: str, uri: str, origin: str, destination: str,
                 content: Any = None) -> dict[str, Any]:
    """The object that is signed ("Step 1 sign JSON"). ``content`` None means
    no body."""
    obj: dict[str, Any] = {"method": method.upper(), "uri": uri, "origin": origin,
                           "destination": destination}
    if content is not None:
        obj["content"] = content
    return obj


def sign_request(key: SigningKey, *, method: str, uri: str, origin: str, destination: str,
                 content: Any = None) -> str:
    """The ``Authorization`` header value for a request from ``origin`` to
    ``destination``. ``uri`` is the path with query string, as sent."""
    signed = sign_json(request_json(method, uri, origin, destination, content), origin, key)
    signature = signed["signatures"][origin][key.key_id]
    return format_x_matrix_header(XMatrixAuthorization(origin=origin, key_id=key.key_id,
                                                       signature=signature, destination=destination))


def check_destination(auth: XMatrixAuthorization, our_server_name: str) -> None:
    """A header naming another destination must be refused (401)."""
    if auth.destination is not None and auth.destination != our_server_name:
        raise SignatureError(f"request is for {auth.destination}, not {our_server_name}")


def verify_request(auth: XMatrixAuthorization, verify_key: nacl.signing.VerifyKey, *, method: str,
                   uri: str, our_server_name: str, content: Any = None) -> None:
    """Checks a received request's signature with the origin's key
    ``auth.key_id``; raises ``SignatureError``. ``content`` is the parsed
    JSON body, None when the request had none."""
    check_destination(auth, our_server_name)
    # Senders have always put the destination in the signed object, also
    # before the header carried it, so it is our name either way.
    obj: Mapping[str, Any] = request_json(method, uri, auth.origin, our_server_name, content)
    signed = dict(obj)
    signed["signatures"] = {auth.origin: {auth.key_id: auth.signature}}
    verify_json(signed, auth.origin, auth.key_id, verify_key)
