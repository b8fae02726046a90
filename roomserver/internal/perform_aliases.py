"""The room alias directory (client-server API "Room aliases", server-server
API "Room directory"): set, resolve, list and remove aliases. Who may do
what (power in the room, being the creator) is the caller's check; the room
server keeps the directory consistent."""

from __future__ import annotations

from myelin.roomserver.v1 import roomserver_pb2 as pb

from common import errors
from roomserver.storage.database import RoomserverDatabase


class AliasInUse(errors.MatrixError):
    """PUT /directory/room/{roomAlias} answers 409 M_UNKNOWN for a taken alias."""

    errcode = "M_UNKNOWN"
    http_status = 409
    grpc_code = "ALREADY_EXISTS"


def _check_alias(alias: str) -> None:
    # "#localpart:server"; the grammar's details are the caller's (it knows
    # which server names are its own).
    if not alias.startswith("#") or ":" not in alias or len(alias) > 255:
        raise errors.InvalidParam(f"not a room alias: {alias!r}")


class Aliases:
    def __init__(self, db: RoomserverDatabase) -> None:
        self._db = db

    async def set_room_alias(self, req: pb.SetRoomAliasRequest) -> pb.SetRoomAliasResponse:
        _check_alias(req.alias)
        async with self._db.transaction() as txn:
            if await self._db.room_by_id(txn, req.room_id) is None:
                raise errors.NotFound(f"unknown room {req.room_id}")
            if not await self._db.add_alias(txn, req.alias, req.room_id, req.creator):
                raise AliasInUse(f"room alias {req.alias} already exists")
        return pb.SetRoomAliasResponse()

    async def get_room_id_for_alias(self, req: pb.GetRoomIDForAliasRequest) -> pb.GetRoomIDForAliasResponse:
        async with self._db.reading() as txn:
            found = await self._db.alias(txn, req.alias)
        if found is None:
            return pb.GetRoomIDForAliasResponse()
        return pb.GetRoomIDForAliasResponse(room_id=found[0], creator=found[1])

    async def get_aliases_for_room(self, req: pb.GetAliasesForRoomRequest) -> pb.GetAliasesForRoomResponse:
        async with self._db.reading() as txn:
            return pb.GetAliasesForRoomResponse(aliases=await self._db.aliases_of_room(txn, req.room_id))

    async def remove_room_alias(self, req: pb.RemoveRoomAliasRequest) -> pb.RemoveRoomAliasResponse:
        async with self._db.transaction() as txn:
            found = await self._db.alias(txn, req.alias)
            if found is None:
                raise errors.NotFound(f"unknown room alias {req.alias}")
            await self._db.remove_alias(txn, req.alias)
        return pb.RemoveRoomAliasResponse(room_id=found[0], creator=found[1])
