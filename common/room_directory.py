"""The public room directory's filter and paging tokens, shared by the
client API (which owns the list) and the federation API (which serves it to
other servers, in the split deployment through the client API's HTTP)."""

from __future__ import annotations

from typing import Any

from common import errors


def public_room_matches(entry: dict[str, Any], term: str | None, room_types: list[Any] | None) -> bool:
    """Whether a /publicRooms chunk entry passes the request's filter: its
    room type is one asked for, and the search term appears (ignoring case)
    in its name, topic, canonical alias or room ID."""
    if room_types is not None and entry.get("room_type") not in room_types:
        return False
    if term:
        haystack = " ".join(str(entry.get(k, "")) for k in ("name", "topic", "canonical_alias", "room_id"))
        return term.lower() in haystack.lower()
    return True


def parse_offset_token(since: str | None) -> int:
    """The offset in a ``o<offset>`` paging token; 0 for none."""
    if not since:
        return 0
    if not since.startswith("o") or not since[1:].isdigit():
        raise errors.InvalidParam("Invalid since token")
    return int(since[1:])
