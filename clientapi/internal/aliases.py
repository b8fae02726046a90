"""Room aliases as the client API uses them: parsing, resolving (a remote
alias is asked of its server through the federation API), and
validating ``m.room.canonical_alias`` content (content/client-server-api,
"Room aliases" and "m.room.canonical_alias"): every alias it names must
exist and point to the room, else 400 M_BAD_ALIAS, as Synapse does."""

from __future__ import annotations

from typing import Any

from myelin.federationapi.v1 import federationapi_pb2 as fed_pb
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb

from clientapi.internal.services import Services
from common import errors
from matrixlib.ids import InvalidIdentifierError, RoomAlias


class BadAlias(errors.MatrixError):
    errcode = "M_BAD_ALIAS"
    http_status = 400


def parse_alias(alias: str) -> RoomAlias:
    try:
        return RoomAlias.parse(alias)
    except InvalidIdentifierError:
        raise errors.InvalidParam(f"{alias!r} is not a valid room alias") from None


def parse_local_alias(services: Services, alias: str) -> RoomAlias:
    parsed = parse_alias(alias)
    if parsed.server_name != services.server_name:
        raise errors.InvalidParam("Room alias must be local")
    return parsed


async def resolve_alias(services: Services, alias: str) -> str:
    """The room ID the alias names; 404 M_NOT_FOUND when unknown."""
    room_id, _ = await resolve_alias_with_servers(services, alias)
    return room_id


async def resolve_alias_with_servers(services: Services, alias: str) -> tuple[str, list[str] | None]:
    """The room ID the alias names and, for a remote alias, the servers its
    server says are in the room (None for a local alias: the caller knows
    the room); 404 M_NOT_FOUND when unknown or unreachable."""
    parsed = parse_alias(alias)
    if parsed.server_name != services.server_name:
        if services.federation is None:
            raise errors.NotFound(f"Room alias {alias} not found (this server does not federate)")
        remote = await services.federation.query_room_alias(fed_pb.QueryRoomAliasRequest(alias=alias))
        return remote.room_id, list(remote.servers)
    found = await services.roomserver.get_room_id_for_alias(rs_pb.GetRoomIDForAliasRequest(alias=alias))
    if not found.room_id:
        raise errors.NotFound(f"Room alias {alias} not found")
    return found.room_id, None


async def check_canonical_alias(services: Services, room_id: str, content: dict[str, Any]) -> None:
    """Raises unless every alias of the content exists and points to the room."""
    named: list[str] = []
    alias = content.get("alias")
    if alias is not None:
        if not isinstance(alias, str):
            raise errors.InvalidParam("alias must be a string")
        named.append(alias)
    alt_aliases = content.get("alt_aliases")
    if alt_aliases is not None:
        if not isinstance(alt_aliases, list) or not all(isinstance(a, str) for a in alt_aliases):
            raise errors.InvalidParam("alt_aliases must be a list of strings")
        named.extend(alt_aliases)
    for name in dict.fromkeys(named):
        try:
            parse_alias(name)
            target = await resolve_alias(services, name)
        except (errors.InvalidParam, errors.NotFound):
            raise BadAlias(f"Room alias {name} does not exist") from None
        if target != room_id:
            raise BadAlias(f"Room alias {name} does not point to the room")
