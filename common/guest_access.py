"""Guest accounts (content/client-server-api/modules/guest_access.md):
who is a guest, and which client-server endpoints a guest may call.

Guests are registered with numeric localparts, which no other account may
take (userapi/internal/localparts.py); a guest who registers with their
guest token (an upgrade) keeps the ID and stops being a guest, so whether a
caller is a guest is the account's flag, which the user API gives with the
token's device (``Device.is_guest``). A numeric localpart is only the first
test for other users (``may_be_guest``).

The endpoints are the spec's list plus those Synapse also opens to guests
(capabilities, joined rooms, public rooms, relations, hierarchy, room
summaries, third-party lookups, key changes, TURN credentials); everything else is
403 M_GUEST_ACCESS_FORBIDDEN, as Synapse answers.
"""

from __future__ import annotations

import re

from sanic import Request

from common import errors


class GuestAccessForbidden(errors.Forbidden):
    errcode = "M_GUEST_ACCESS_FORBIDDEN"


def may_be_guest(user_id: str) -> bool:
    """Whether a local user ID can be a guest's (its localpart is numeric)."""
    localpart = user_id[1:].partition(":")[0]
    return localpart.isdigit()


# (method, path after the client prefix with each parameter as "*").
GUEST_ALLOWED: frozenset[tuple[str, str]] = frozenset({
    # Reading rooms and events.
    ("GET", "rooms/*/state"), ("GET", "rooms/*/state/*"), ("GET", "rooms/*/state/*/*"),
    ("GET", "rooms/*/context/*"), ("GET", "rooms/*/event/*"), ("GET", "rooms/*/messages"),
    ("GET", "rooms/*/members"), ("GET", "rooms/*/initialSync"), ("GET", "sync"), ("GET", "events"),
    ("GET", "events/*"), ("GET", "joined_rooms"), ("GET", "publicRooms"), ("POST", "publicRooms"),
    ("GET", "rooms/*/relations/*"), ("GET", "rooms/*/relations/*/*"), ("GET", "rooms/*/relations/*/*/*"),
    ("GET", "rooms/*/hierarchy"), ("GET", "room_summary/*"),
    # Sending.
    ("POST", "rooms/*/join"), ("POST", "join/*"), ("POST", "rooms/*/leave"),
    ("PUT", "rooms/*/send/*/*"), ("PUT", "rooms/*/state/*"), ("PUT", "rooms/*/state/*/*"),
    ("PUT", "sendToDevice/*/*"),
    # Their own account (the handlers allow only the display name).
    ("PUT", "profile/*/*"), ("DELETE", "profile/*/*"), ("GET", "devices"), ("GET", "devices/*"),
    ("PUT", "devices/*"), ("GET", "account/whoami"), ("GET", "capabilities"), ("GET", "voip/turnServer"),
    # End-to-end encryption.
    ("POST", "keys/upload"), ("POST", "keys/query"), ("POST", "keys/claim"), ("GET", "keys/changes"),
    ("POST", "keys/signatures/upload"),
    # Media.
    ("GET", "media/download/*/*"), ("GET", "media/download/*/*/*"), ("GET", "media/thumbnail/*/*"),
    # Third-party lookups.
    ("GET", "thirdparty/protocols"), ("GET", "thirdparty/protocol/*"), ("GET", "thirdparty/location/*"),
    ("GET", "thirdparty/user/*"), ("GET", "thirdparty/location"), ("GET", "thirdparty/user"),
})

_PREFIX = re.compile(r"^/?_matrix/client/(?:v3|r0|v1|unstable/[^/]+)/")
_PARAMETER = re.compile(r"<[^>]*>")


def template_of(path: str) -> str:
    """A route's path after the client prefix, parameters as "*"."""
    return _PARAMETER.sub("*", _PREFIX.sub("", path)).strip("/")


def route_template(request: Request) -> str:
    """The matched route's template (``template_of``)."""
    route = request.route
    return template_of(route.path if route is not None else request.path)


def check_guest_may_call(request: Request) -> None:
    """Raises GuestAccessForbidden unless a guest may call this endpoint."""
    if (request.method.upper(), route_template(request)) not in GUEST_ALLOWED:
        raise GuestAccessForbidden("Guest access not allowed")


def check_guest_request(is_guest: bool, request: Request) -> None:
    """For every authenticated request: a guest may call only the allowed endpoints."""
    if is_guest:
        check_guest_may_call(request)
