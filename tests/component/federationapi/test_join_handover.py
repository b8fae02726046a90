"""A remote join in one process: the room server takes back the events the
federation API parsed and checked (the send_join answer's state and auth
chain, and the join) instead of parsing their JSON again."""

from __future__ import annotations

from typing import Any

import pytest
from myelin.federationapi.v1 import federationapi_pb2 as fed_pb

from common import built_events
from matrixlib.events import Event
from tests.component.federationapi.test_outbound_membership import BOB, Outbound, outbound  # noqa: F401

pytestmark = pytest.mark.usefixtures("outbound")


async def test_the_room_server_parses_none_of_the_joined_rooms_events(outbound: Outbound,  # noqa: F811
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    resident = await outbound.resident()
    room = resident.make_room("10")
    for i in range(built_events.BUILT_EVENTS_KEPT + 20):  # more than one input call's worth
        room.join(f"@m{i}:{resident.name}")
    parsed: list[bytes] = []
    from_json = Event.from_json.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Event], pdu_json: bytes | str, *args: Any, **kwargs: Any) -> Event:
        parsed.append(pdu_json.encode() if isinstance(pdu_json, str) else pdu_json)
        return from_json(cls, pdu_json, *args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(Event, "from_json", classmethod(counting))
    answer = await outbound.api.perform_join(fed_pb.PerformJoinRequest(
        room_id=room.room_id, user_id=BOB, server_names=[resident.name]))
    found = await outbound.membership(room.room_id, BOB)
    assert found.membership == "join" and found.event_id == answer.event_id
    received = {e.to_json() for e in room.state.values()}
    assert len(received) > built_events.BUILT_EVENTS_KEPT
    assert not received.intersection(parsed)
