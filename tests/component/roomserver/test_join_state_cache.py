"""A federated join's state comes as a bulk of outliers and, right after, the
join with that state: the outliers stay parsed in the room server's event
cache, so the join reads none of them back from the database (the state it
announces, the memberships it sets) and its output still carries them all."""

from __future__ import annotations

from typing import Any

import pytest
from myelin.roomserver.v1 import input_log_pb2
from myelin.roomserver.v1 import roomserver_pb2 as pb
from sqlalchemy import event as sa_event

from tests.builders import TestRoom, input_event
from tests.component.roomserver.conftest import Running, read_output

OUTLIER = input_log_pb2.INPUT_KIND_OUTLIER
BOB = "@bob:test"


@pytest.mark.parametrize("version", ["10", "12"])
async def test_the_join_reads_no_outlier_back(running: Running, version: str) -> None:
    api = running.component.api
    room = TestRoom(version, creator="@rita:remote.example", server_name="remote.example")
    for i in range(40):
        room.join(f"@user{i}:remote.example")
    state = list(room.state.values())
    response = await api.input_room_events(pb.InputRoomEventsRequest(
        events=[input_event(e, OUTLIER) for e in room.events], wait=True))
    assert {r.outcome for r in response.results} == {pb.INPUT_OUTCOME_ACCEPTED}

    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = running.component.processor._db.db.engine.sync_engine
    sa_event.listen(engine, "before_cursor_execute", seen)
    try:
        join = room.join(BOB)
        response = await api.input_room_events(pb.InputRoomEventsRequest(wait=True, events=[input_event(
            join, state_event_ids=[e.event_id for e in state])]))
    finally:
        sa_event.remove(engine, "before_cursor_execute", seen)
    assert [r.outcome for r in response.results] == [pb.INPUT_OUTCOME_ACCEPTED]
    assert statements, "the listener saw nothing"
    assert not [s for s in statements if "FROM roomserver_event_json" in s]

    joins = [o.new_room_event for o in await read_output(running.log)
             if o.WhichOneof("payload") == "new_room_event" and o.new_room_event.event.event_id == join.event_id]
    assert len(joins) == 1
    assert {e.event_id for e in joins[0].adds_state_events} == {e.event_id for e in state}
    info = await api.query_room_info(pb.QueryRoomInfoRequest(room_id=room.room_id))
    assert info.joined_member_count == 42
