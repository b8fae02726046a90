"""Server signing keys, signed JSON and signed events.

Spec: appendices "Signing JSON", "Signing Details", "Checking for a
Signature" and "Cryptographic key representation"; server-server-api
"Signing Events" and "Validating hashes and signatures on received events".

Keys are ed25519 (the only algorithm the spec defines), identified as
``ed25519:<version>``. The key file format is Synapse's: one key per line,
``ed25519 <version> <unpadded base64 seed>``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nacl.exceptions
import nacl.signing

from matrixlib.canonical_json import encode_canonical_json
from matrixlib.hashes import add_content_hash, decode_base64, encode_base64
from matrixlib.redaction import redacted_view
from matrixlib.room_versions import EventFormat, RoomVersion

if TYPE_CHECKING:
    from matrixlib.events import Event

ED25519 = "ed25519"


class SignatureError(ValueError):
    """A signature is missing, malformed or does not verify."""


# -- keys -------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    """An ed25519 signing key and its version (the part after ``ed25519:``)."""

    version: str
    nacl_key: nacl.signing.SigningKey

    def __post_init__(self) -> None:
        if not self.version or any(c.isspace() for c in self.version) or ":" in self.version:
            raise ValueError(f"invalid key version {self.version!r}")

    @classmethod
    def from_seed(cls, seed: bytes, version: str) -> SigningKey:
        if len(seed) != 32:
            raise ValueError("an ed25519 seed is 32 bytes")
        return cls(version, nacl.signing.SigningKey(seed))

    @property
    def alg(self) -> str:
        """The algorithm name (signedjson's attribute name)."""
        return ED25519

    @property
    def key_id(self) -> str:
        return f"{ED25519}:{self.version}"

    @property
    def seed(self) -> bytes:
        return bytes(self.nacl_key)

    @property
    def verify_key(self) -> nacl.signing.VerifyKey:
        return self.nacl_key.verify_key

    def sign(self, message: bytes) -> bytes:
        """The 64-byte detached signature of ``message``."""
        return bytes(self.nacl_key.sign(message).signature)

    def __repr__(self) -> str:
        # Never show the seed in logs or tracebacks.
        return f"<SigningKey {self.key_id}>"


def generate_signing_key(version: str) -> SigningKey:
    return SigningKey(version, nacl.signing.SigningKey.generate())


def encode_signing_key_line(key: SigningKey) -> str:
    """``ed25519 <version> <unpadded base64 seed>``."""
    return f"{ED25519} {key.version} {encode_base64(key.seed)}"


def parse_signing_keys(text: str) -> list[SigningKey]:
    """Every key of a key file's text, in order; blank lines are skipped."""
    keys = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3:
            raise ValueError(f"line {number}: expected '<algorithm> <version> <base64 seed>'")
        algorithm, version, seed_base64 = parts
        if algorithm != ED25519:
            raise ValueError(f"line {number}: unsupported algorithm {algorithm!r}")
        keys.append(SigningKey.from_seed(decode_base64(seed_base64), version))
    return keys


def read_signing_key_file(path: str | os.PathLike[str]) -> SigningKey:
    """The first key of a key file (the one a server signs with)."""
    keys = parse_signing_keys(Path(path).read_text(encoding="ascii"))
    if not keys:
        raise ValueError(f"no signing key in {os.fspath(path)}")
    return keys[0]


def write_signing_key_file(path: str | os.PathLike[str], key: SigningKey) -> None:
    """Writes the key file readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(encode_signing_key_line(key) + "\n")


def encode_verify_key(verify_key: nacl.signing.VerifyKey) -> str:
    """The unpadded base64 public key, as in ``/_matrix/key/v2/server``."""
    return encode_base64(bytes(verify_key))


def decode_verify_key(key_base64: str) -> nacl.signing.VerifyKey:
    try:
        key_bytes = decode_base64(key_base64)
    except ValueError as e:
        raise SignatureError(f"verify key is not base64: {e}") from None
    if len(key_bytes) != 32:
        raise SignatureError("an ed25519 verify key is 32 bytes")
    return nacl.signing.VerifyKey(key_bytes)


def is_supported_key_id(key_id: str) -> bool:
    algorithm, _, version = key_id.partition(":")
    return algorithm == ED25519 and bool(version)


def signature_key_ids(obj: Mapping[str, Any], server_name: str) -> list[str]:
    """The key IDs of algorithms we understand under which ``server_name``
    signed ``obj`` (step 2 of "Checking for a Signature")."""
    signatures = obj.get("signatures")
    if not isinstance(signatures, Mapping):
        return []
    by_server = signatures.get(server_name)
    if not isinstance(by_server, Mapping):
        return []
    return sorted(k for k in by_server if isinstance(k, str) and is_supported_key_id(k))


# -- JSON -------------------------------------------------------------------------


def _signable_bytes(obj: Mapping[str, Any]) -> bytes:
    # Lenient encoding: old-room-version events may carry out-of-range
    # integers, and their signatures were made over exactly this encoding.
    return encode_canonical_json(
        {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}, strict=False
    )


def sign_json(obj: Mapping[str, Any], server_name: str, key: SigningKey) -> dict[str, Any]:
    """A copy of ``obj`` with ``signatures[server_name][key_id]`` added; the
    signature covers everything but ``signatures`` and ``unsigned``."""
    signature = encode_base64(key.sign(_signable_bytes(obj)))
    result = dict(obj)
    existing = obj.get("signatures")
    signatures = {
        name: dict(sigs) for name, sigs in (existing.items() if isinstance(existing, Mapping) else ())
        if isinstance(sigs, Mapping)
    }
    signatures.setdefault(server_name, {})[key.key_id] = signature
    result["signatures"] = signatures
    return result


def verify_json(obj: Mapping[str, Any], server_name: str, key_id: str,
                verify_key: nacl.signing.VerifyKey) -> None:
    """Checks that ``server_name`` signed ``obj`` with ``key_id``; raises
    ``SignatureError`` if the signature is missing, not base64 or wrong."""
    if not is_supported_key_id(key_id):
        raise SignatureError(f"unsupported key ID {key_id!r}")
    signatures = obj.get("signatures")
    by_server = signatures.get(server_name) if isinstance(signatures, Mapping) else None
    if not isinstance(by_server, Mapping):
        raise SignatureError(f"not signed by {server_name}")
    signature_base64 = by_server.get(key_id)
    if not isinstance(signature_base64, str):
        raise SignatureError(f"not signed by {server_name} with {key_id}")
    _verify_signature(_signable_bytes(obj), signature_base64, server_name, key_id, verify_key)


def _verify_signature(signed: bytes, signature_base64: str, server_name: str, key_id: str,
                      verify_key: nacl.signing.VerifyKey) -> None:
    try:
        signature = decode_base64(signature_base64)
    except ValueError:
        raise SignatureError(f"signature of {server_name} {key_id} is not base64") from None
    try:
        verify_key.verify(signed, signature)
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        raise SignatureError(f"bad signature of {server_name} with {key_id}") from None


# -- events -----------------------------------------------------------------------


def sign_event(pdu: Mapping[str, Any], room_version: RoomVersion, server_name: str,
               key: SigningKey) -> dict[str, Any]:
    """A copy of ``pdu`` with the server's signature added. The signature is
    made over the redacted event, so it survives redaction; the content
    hash (which the redacted form keeps) is what covers the rest. Call
    ``hash_and_sign_event`` to set the hash first."""
    signed_redacted = sign_json(redacted_view(pdu, room_version), server_name, key)
    result = dict(pdu)
    result["signatures"] = signed_redacted["signatures"]
    return result


def hash_and_sign_event(pdu: Mapping[str, Any], room_version: RoomVersion, server_name: str,
                        key: SigningKey) -> dict[str, Any]:
    """Sets ``hashes.sha256`` and then signs (server-server-api "Adding
    hashes and signatures to outgoing events")."""
    return sign_event(add_content_hash(pdu), room_version, server_name, key)


def verify_event_signature(pdu: Mapping[str, Any], room_version: RoomVersion, server_name: str,
                           key_id: str, verify_key: nacl.signing.VerifyKey) -> None:
    """Checks ``server_name``'s signature with ``key_id`` on the redacted
    event; works on the full event and on a redacted copy alike. Raises
    ``SignatureError``."""
    verify_json(redacted_view(pdu, room_version), server_name, key_id, verify_key)


def _domain_of(identifier: str, what: str) -> str:
    # A malformed ID must fail loudly: an empty answer would mean "nobody
    # needs to have signed this".
    from matrixlib.events import EventFormatError

    _, sep, domain = identifier.partition(":")
    if not sep or not domain:
        raise EventFormatError(f"{what} {identifier!r} has no server name")
    return domain


def servers_that_must_sign(event: Event) -> set[str]:
    """The servers whose signatures a received event needs (server-server-api
    "Validating hashes and signatures on received events"):

    - the sender's server, except for an invite made from a third-party
      invite, which another server may send on the inviter's behalf;
    - in room versions 1 and 2, the server in the event ID;
    - from room version 8, for a join with
      ``join_authorised_via_users_server``, that user's server (it vouched
      for the join, as Synapse and the v8 auth rules require).
    """
    pdu = event.pdu
    content = event.content
    servers: set[str] = set()
    is_third_party_invite = (
        event.type == "m.room.member"
        and content.get("membership") == "invite"
        and "third_party_invite" in content
    )
    if not is_third_party_invite:
        servers.add(_domain_of(event.sender, "sender"))
    if event.room_version.event_format is EventFormat.V1:
        event_id = pdu.get("event_id")
        if isinstance(event_id, str):
            servers.add(_domain_of(event_id, "event_id"))
    if (
        event.room_version.restricted_join_rule
        and event.type == "m.room.member"
        and content.get("membership") == "join"
    ):
        authoriser = content.get("join_authorised_via_users_server")
        if isinstance(authoriser, str):
            servers.add(_domain_of(authoriser, "join_authorised_via_users_server"))
    return servers


def verify_event_signatures(
    event: Event, verify_keys: Mapping[str, Mapping[str, nacl.signing.VerifyKey]],
    signed_bytes: bytes | None = None,
) -> None:
    """The signature half of "Validating hashes and signatures on received
    events": every server in ``servers_that_must_sign`` must have signed
    the (redacted) event with at least one key in ``verify_keys`` (server ->
    key ID -> key; the caller leaves out keys it does not know or that had
    expired at the event's ``origin_server_ts``), and every signature made
    with such a key must verify. Raises ``SignatureError``; the content
    hash is checked separately (``hashes.check_content_hash``).

    ``signed_bytes`` is ``event_signed_bytes`` of the event when the caller
    has it already (it computed the event ID from the same bytes): the event
    is then not encoded again. The signatures are the event's own (the
    redaction keeps them)."""
    signed: bytes | None = signed_bytes
    signatures = event.pdu.get("signatures")
    for server in sorted(servers_that_must_sign(event)):
        known = verify_keys.get(server, {})
        key_ids = [k for k in signature_key_ids(event.pdu, server) if k in known]
        if not key_ids:
            raise SignatureError(f"{event.event_id} has no signature of {server} with a known key")
        assert isinstance(signatures, Mapping)  # signature_key_ids found some
        by_server = signatures[server]
        if signed is None:
            signed = event_signed_bytes(event.pdu, event.room_version)
        for key_id in key_ids:
            signature_base64 = by_server[key_id]
            if not isinstance(signature_base64, str):
                raise SignatureError(f"not signed by {server} with {key_id}")
            _verify_signature(signed, signature_base64, server, key_id, known[key_id])


def event_signed_bytes(pdu: Mapping[str, Any], room_version: RoomVersion, *, strict: bool = False) -> bytes:
    """What a server signs of an event: the canonical JSON of the redacted
    event without ``signatures`` and ``unsigned``. The same bytes are what
    the event's reference hash (its ID from room version 3) is taken over.
    ``strict`` refuses (ValueError) values canonical JSON does not allow."""
    view = redacted_view(pdu, room_version)
    view.pop("signatures", None)
    view.pop("unsigned", None)
    return encode_canonical_json(view, strict=strict)
