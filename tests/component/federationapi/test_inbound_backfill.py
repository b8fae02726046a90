"""perform_backfill: history older than ours fetched from a server in the
room with /backfill, checked, and input as historical (INPUT_KIND_OLD)
events before what the room server had."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from myelin.federationapi.v1 import federationapi_pb2 as fed_pb
from myelin.roomserver.v1 import input_log_pb2
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb

from common import errors
from matrixlib.events import Event
from tests.builders import TEST_SERVER_NAME, TEST_SIGNING_KEY, TestRoom, input_event
from tests.component.federationapi.inbound_fixtures import ALICE, Inbound, start_inbound

# One room server and federation API for the module (each test builds its
# own rooms): starting them is most of a test's time.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_inbound(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Inbound]:
    async with start_inbound(tmp_path_factory.mktemp("inbound_backfill")) as started:
        yield started


@pytest.fixture
def inbound(shared_inbound: Inbound) -> Inbound:
    shared_inbound.reset()
    return shared_inbound


async def joined_remote_room(inbound: Inbound, history: int) -> tuple[TestRoom, list[Event], Event]:
    """A room of the remote's bob with ``history`` messages, which our alice
    joined: we hold the state before her join as outliers, as a join leaves
    it, and none of the messages."""
    bob = inbound.user("bob")
    room = TestRoom("12", creator=bob, server_name=inbound.origin, signing_key=inbound.remote.key)
    messages = [room.message(bob, f"old {i}") for i in range(history)]
    state_before = list(room.state.values())
    room.server_name, room.signing_key = TEST_SERVER_NAME, TEST_SIGNING_KEY
    alice_join = room.join(ALICE)
    room.server_name, room.signing_key = inbound.origin, inbound.remote.key
    inbound.remote_rooms.rooms[room.room_id] = room
    outliers = await inbound.roomserver.input_room_events(
        room.input_request(sorted(state_before, key=lambda e: e.depth), kind=input_log_pb2.INPUT_KIND_OUTLIER))
    assert all(r.outcome == rs_pb.INPUT_OUTCOME_ACCEPTED for r in outliers.results), outliers
    joined = await inbound.roomserver.input_room_events(rs_pb.InputRoomEventsRequest(events=[input_event(
        alice_join, state_event_ids=[e.event_id for e in state_before])], wait=True))
    assert joined.results[0].outcome == rs_pb.INPUT_OUTCOME_ACCEPTED, joined
    return room, messages, alice_join


async def test_backfill_inputs_older_events(inbound: Inbound) -> None:
    room, messages, alice_join = await joined_remote_room(inbound, history=12)
    for message in messages:
        assert await inbound.stored(message.event_id) is None
    assert inbound.federation.internal is not None
    answer = await inbound.federation.internal.perform_backfill(fed_pb.PerformBackfillRequest(
        room_id=room.room_id, from_event_ids=[alice_join.event_id], limit=50))
    assert "backfill" in inbound.remote_rooms.requests
    # The messages, and the state events that were outliers until now.
    assert answer.added >= len(messages)
    for message in messages:
        stored = await inbound.stored(message.event_id, include_unaccepted=False)
        assert stored is not None and stored["content"]["body"] == message.content["body"]
    # History does not move the room on.
    assert await inbound.latest(room.room_id) == [alice_join.event_id]
    # Asking again adds nothing new.
    again = await inbound.federation.internal.perform_backfill(fed_pb.PerformBackfillRequest(
        room_id=room.room_id, from_event_ids=[alice_join.event_id], limit=50))
    assert again.added == 0


async def test_backfill_limit_and_unknown_room(inbound: Inbound) -> None:
    room, messages, alice_join = await joined_remote_room(inbound, history=10)
    assert inbound.federation.internal is not None
    answer = await inbound.federation.internal.perform_backfill(fed_pb.PerformBackfillRequest(
        room_id=room.room_id, from_event_ids=[alice_join.event_id], limit=5))
    assert 1 <= answer.added <= 5
    assert await inbound.stored(messages[-1].event_id, include_unaccepted=False) is not None
    assert await inbound.stored(messages[0].event_id) is None
    with pytest.raises(errors.NotFound):
        await inbound.federation.internal.perform_backfill(fed_pb.PerformBackfillRequest(
            room_id="!nowhere:test", from_event_ids=["$x"], limit=5))
