"""What the client API enforces for guest accounts beyond the endpoint list
(common/guest_access.py), per modules/guest_access.md "Server behaviour":
a guest joins only rooms whose ``m.room.guest_access`` is ``can_join``, and
when a room stops allowing guests its local guests are made to leave (as
Synapse does, each guest leaves itself)."""

from __future__ import annotations

import json
import logging
from typing import Any

from myelin.roomserver.v1 import roomserver_pb2 as rs_pb
from myelin.userapi.v1 import userapi_pb2 as ua_pb

from clientapi.internal.membership import send_membership
from clientapi.internal.room_state import current_state_events
from clientapi.internal.services import Services
from common import errors
from common.guest_access import GuestAccessForbidden, may_be_guest
from matrixlib.events import GUEST_ACCESS

logger = logging.getLogger(__name__)


def guests_may_join(content: dict[str, Any] | None) -> bool:
    return content is not None and content.get("guest_access") == "can_join"


async def check_guest_can_join(services: Services, device: ua_pb.Device, room_id: str) -> None:
    """Raises 403 M_GUEST_ACCESS_FORBIDDEN when a guest may not join the room."""
    if not device.is_guest:
        return
    state = await current_state_events(services.roomserver, room_id, [(GUEST_ACCESS, "")])
    if state is None:
        raise errors.NotFound(f"No known servers to join {room_id} through")
    event = state.get((GUEST_ACCESS, ""))
    if not guests_may_join(dict(event.content) if event is not None else None):
        raise GuestAccessForbidden("Guest access is not allowed in this room")


async def _is_guest(services: Services, user_id: str) -> bool:
    try:
        account = await services.userapi.query_account(ua_pb.QueryAccountRequest(
            localpart=user_id[1:].partition(":")[0]))
    except errors.NotFound:
        return False
    return account.is_guest


async def remove_guests(services: Services, room_id: str) -> list[str]:
    """Makes every local guest joined to the room leave it; answers who left."""
    members = await services.roomserver.query_memberships_for_room(
        rs_pb.QueryMembershipsForRoomRequest(room_id=room_id, joined_only=True))
    left: list[str] = []
    for member in members.member_events:
        target = json.loads(member.pdu_json).get("state_key")
        if not isinstance(target, str) or target.partition(":")[2] != services.server_name:
            continue
        if not may_be_guest(target) or not await _is_guest(services, target):
            continue
        try:
            await send_membership(services, room_id=room_id, sender=target, target=target, membership="leave")
            left.append(target)
        except errors.MatrixError as e:
            logger.warning("guest %s could not be removed from %s: %s", target, room_id, e)
    return left
