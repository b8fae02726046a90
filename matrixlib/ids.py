"""Matrix identifiers: server names, user IDs, room IDs, room aliases and
event IDs.

Spec: appendices "Identifier Grammar" (Server Name, User Identifiers,
Historical User IDs, Room IDs, Room Aliases, Event IDs) and the room
versions' event ID formats.

Parsing is what a server does with identifiers it receives, so it accepts
the historical user ID localparts the spec says servers MUST accept.
``is_valid_new_localpart`` is the stricter check for IDs we create.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from matrixlib.room_versions import EventFormat, RoomVersion

# Every user ID, room ID, alias and event ID, sigil and domain included.
MAX_ID_LENGTH = 255
MAX_SERVER_NAME_LENGTH = 255


class InvalidIdentifierError(ValueError):
    """The string is not an identifier of the kind asked for."""


# -- server names -------------------------------------------------------------------

_PORT = r"[0-9]{1,5}"
_DNS_NAME = re.compile(r"[A-Za-z0-9.\-]{1,255}")
_IPV4_SHAPE = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")
_IPV6_CHARS = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_SERVER_NAME = re.compile(rf"(?P<host>\[[^\]]*\]|[^:\[\]]*)(?::(?P<port>{_PORT}))?")


def parse_server_name(server_name: str) -> tuple[str, int | None]:
    """Splits a server name into host and optional port, validating both.
    An IPv6 host keeps its brackets (``[::1]``), as it appears in URLs."""
    match = _SERVER_NAME.fullmatch(server_name)
    if match is None:
        raise InvalidIdentifierError(f"invalid server name {server_name!r}")
    host = match["host"]
    port = int(match["port"]) if match["port"] is not None else None
    if host.startswith("["):
        literal = host[1:-1]
        if not _IPV6_CHARS.fullmatch(literal):
            raise InvalidIdentifierError(f"invalid IPv6 literal in {server_name!r}")
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            raise InvalidIdentifierError(f"invalid IPv6 literal in {server_name!r}") from None
    elif _IPV4_SHAPE.fullmatch(host):
        # The grammar's dns-name would also match a dotted quad, but the spec
        # says IPv4 literals are four numbers from 0 to 255.
        if any(int(octet) > 255 for octet in host.split(".")):
            raise InvalidIdentifierError(f"invalid IPv4 literal in {server_name!r}")
    elif not _DNS_NAME.fullmatch(host):
        raise InvalidIdentifierError(f"invalid host name in {server_name!r}")
    return host, port


def is_valid_server_name(server_name: str) -> bool:
    try:
        parse_server_name(server_name)
    except InvalidIdentifierError:
        return False
    return True


# -- shared helpers -----------------------------------------------------------------


def _check_length(identifier: str) -> None:
    if len(identifier.encode("utf-8", "surrogatepass")) > MAX_ID_LENGTH:
        raise InvalidIdentifierError(f"identifier is longer than {MAX_ID_LENGTH} bytes")


def _is_opaque_localpart(localpart: str) -> bool:
    """Any non-surrogate code point but ``:`` and NUL (historical user
    IDs, room ID and alias localparts); may be empty."""
    return not any(c == ":" or c == "\x00" or "\ud800" <= c <= "\udfff" for c in localpart)


def _split(identifier: str, sigil: str, kind: str) -> tuple[str, str]:
    if not identifier.startswith(sigil):
        raise InvalidIdentifierError(f"{kind} must start with {sigil!r}: {identifier!r}")
    _check_length(identifier)
    localpart, sep, server_name = identifier[1:].partition(":")
    if not sep:
        raise InvalidIdentifierError(f"{kind} has no server name: {identifier!r}")
    if not _is_opaque_localpart(localpart):
        raise InvalidIdentifierError(f"invalid characters in {kind} {identifier!r}")
    if not is_valid_server_name(server_name):
        raise InvalidIdentifierError(f"invalid server name in {kind} {identifier!r}")
    return localpart, server_name


# -- user IDs -----------------------------------------------------------------------

_NEW_LOCALPART = re.compile(r"[a-z0-9._=\-/+]+")


def is_valid_new_localpart(localpart: str) -> bool:
    """Whether a localpart may be used for a new user: non-empty, only
    ``a-z 0-9 . _ = - / +``. (The whole ID must also fit in 255 bytes.)"""
    return _NEW_LOCALPART.fullmatch(localpart) is not None


@dataclass(frozen=True)
class UserID:
    localpart: str
    server_name: str

    @classmethod
    def parse(cls, user_id: str) -> UserID:
        """Parses a user ID as received: historical localparts (any code
        point but ``:`` and NUL, even empty) are accepted."""
        localpart, server_name = _split(user_id, "@", "user ID")
        return cls(localpart, server_name)

    @property
    def is_compliant(self) -> bool:
        """False for historical user IDs: an empty localpart or characters
        outside U+0021-U+007E (such IDs are accepted in events but should
        not be forwarded to clients outside an event)."""
        return bool(self.localpart) and all("\x21" <= c <= "\x7e" for c in self.localpart)

    def __str__(self) -> str:
        return f"@{self.localpart}:{self.server_name}"


def is_valid_user_id(user_id: str) -> bool:
    try:
        UserID.parse(user_id)
    except InvalidIdentifierError:
        return False
    return True


# -- room aliases -------------------------------------------------------------------


@dataclass(frozen=True)
class RoomAlias:
    localpart: str
    server_name: str

    @classmethod
    def parse(cls, alias: str) -> RoomAlias:
        localpart, server_name = _split(alias, "#", "room alias")
        return cls(localpart, server_name)

    def __str__(self) -> str:
        return f"#{self.localpart}:{self.server_name}"


def is_valid_room_alias(alias: str) -> bool:
    try:
        RoomAlias.parse(alias)
    except InvalidIdentifierError:
        return False
    return True


# -- room and event IDs -------------------------------------------------------------

# The reference hash (sha256, 32 bytes) in unpadded base64 is 43 characters.
_STANDARD_HASH_ID = re.compile(r"[A-Za-z0-9+/]{43}")
_URLSAFE_HASH_ID = re.compile(r"[A-Za-z0-9\-_]{43}")


def _parse_opaque_or_domain(identifier: str, sigil: str, kind: str) -> tuple[str, str | None]:
    if not identifier.startswith(sigil):
        raise InvalidIdentifierError(f"{kind} must start with {sigil!r}: {identifier!r}")
    if ":" in identifier:
        return _split(identifier, sigil, kind)
    _check_length(identifier)
    opaque = identifier[1:]
    if not opaque or not _is_opaque_localpart(opaque):
        raise InvalidIdentifierError(f"invalid {kind} {identifier!r}")
    return opaque, None


@dataclass(frozen=True)
class RoomID:
    """``!localpart:server_name`` (room versions 1-11) or ``!hash``, with
    ``server_name`` None (room version 12: the create event's ID)."""

    localpart: str
    server_name: str | None

    @classmethod
    def parse(cls, room_id: str) -> RoomID:
        localpart, server_name = _parse_opaque_or_domain(room_id, "!", "room ID")
        return cls(localpart, server_name)

    def __str__(self) -> str:
        if self.server_name is None:
            return f"!{self.localpart}"
        return f"!{self.localpart}:{self.server_name}"


def is_valid_room_id(room_id: str, room_version: RoomVersion | None = None) -> bool:
    """Whether ``room_id`` is a room ID; with ``room_version``, whether it
    has that version's form (a domain before v12, the URL-safe hash of
    the create event from v12)."""
    try:
        parsed = RoomID.parse(room_id)
    except InvalidIdentifierError:
        return False
    if room_version is None:
        return True
    if room_version.hydra:
        return parsed.server_name is None and _URLSAFE_HASH_ID.fullmatch(parsed.localpart) is not None
    return parsed.server_name is not None


@dataclass(frozen=True)
class EventID:
    """``$localpart:server_name`` (room versions 1, 2) or ``$hash`` with
    ``server_name`` None (room version 3 on)."""

    localpart: str
    server_name: str | None

    @classmethod
    def parse(cls, event_id: str) -> EventID:
        localpart, server_name = _parse_opaque_or_domain(event_id, "$", "event ID")
        return cls(localpart, server_name)

    def __str__(self) -> str:
        if self.server_name is None:
            return f"${self.localpart}"
        return f"${self.localpart}:{self.server_name}"


def is_valid_event_id(event_id: str, room_version: RoomVersion | None = None) -> bool:
    """Whether ``event_id`` is an event ID; with ``room_version``, whether it
    has that version's form: ``$opaque:domain`` (v1, v2), the standard
    (v3) or URL-safe (v4+) unpadded base64 reference hash."""
    try:
        parsed = EventID.parse(event_id)
    except InvalidIdentifierError:
        return False
    if room_version is None:
        return True
    if room_version.event_format is EventFormat.V1:
        return parsed.server_name is not None
    if parsed.server_name is not None:
        return False
    pattern = _STANDARD_HASH_ID if room_version.event_format is EventFormat.V2 else _URLSAFE_HASH_ID
    return pattern.fullmatch(parsed.localpart) is not None
