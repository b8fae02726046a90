"""PUT /_matrix/federation/v1/send/{txnId}: a fake remote server pushes PDUs
and EDUs into a real room server through the federation API; the checks on
each PDU (signatures, content hash, auth, soft failure), idempotence, the
limits, server ACLs, gap filling and EDUs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from myelin.clientapi.v1 import edu_log_pb2
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb

from common import errors
from common.topics import CLIENTAPI_PRESENCE, CLIENTAPI_RECEIPT, CLIENTAPI_SEND_TO_DEVICE, CLIENTAPI_TYPING
from federationapi.keyring import now_ms
from matrixlib.events import MEMBER, POWER_LEVELS, SERVER_ACL, Event
from matrixlib.signing import generate_signing_key
from tests.builders import TestRoom
from tests.component.federationapi.conftest import DAY_MS
from tests.component.federationapi.inbound_fixtures import ALICE, V1, Inbound, pdu, start_inbound

# One room server and federation API for the module (each test builds its
# own rooms): starting them is most of a test's time.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_inbound(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Inbound]:
    async with start_inbound(tmp_path_factory.mktemp("inbound_send")) as started:
        yield started


@pytest.fixture
def inbound(shared_inbound: Inbound) -> Inbound:
    shared_inbound.reset()
    return shared_inbound


async def room_with_bob(inbound: Inbound, room_version: str = "12") -> TestRoom:
    """Our room (alice's), which the remote's bob joins over /send."""
    room = TestRoom(room_version)
    await inbound.input(room, room.events)
    join = inbound.remote_event(room, lambda: room.join(inbound.user("bob")))
    assert await inbound.send_events([join]) == {join.event_id: {}}
    return room


def bob_messages(inbound: Inbound, room: TestRoom, count: int, prefix: str) -> list[Event]:
    with inbound.as_remote(room):
        return [room.message(inbound.user("bob"), f"{prefix}{i}") for i in range(count)]


async def assert_room_still_works(inbound: Inbound, room: TestRoom, sender: str | None = None) -> None:
    message = inbound.remote_event(room, lambda: room.message(sender or inbound.user("bob"), "still here"))
    assert await inbound.send_events([message]) == {message.event_id: {}}
    assert message.event_id in await inbound.latest(room.room_id)


@pytest.mark.parametrize("room_version", ["1", "3", "12"])
async def test_good_transaction_is_accepted_and_visible(inbound: Inbound, room_version: str) -> None:
    room = await room_with_bob(inbound, room_version)
    messages = bob_messages(inbound, room, 3, "m")
    assert await inbound.send_events(messages) == {m.event_id: {} for m in messages}
    for message in messages:
        stored = await inbound.stored(message.event_id, include_unaccepted=False)
        assert stored is not None and stored["content"]["body"] == message.content["body"]
    assert await inbound.latest(room.room_id) == [messages[-1].event_id]


async def test_forked_event_is_accepted_and_both_branches_count(inbound: Inbound) -> None:
    room = await room_with_bob(inbound)
    fork_point = room.latest
    # Meanwhile, here: alice renames the room; bob, not having seen it, renames himself.
    name = room.set_state("m.room.name", {"name": "from here"})
    await inbound.input(room, [name])
    bob = inbound.user("bob")
    renamed = inbound.remote_event(room, lambda: room.build(MEMBER, {"membership": "join", "displayname": "Bob"},
                                                          sender=bob, state_key=bob, prev_event_ids=fork_point,
                                                          advance=False))
    assert await inbound.send_events([renamed]) == {renamed.event_id: {}}
    assert set(await inbound.latest(room.room_id)) == {name.event_id, renamed.event_id}
    state = await inbound.roomserver.query_latest_events_and_state(
        rs_pb.QueryLatestEventsAndStateRequest(room_id=room.room_id))
    assert {e.event_id for e in state.state_events} >= {name.event_id, renamed.event_id}


async def test_retry_answers_the_stored_response_without_processing(inbound: Inbound) -> None:
    room = await room_with_bob(inbound)
    first = inbound.remote_event(room, lambda: room.message(inbound.user("bob"), "once"))
    r = await inbound.send([pdu(first)], txn_id="txn-1")
    assert r.status_code == 200 and r.json() == {"pdus": {first.event_id: {}}}
    # The same transaction ID again, now (wrongly) carrying another event:
    # answered from what was stored, the new event never processed.
    second = inbound.remote_event(room, lambda: room.message(inbound.user("bob"), "never"))
    r = await inbound.send([pdu(first), pdu(second)], txn_id="txn-1")
    assert r.status_code == 200 and r.json() == {"pdus": {first.event_id: {}}}
    assert await inbound.stored(second.event_id) is None
    # Another transaction ID is processed.
    assert await inbound.send_events([second]) == {second.event_id: {}}


async def test_forged_signature_is_rejected(inbound: Inbound) -> None:
    room = await room_with_bob(inbound)
    with inbound.as_remote(room):
        room.signing_key = generate_signing_key(inbound.remote.key.version)  # same key ID, other key
        forged = room.message(inbound.user("bob"), "forged", advance=False)
    results = await inbound.send_events([forged])
    assert "signature" in results[forged.event_id]["error"]
    assert await inbound.stored(forged.event_id) is None
    await assert_room_still_works(inbound, room)


async def test_event_of_another_server_signed_by_the_origin_is_rejected(inbound: Inbound) -> None:
    room = await room_with_bob(inbound)
    # The origin passes off an event as @mallory:elsewhere.test's: that
    # server never signed it.
    with inbound.as_remote(room):
        spoofed = room.message("@mallory:elsewhere.invalid", "spoofed", advance=False)
    results = await inbound.send_events([spoofed])
    assert "error" in results[spoofed.event_id]
    assert await inbound.stored(spoofed.event_id) is None
    await assert_room_still_works(inbound, room)


@pytest.mark.parametrize(("room_version", "accepted"), [("3", True), ("12", False)])
async def test_key_must_be_valid_at_the_event_time_from_v5(inbound: Inbound, room_version: str,
                                                          accepted: bool) -> None:
    room = await room_with_bob(inbound, room_version)
    # The remote's key is valid for a day from now; this event claims a time
    # two days on, when (for all we know) the key may have been retired.
    room._clock = now_ms() + 2 * DAY_MS
    future = inbound.remote_event(room, lambda: room.message(inbound.user("bob"), "from the future",
                                                             advance=False))
    results = await inbound.send_events([future])
    if accepted:
        assert results == {future.event_id: {}}
    else:
        assert "signature" in results[future.event_id]["error"]
        assert await inbound.stored(future.event_id) is None


async def test_wrong_content_hash_is_stored_redacted(inbound: Inbound) -> None:
    room = await room_with_bob(inbound)
    message = inbound.remote_event(room, lambda: room.message(inbound.user("bob"), "original"))
    tampered = pdu(message)
    tampered["content"] = {"msgtype": "m.text", "body": "tampered"}
    r = await inbound.send([tampered])
    # The signatures (over the redacted form) still hold, and so does the ID.
    assert r.status_code == 200 and r.json() == {"pdus": {message.event_id: {}}}
    stored = await inbound.stored(message.event_id, include_unaccepted=False)
    assert stored is not None and stored["content"] == {}
    await assert_room_still_works(inbound, room)


async def test_auth_failure_is_rejected(inbound: Inbound) -> None:
    room = await room_with_bob(inbound)
    # bob (power 0) may not change the power levels (state_default 50).
    with inbound.as_remote(room):
        grab = room.set_state(POWER_LEVELS, {"users": {inbound.user("bob"): 100}}, sender=inbound.user("bob"),
                              advance=False)
    results = await inbound.send_events([grab])
    assert results[grab.event_id]["error"].startswith("rejected")
    assert await inbound.stored(grab.event_id, include_unaccepted=False) is None
    await assert_room_still_works(inbound, room)


async def test_event_failing_the_current_state_is_soft_failed(inbound: Inbound) -> None:
    room = await room_with_bob(inbound)
    carol_join = inbound.remote_event(room, lambda: room.join(inbound.user("carol")))
    assert await inbound.send_events([carol_join]) == {carol_join.event_id: {}}
    before_ban = room.latest
    ban = room.ban(ALICE, inbound.user("bob"))
    await inbound.input(room, [ban])
    # bob's message on the state before the ban: allowed there, not now.
    late = inbound.remote_event(room, lambda: room.message(inbound.user("bob"), "late", prev_event_ids=before_ban,
                                                           advance=False))
    assert await inbound.send_events([late]) == {late.event_id: {}}
    assert await inbound.stored(late.event_id) is not None
    assert await inbound.stored(late.event_id, include_unaccepted=False) is None
    assert await inbound.latest(room.room_id) == [ban.event_id]
    await assert_room_still_works(inbound, room, sender=inbound.user("carol"))
    # Readers never hear of it; they do of what came before and after.
    output = await inbound.output_event_ids()
    assert late.event_id not in output
    assert {carol_join.event_id, ban.event_id} <= output


async def test_rooms_of_one_transaction_are_handled_apart(inbound: Inbound) -> None:
    denied = await room_with_bob(inbound)
    allowed = await room_with_bob(inbound)
    await inbound.input(denied, [denied.set_state(SERVER_ACL, {"allow": ["*"], "deny": ["localhost"]})])
    in_denied = inbound.remote_event(denied, lambda: denied.message(inbound.user("bob"), "no", advance=False))
    in_allowed = inbound.remote_event(allowed, lambda: allowed.message(inbound.user("bob"), "yes"))
    results = await inbound.send_events([in_denied, in_allowed])
    assert "ACL" in results[in_denied.event_id]["error"]
    assert results[in_allowed.event_id] == {}


async def test_pdus_breaking_the_dag_limits_are_refused(inbound: Inbound) -> None:
    room = await room_with_bob(inbound)
    bob = inbound.user("bob")
    with inbound.as_remote(room):
        orphan = room.message(bob, "no parents", prev_event_ids=[], depth=5, advance=False)
        crowded = room.message(bob, "many parents", prev_event_ids=room.latest + [f"$fake{i}" for i in range(20)],
                               advance=False)
    results = await inbound.send_events([orphan, crowded])
    assert "prev_events" in results[orphan.event_id]["error"]
    assert "prev_events" in results[crowded.event_id]["error"]
    assert not inbound.remote_rooms.requests  # refused before any gap filling
    await assert_room_still_works(inbound, room)


async def test_pdu_of_an_unknown_room_is_refused(inbound: Inbound) -> None:
    elsewhere = TestRoom("12", creator=inbound.user("zed"))
    results = await inbound.send_events([elsewhere.events[-1]])
    assert "not in room" in results[elsewhere.events[-1].event_id]["error"]


async def test_server_acl_denying_the_origin_refuses_its_pdus(inbound: Inbound) -> None:
    room = await room_with_bob(inbound)
    acl = room.set_state(SERVER_ACL, {"allow": ["*"], "deny": ["localhost"]})
    await inbound.input(room, [acl])
    message = inbound.remote_event(room, lambda: room.message(inbound.user("bob"), "banned", advance=False))
    results = await inbound.send_events([message])
    assert "ACL" in results[message.event_id]["error"]
    assert await inbound.stored(message.event_id) is None


async def test_malformed_transactions_are_400(inbound: Inbound) -> None:
    uri = f"{V1}/send/bad"
    bodies: list[dict[str, Any]] = [{"pdus": "nope"}, {"pdus": [], "edus": {}}, {"origin_server_ts": "soon", "pdus": []}]
    for body in bodies:
        r = await inbound.call("PUT", uri, body)
        assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON", (body, r.text)
    r = await inbound.call("PUT", uri, [])
    assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON"
    r = await inbound.call("PUT", uri, raw=b"{not json")
    assert r.status_code in (400, 401)


async def test_more_than_50_pdus_or_100_edus_is_refused_whole(inbound: Inbound) -> None:
    room = await room_with_bob(inbound)
    messages = bob_messages(inbound, room, 51, "m")
    r = await inbound.send([pdu(m) for m in messages])
    assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON"
    assert await inbound.stored(messages[0].event_id) is None
    r = await inbound.send([], [{"edu_type": "m.unknown", "content": {}}] * 101)
    assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON"
    # Exactly 50 is fine.
    assert await inbound.send_events(messages[:50]) == {m.event_id: {} for m in messages[:50]}


async def test_bad_x_matrix_signature_is_401(inbound: Inbound) -> None:
    from matrixlib.federation_auth import sign_request

    body = {"origin": inbound.origin, "origin_server_ts": 0, "pdus": []}
    auth = sign_request(generate_signing_key(inbound.remote.key.version), method="PUT", uri=f"{V1}/send/x",
                        origin=inbound.origin, destination="test", content=body)
    r = await inbound.http.put(f"{V1}/send/x", content=json.dumps(body).encode(), headers={"Authorization": auth})
    assert r.status_code == 401 and r.json()["errcode"] == "M_UNAUTHORIZED"
    r = await inbound.http.put(f"{V1}/send/x", content=json.dumps(body).encode())
    assert r.status_code == 401


# -- gap filling ----------------------------------------------------------------------


async def test_gap_filled_with_get_missing_events(inbound: Inbound) -> None:
    room = await room_with_bob(inbound)
    inbound.remote_rooms.rooms[room.room_id] = room
    gap = bob_messages(inbound, room, 4, "gap")
    last = inbound.remote_event(room, lambda: room.message(inbound.user("bob"), "after the gap"))
    inbound.remote_rooms.missing_events_answer = list(reversed(gap))
    assert await inbound.send_events([last]) == {last.event_id: {}}
    assert "get_missing_events" in inbound.remote_rooms.requests
    assert "state_ids" not in inbound.remote_rooms.requests
    for event in gap:
        assert await inbound.stored(event.event_id, include_unaccepted=False) is not None
    assert await inbound.latest(room.room_id) == [last.event_id]


async def test_gap_not_closed_fetches_the_state_with_state_ids(inbound: Inbound) -> None:
    room = await room_with_bob(inbound)
    inbound.remote_rooms.rooms[room.room_id] = room
    # The gap holds a state event (a topic) and messages; the origin answers
    # /get_missing_events with nothing.
    topic = inbound.remote_event(room, lambda: room.set_state("m.room.topic", {"topic": "from the gap"},
                                                              sender=inbound.user("bob")))
    bob_messages(inbound, room, 3, "unseen")
    last = inbound.remote_event(room, lambda: room.message(inbound.user("bob"), "after the gap"))
    inbound.remote_rooms.missing_events_answer = []
    assert await inbound.send_events([last]) == {last.event_id: {}}
    assert {"get_missing_events", "state_ids", "event"} <= set(inbound.remote_rooms.requests)
    assert await inbound.stored(last.event_id, include_unaccepted=False) is not None
    # The topic arrived as part of the state (an outlier).
    assert await inbound.stored(topic.event_id) is not None
    assert last.event_id in await inbound.latest(room.room_id)
    await assert_room_still_works(inbound, room)


async def test_big_missing_state_comes_from_state(inbound: Inbound) -> None:
    room = await room_with_bob(inbound)
    inbound.remote_rooms.rooms[room.room_id] = room
    # Twelve more of the remote's users joined in the gap: too many to fetch one by one.
    with inbound.as_remote(room):
        joins = [room.join(inbound.user(f"member{i}")) for i in range(12)]
        last = room.message(inbound.user("member11"), "hello from the gap")
    inbound.remote_rooms.missing_events_answer = []
    assert await inbound.send_events([last]) == {last.event_id: {}}
    assert "state" in inbound.remote_rooms.requests and "event" not in inbound.remote_rooms.requests
    for join in joins:
        assert await inbound.stored(join.event_id) is not None


async def test_unknown_auth_event_is_fetched_from_event_auth(inbound: Inbound) -> None:
    room = await room_with_bob(inbound)
    inbound.remote_rooms.rooms[room.room_id] = room
    bob = inbound.user("bob")
    with inbound.as_remote(room):
        # bob's new display name never reached us; his message names it as an auth event.
        renamed = room.build("m.room.member", {"membership": "join", "displayname": "Bob"}, sender=bob,
                             state_key=bob, advance=False)
        auth_state = dict(room.state)
        auth_state[renamed.state_tuple] = renamed
        message = room.message(bob, "as Bob", auth_state=auth_state)
    assert renamed.event_id in message.auth_event_ids
    assert await inbound.send_events([message]) == {message.event_id: {}}
    assert "event_auth" in inbound.remote_rooms.requests
    assert await inbound.stored(renamed.event_id) is not None
    assert await inbound.stored(message.event_id, include_unaccepted=False) is not None


async def test_unfillable_gap_is_a_per_pdu_error(inbound: Inbound) -> None:
    room = await room_with_bob(inbound)
    # The remote knows nothing of the room (404s everywhere).
    inbound.remote_event(room, lambda: room.message(inbound.user("bob"), "unseen"))
    last = inbound.remote_event(room, lambda: room.message(inbound.user("bob"), "after"))
    results = await inbound.send_events([last])
    assert "gap" in results[last.event_id]["error"]
    assert await inbound.stored(last.event_id) is None


# -- EDUs -------------------------------------------------------------------------------


async def read_topic(inbound: Inbound, topic: str, expected: int) -> list[bytes]:
    consumer = await inbound.log.consumer(f"test-{topic}", [topic])
    values: list[bytes] = []
    try:
        for _ in range(20):
            values += [r.value for r in await consumer.fetch(timeout=0.2)]
            if len(values) >= expected:
                break
    finally:
        await consumer.close()
    return values


async def test_edus_land_on_the_client_topics(inbound: Inbound) -> None:
    room = await room_with_bob(inbound)
    bob = inbound.user("bob")
    alice_device = "ALICEDEV"
    inbound.userapi.add_user("alice", alice_device)
    message = inbound.remote_event(room, lambda: room.message(bob, "read me"))
    assert await inbound.send_events([message]) == {message.event_id: {}}
    edus: list[Any] = [
        {"edu_type": "m.typing", "content": {"room_id": room.room_id, "user_id": bob, "typing": True}},
        # Not the origin's user, and not in the room: dropped.
        {"edu_type": "m.typing", "content": {"room_id": room.room_id, "user_id": "@eve:other.test", "typing": True}},
        {"edu_type": "m.typing", "content": {"room_id": room.room_id, "user_id": inbound.user("nobody"),
                                             "typing": True}},
        {"edu_type": "m.receipt", "content": {room.room_id: {"m.read": {bob: {
            "event_ids": [message.event_id], "data": {"ts": 1234}}}}}},
        {"edu_type": "m.presence", "content": {"push": [
            {"user_id": bob, "presence": "online", "last_active_ago": 10, "status_msg": "hi"},
            {"user_id": "@eve:other.test", "presence": "online", "last_active_ago": 10}]}},
        {"edu_type": "m.direct_to_device", "content": {
            "sender": bob, "type": "m.room_key_request", "message_id": "msg1",
            "messages": {ALICE: {"*": {"hello": "alice"}}}}},
        {"edu_type": "m.something_new", "content": {"x": 1}},
        "not an object",
    ]
    r = await inbound.send([], edus)
    assert r.status_code == 200, r.text

    typing = [edu_log_pb2.TypingUpdate.FromString(v) for v in await read_topic(inbound, CLIENTAPI_TYPING.name, 1)]
    assert [(t.user_id, t.room_id, t.typing) for t in typing] == [(bob, room.room_id, True)]
    assert typing[0].timeout_ms > 0
    receipts = [edu_log_pb2.ReceiptUpdate.FromString(v) for v in await read_topic(inbound, CLIENTAPI_RECEIPT.name, 1)]
    assert [(x.user_id, x.event_id, x.receipt_type, x.ts_ms) for x in receipts] == [
        (bob, message.event_id, "m.read", 1234)]
    presence = [edu_log_pb2.PresenceUpdate.FromString(v) for v in await read_topic(inbound, CLIENTAPI_PRESENCE.name, 1)]
    assert [(p.user_id, p.presence, p.status_msg) for p in presence] == [(bob, "online", "hi")]
    to_device = [edu_log_pb2.ToDeviceMessage.FromString(v)
                 for v in await read_topic(inbound, CLIENTAPI_SEND_TO_DEVICE.name, 1)]
    assert [(m.sender, m.target_user_id, m.target_device_id, m.event_type) for m in to_device] == [
        (bob, ALICE, alice_device, "m.room_key_request")]
    assert json.loads(to_device[0].content_json) == {"hello": "alice"}


async def test_failure_of_ours_is_not_stored_so_a_retry_processes_again(inbound: Inbound,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    room = await room_with_bob(inbound)
    message = inbound.remote_event(room, lambda: room.message(inbound.user("bob"), "retried"))
    assert inbound.federation.inbound is not None
    roomserver = inbound.federation.inbound.context.roomserver
    real_input = roomserver.input_room_events

    async def unavailable(req: Any) -> Any:
        raise errors.Unavailable("the room server did not process the events in time")

    monkeypatch.setattr(roomserver, "input_room_events", unavailable)
    r = await inbound.send([pdu(message)], txn_id="flaky")
    assert r.status_code == 200 and "internal error" in r.json()["pdus"][message.event_id]["error"]
    monkeypatch.setattr(roomserver, "input_room_events", real_input)
    r = await inbound.send([pdu(message)], txn_id="flaky")
    assert r.status_code == 200 and r.json() == {"pdus": {message.event_id: {}}}
    assert await inbound.stored(message.event_id, include_unaccepted=False) is not None
