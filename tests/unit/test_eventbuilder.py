"""common.eventbuilder: new local events and a new room's initial chain."""

from __future__ import annotations

import pytest
from myelin.roomserver.v1 import events_pb2, input_log_pb2
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb

from common import errors
from common.eventbuilder import (
    InitialStateEvent,
    RoomCreationRequest,
    build_local_event,
    build_room_creation_events,
)
from matrixlib.events import Event
from matrixlib.room_versions import get_room_version
from matrixlib.signing import generate_signing_key
from tests.fakes.roomserver import FakeRoomserver

SERVER = "eb.test"
ALICE = f"@alice:{SERVER}"
KEY = generate_signing_key("k1")


async def make_room(rs: FakeRoomserver, version: str, **request: object) -> tuple[str, list[Event]]:
    built = build_room_creation_events(
        RoomCreationRequest(creator=ALICE, room_version=get_room_version(version), **request),  # type: ignore[arg-type]
        server_name=SERVER, signing_key=KEY, now_ms=1000)
    answer = await rs.input_room_events(rs_pb.InputRoomEventsRequest(events=[
        input_log_pb2.InputRoomEvent(kind=input_log_pb2.INPUT_KIND_NEW, event=events_pb2.Event(
            event_id=e.event_id, room_version=version, pdu_json=e.to_json())) for e in built.events]))
    assert all(r.outcome == rs_pb.INPUT_OUTCOME_ACCEPTED for r in answer.results), answer
    return built.room_id, built.events


def test_initial_chain_order_and_links() -> None:
    built = build_room_creation_events(RoomCreationRequest(
        creator=ALICE, room_version=get_room_version("11"), preset="private_chat", name="N", topic="T",
        initial_state=[InitialStateEvent("m.room.encryption", "", {"algorithm": "m.megolm.v1.aes-sha2"})],
        invite=[f"@bob:{SERVER}"]), server_name=SERVER, signing_key=KEY, now_ms=5)
    assert [(e.type, e.state_key) for e in built.events] == [
        ("m.room.create", ""), ("m.room.member", ALICE), ("m.room.power_levels", ""),
        ("m.room.join_rules", ""), ("m.room.history_visibility", ""), ("m.room.guest_access", ""),
        ("m.room.encryption", ""), ("m.room.name", ""), ("m.room.topic", "")]
    for depth, (before, event) in enumerate(zip(built.events, built.events[1:], strict=False), start=2):
        assert event.prev_event_ids == [before.event_id]
        assert event.depth == depth
        assert event.room_id == built.room_id
        assert event.origin_server_ts == 5
    by_type = {e.type: e for e in built.events}
    assert set(by_type["m.room.name"].auth_event_ids) == {
        by_type["m.room.create"].event_id, by_type["m.room.power_levels"].event_id,
        by_type["m.room.member"].event_id}
    assert by_type["m.room.topic"].content["m.topic"] == {"m.text": [{"mimetype": "text/plain", "body": "T"}]}


def test_v12_chain() -> None:
    built = build_room_creation_events(RoomCreationRequest(
        creator=ALICE, room_version=get_room_version("12"), preset="trusted_private_chat",
        invite=[f"@bob:{SERVER}"], creation_content={"additional_creators": [f"@carol:{SERVER}", ALICE]}),
        server_name=SERVER, signing_key=KEY)
    create = built.events[0]
    assert "room_id" not in create.pdu
    assert built.room_id == "!" + create.event_id[1:]
    assert create.content["additional_creators"] == [f"@carol:{SERVER}", f"@bob:{SERVER}"]
    for event in built.events[1:]:
        assert create.event_id not in event.auth_event_ids
    power = built.events[2].content
    assert power["users"] == {}
    assert power["events"]["m.room.tombstone"] == 150


def test_creation_refusals() -> None:
    def attempt(**kwargs: object) -> None:
        build_room_creation_events(RoomCreationRequest(creator=ALICE, **kwargs),  # type: ignore[arg-type]
                                   server_name=SERVER, signing_key=KEY)

    with pytest.raises(errors.InvalidParam):
        attempt(room_version=get_room_version("10"), initial_state=[InitialStateEvent("m.room.create", "", {})])
    with pytest.raises(errors.InvalidParam):
        attempt(room_version=get_room_version("12"), power_level_content_override={"users": {ALICE: 100}})
    with pytest.raises(errors.InvalidParam):
        attempt(room_version=get_room_version("12"), creation_content={"additional_creators": ["nope"]})
    with pytest.raises(errors.Forbidden):
        attempt(room_version=get_room_version("10"),
                initial_state=[InitialStateEvent("org.example", "", {})],
                power_level_content_override={"state_default": 1000})
    with pytest.raises(errors.BadJSON):
        attempt(room_version=get_room_version("10"), name="x", creation_content={"f": 0.5})


@pytest.mark.parametrize("version", ["1", "3", "10", "12"])
async def test_build_local_event_uses_latest_state(version: str) -> None:
    rs = FakeRoomserver()
    room_id, chain = await make_room(rs, version, preset="public_chat")
    event = await build_local_event(rs, room_id=room_id, type="m.room.message", sender=ALICE,
                                    content={"body": "hi"}, server_name=SERVER, signing_key=KEY, now_ms=7)
    assert event.prev_event_ids == [chain[-1].event_id]
    assert event.depth == chain[-1].depth + 1
    by_key = {(e.type, e.state_key): e.event_id for e in chain}
    expected = {by_key[("m.room.power_levels", "")], by_key[("m.room.member", ALICE)]}
    if version != "12":
        expected.add(by_key[("m.room.create", "")])
    assert set(event.auth_event_ids) == expected
    if version == "1":
        # v1/v2 reference events with their hashes.
        assert all(pair[1].get("sha256") for pair in event.pdu["prev_events"] + event.pdu["auth_events"])
    answer = await rs.input_room_events(rs_pb.InputRoomEventsRequest(events=[input_log_pb2.InputRoomEvent(
        kind=input_log_pb2.INPUT_KIND_NEW, event=events_pb2.Event(
            event_id=event.event_id, room_version=version, pdu_json=event.to_json()))]))
    assert answer.results[0].outcome == rs_pb.INPUT_OUTCOME_ACCEPTED


async def test_build_local_join_picks_join_rules() -> None:
    rs = FakeRoomserver()
    room_id, chain = await make_room(rs, "10", preset="public_chat")
    bob = f"@bob:{SERVER}"
    event = await build_local_event(rs, room_id=room_id, type="m.room.member", sender=bob, state_key=bob,
                                    content={"membership": "join"}, server_name=SERVER, signing_key=KEY)
    join_rules = next(e for e in chain if e.type == "m.room.join_rules")
    assert join_rules.event_id in event.auth_event_ids


async def test_build_local_event_unknown_room() -> None:
    with pytest.raises(errors.NotFound):
        await build_local_event(FakeRoomserver(), room_id=f"!none:{SERVER}", type="m.room.message",
                                sender=ALICE, content={}, server_name=SERVER, signing_key=KEY)


async def test_build_local_event_too_large() -> None:
    rs = FakeRoomserver()
    room_id, _ = await make_room(rs, "10")
    with pytest.raises(errors.TooLarge):
        await build_local_event(rs, room_id=room_id, type="m.room.message", sender=ALICE,
                                content={"body": "x" * 65536}, server_name=SERVER, signing_key=KEY)


async def test_type_and_state_key_limits() -> None:
    rs = FakeRoomserver()
    room_id, _ = await make_room(rs, "10")
    with pytest.raises(errors.TooLarge):
        await build_local_event(rs, room_id=room_id, type="t" * 256, sender=ALICE, content={},
                                server_name=SERVER, signing_key=KEY)
    with pytest.raises(errors.TooLarge):
        await build_local_event(rs, room_id=room_id, type="org.example", state_key="é" * 128, sender=ALICE,
                                content={}, server_name=SERVER, signing_key=KEY)
    event = await build_local_event(rs, room_id=room_id, type="t" * 255, state_key="k" * 255, sender=ALICE,
                                    content={}, server_name=SERVER, signing_key=KEY)
    assert event.type == "t" * 255


async def test_state_events_are_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The state events each build is given are the same few in a room:
    parsed the first time, then taken by their exact JSON."""
    rs = FakeRoomserver()
    room_id, _ = await make_room(rs, "10", preset="public_chat")
    parsed: list[str | None] = []
    real = Event.from_json

    def counting(pdu_json: bytes | str, room_version: object, event_id: str | None = None) -> Event:
        parsed.append(event_id)
        return real(pdu_json, room_version, event_id)  # type: ignore[arg-type]

    monkeypatch.setattr(Event, "from_json", counting)
    first = await build_local_event(rs, room_id=room_id, type="m.room.message", sender=ALICE,
                                    content={"body": "one"}, server_name=SERVER, signing_key=KEY)
    assert parsed
    parsed.clear()
    second = await build_local_event(rs, room_id=room_id, type="m.room.message", sender=ALICE,
                                     content={"body": "two"}, server_name=SERVER, signing_key=KEY)
    assert parsed == []
    assert second.auth_event_ids == first.auth_event_ids
