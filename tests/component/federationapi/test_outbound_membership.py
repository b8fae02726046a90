"""perform_join / perform_leave / perform_knock / perform_invite against fake
resident servers served over TLS (their keys fetched by the real KeyRing),
with the real room server and federation API of ``inbound_fixtures``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from myelin.federationapi.v1 import federationapi_pb2 as fed_pb
from myelin.roomserver.v1 import input_log_pb2
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common import errors
from common.grpc_binding import insecure_channel
from common.http import json_response
from federationapi.grpc.client import GrpcFederationAPIClient
from federationapi.grpc.server import serve_grpc
from federationapi.internal.api import FederationInternalAPIImpl
from federationapi.keyring import now_ms
from matrixlib.events import MEMBER, TOPIC, Event
from matrixlib.room_versions import get_room_version
from matrixlib.signing import generate_signing_key, sign_event
from tests.builders import TEST_SERVER_NAME, TestRoom, input_event
from tests.component.federationapi.conftest import DAY_MS, FakeKeyServer, Harness
from tests.component.federationapi.inbound_fixtures import Inbound, start_inbound

BOB = f"@bob:{TEST_SERVER_NAME}"
V1 = "/_matrix/federation/v1"
V2 = "/_matrix/federation/v2"


def template_of(event: Event) -> dict[str, Any]:
    return {k: v for k, v in event.pdu.items() if k not in ("signatures", "hashes", "unsigned", "event_id")}


@dataclass
class FakeResident:
    """A remote server in a room (or refusing in a set way): answers the
    make_*/send_* handshakes and invites from ``room``."""

    keys: FakeKeyServer = field(default_factory=lambda: FakeKeyServer(valid_until_ts=now_ms() + DAY_MS))
    room: TestRoom | None = None
    # Answers every make_* with this (status, body) instead.
    refuse: tuple[int, dict[str, Any]] | None = None
    # Extra events claimed to be part of the room's state.
    extra_state: list[Event] = field(default_factory=list)
    sign_invites_with: Any = None
    requests: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.keys.server_name

    def make_room(self, room_version: str, join_rule: str = "public") -> TestRoom:
        self.room = TestRoom(room_version, creator=f"@rita:{self.name}", server_name=self.name,
                             signing_key=self.keys.key, join_rule=join_rule)
        self.room.message(self.room.creator, "before the join")
        return self.room

    def auth_chain(self, events: list[Event]) -> list[Event]:
        assert self.room is not None
        found: dict[str, Event] = {}
        frontier = [a for e in events for a in e.auth_event_ids]
        if self.room.version.hydra:
            frontier.append(self.room.create.event_id)
        while frontier:
            event_id = frontier.pop()
            if event_id not in found and event_id in self.room.by_id:
                found[event_id] = self.room.by_id[event_id]
                frontier.extend(found[event_id].auth_event_ids)
        return list(found.values())

    def add_routes(self, bp: Blueprint) -> None:
        def make(verb: str, membership: str) -> Any:
            async def handler(request: Request, room_id: str, user_id: str) -> HTTPResponse:
                self.requests.append(f"make_{verb}")
                if self.refuse is not None:
                    return json_response(self.refuse[1], status=self.refuse[0])
                assert self.room is not None and room_id == self.room.room_id
                event = self.room.build(MEMBER, {"membership": membership}, sender=user_id, state_key=user_id,
                                        advance=False)
                return json_response({"room_version": self.room.version.identifier, "event": template_of(event)})
            return handler

        def send(verb: str) -> Any:
            async def handler(request: Request, room_id: str, event_id: str) -> HTTPResponse:
                self.requests.append(f"send_{verb}")
                assert self.room is not None
                event = Event(request.json, self.room.version)
                assert event.event_id == event_id
                state = list(self.room.state.values())
                self.room.add(event)
                signed = sign_event(event.pdu, self.room.version, self.name, self.keys.key)
                if verb == "join":
                    return json_response({
                        "origin": self.name, "members_omitted": False, "event": signed,
                        "state": [e.pdu for e in [*state, *self.extra_state]],
                        "auth_chain": [e.pdu for e in self.auth_chain(state)]})
                if verb == "knock":
                    return json_response({"knock_room_state": [self.room.create.pdu]})
                return json_response({})
            return handler

        async def invite(request: Request, room_id: str, event_id: str) -> HTTPResponse:
            self.requests.append("invite")
            body = request.json
            rv = get_room_version(body["room_version"])
            key = self.sign_invites_with or self.keys.key
            return json_response({"event": sign_event(body["event"], rv, self.name, key)})

        options: dict[str, Any] = {"unquote": True}
        for verb, membership, prefix in (("join", "join", V2), ("leave", "leave", V2), ("knock", "knock", V1)):
            bp.add_route(make(verb, membership), f"{V1}/make_{verb}/<room_id>/<user_id>", methods=["GET"],
                         name=f"make_{verb}", **options)
            bp.add_route(send(verb), f"{prefix}/send_{verb}/<room_id>/<event_id>", methods=["PUT"],
                         name=f"send_{verb}", **options)
        bp.add_route(invite, f"{V2}/invite/<room_id>/<event_id>", methods=["PUT"], name="invite", **options)


@dataclass
class Outbound:
    inbound: Inbound
    harness: Harness

    @property
    def api(self) -> FederationInternalAPIImpl:
        assert self.inbound.federation.internal is not None
        return self.inbound.federation.internal

    async def resident(self, **kwargs: Any) -> FakeResident:
        fake = FakeResident(**kwargs)
        fake.keys.extra_routes.append(fake.add_routes)
        await self.harness.start(fake.keys)
        return fake

    async def membership(self, room_id: str, user_id: str) -> rs_pb.QueryMembershipForUserResponse:
        return await self.inbound.roomserver.query_membership_for_user(
            rs_pb.QueryMembershipForUserRequest(room_id=room_id, user_id=user_id))


@pytest.fixture
async def outbound(harness: Harness) -> AsyncIterator[Outbound]:
    async with start_inbound(harness.tmp_path) as started:
        yield Outbound(started, harness)


@pytest.mark.parametrize("room_version", ["1", "10", "12"])
async def test_perform_join_through_the_first_server_that_answers(outbound: Outbound, room_version: str) -> None:
    broken = await outbound.resident(refuse=(500, {"errcode": "M_UNKNOWN", "error": "down"}))
    resident = await outbound.resident()
    room = resident.make_room(room_version)
    # A state event the resident did not sign: dropped.
    forger = TestRoom(room_version, creator=room.creator, server_name=resident.name,
                      signing_key=generate_signing_key(resident.keys.key.version), room_id=room.room_id or None)
    forged = forger.build(TOPIC, {"topic": "forged"}, state_key="", prev_event_ids=room.latest,
                          auth_event_ids=[room.power_levels.event_id, room.creator_join.event_id], advance=False)
    resident.extra_state.append(forged)

    answer = await outbound.api.perform_join(fed_pb.PerformJoinRequest(
        room_id=room.room_id, user_id=BOB, server_names=[broken.name, TEST_SERVER_NAME, resident.name],
        content_json=json.dumps({"displayname": "Bob"}).encode()))
    assert answer.joined_via == resident.name
    assert broken.requests == ["make_join"] and resident.requests == ["make_join", "send_join"]
    found = await outbound.membership(room.room_id, BOB)
    assert found.membership == "join" and found.is_in_room and found.event_id == answer.event_id
    join = await outbound.inbound.stored(answer.event_id)
    assert join is not None and join["content"] == {"displayname": "Bob", "membership": "join"}
    # Countersigned by the resident, as its answer gave it.
    assert resident.name in join["signatures"]
    info = await outbound.inbound.roomserver.query_room_info(rs_pb.QueryRoomInfoRequest(room_id=room.room_id))
    assert not info.is_stub and info.room_version == room_version
    assert list(info.latest_event_ids) == [answer.event_id]
    state = await outbound.inbound.roomserver.query_latest_events_and_state(
        rs_pb.QueryLatestEventsAndStateRequest(room_id=room.room_id))
    assert {e.event_id for e in state.state_events} == {e.event_id for e in room.state.values()}
    assert await outbound.inbound.stored(forged.event_id) is None


async def test_perform_join_refusals(outbound: Outbound) -> None:
    forbidding = await outbound.resident(refuse=(403, {"errcode": "M_FORBIDDEN", "error": "not invited"}))
    resident = await outbound.resident()
    room = resident.make_room("12")
    with pytest.raises(errors.Forbidden):
        await outbound.api.perform_join(fed_pb.PerformJoinRequest(
            room_id=room.room_id, user_id=BOB, server_names=[forbidding.name, resident.name]))
    # A refusal is an answer: the next server is not asked.
    assert resident.requests == []
    incompatible = await outbound.resident(refuse=(400, {"errcode": "M_INCOMPATIBLE_ROOM_VERSION", "error": "no",
                                                         "room_version": "99"}))
    with pytest.raises(errors.IncompatibleRoomVersion):
        await outbound.api.perform_join(fed_pb.PerformJoinRequest(
            room_id=room.room_id, user_id=BOB, server_names=[incompatible.name]))
    with pytest.raises(errors.NotFound):
        await outbound.api.perform_join(fed_pb.PerformJoinRequest(room_id=room.room_id, user_id=BOB))
    with pytest.raises(errors.NotFound):
        await outbound.api.perform_join(fed_pb.PerformJoinRequest(
            room_id=room.room_id, user_id=BOB, server_names=["localhost:1"]))
    assert (await outbound.membership(room.room_id, BOB)).membership == ""


async def test_perform_invite_answers_the_invitees_signed_event(outbound: Outbound) -> None:
    invitee_server = await outbound.resident()
    room = TestRoom("12", creator="@alice:test", join_rule="invite")
    zoe = f"@zoe:{invitee_server.name}"
    invite = room.invite("@alice:test", zoe)
    answer = await outbound.api.perform_invite(fed_pb.PerformInviteRequest(
        event_json=invite.to_json(), room_version="12", invite_room_state_json=[room.create.to_json()]))
    signed = Event.from_json(answer.event_json, room.version)
    assert signed.event_id == invite.event_id
    assert set(signed.signatures) == {TEST_SERVER_NAME, invitee_server.name}

    forger = await outbound.resident(sign_invites_with=generate_signing_key("k1"))
    bad = room.invite("@alice:test", f"@yan:{forger.name}")
    with pytest.raises(errors.Forbidden):
        await outbound.api.perform_invite(fed_pb.PerformInviteRequest(event_json=bad.to_json(), room_version="12"))
    unreachable = room.invite("@alice:test", "@xi:localhost:1")
    with pytest.raises(errors.NotFound):
        await outbound.api.perform_invite(fed_pb.PerformInviteRequest(event_json=unreachable.to_json(),
                                                                      room_version="12"))


async def test_perform_leave_rejects_a_remote_invite_through_the_inviter(outbound: Outbound) -> None:
    resident = await outbound.resident()
    room = resident.make_room("10", join_rule="invite")
    invite = room.invite(room.creator, BOB, unsigned={"invite_room_state": []})
    answer = await outbound.inbound.roomserver.input_room_events(rs_pb.InputRoomEventsRequest(
        wait=True, events=[input_event(invite, input_log_pb2.INPUT_KIND_OUTLIER)]))
    assert answer.results[0].outcome == rs_pb.INPUT_OUTCOME_ACCEPTED
    left = await outbound.api.perform_leave(fed_pb.PerformLeaveRequest(room_id=room.room_id, user_id=BOB,
                                                                       reason="no thanks"))
    assert resident.requests == ["make_leave", "send_leave"]
    assert room.by_id[left.event_id].content == {"membership": "leave", "reason": "no thanks"}
    found = await outbound.membership(room.room_id, BOB)
    assert (found.membership, found.event_id) == ("leave", left.event_id)


async def test_perform_knock(outbound: Outbound) -> None:
    resident = await outbound.resident()
    room = resident.make_room("12", join_rule="knock")
    knocked = await outbound.api.perform_knock(fed_pb.PerformKnockRequest(
        room_id=room.room_id, user_id=BOB, server_names=[resident.name], reason="hello"))
    assert room.by_id[knocked.event_id].membership == "knock"
    assert (await outbound.membership(room.room_id, BOB)).membership == "knock"
    # Retracted through a server of the room state the knock was answered with
    # (a v12 room ID names none).
    left = await outbound.api.perform_leave(fed_pb.PerformLeaveRequest(room_id=room.room_id, user_id=BOB))
    assert room.by_id[left.event_id].membership == "leave"
    assert (await outbound.membership(room.room_id, BOB)).membership == "leave"
    refusing = await outbound.resident(refuse=(403, {"errcode": "M_FORBIDDEN", "error": "no knocking"}))
    with pytest.raises(errors.Forbidden):
        await outbound.api.perform_knock(fed_pb.PerformKnockRequest(
            room_id=room.room_id, user_id="@cy:test", server_names=[refusing.name]))


async def test_an_invite_no_server_takes_back_is_rejected_here(outbound: Outbound) -> None:
    down = await outbound.resident(refuse=(500, {"errcode": "M_UNKNOWN", "error": "down"}))
    room = TestRoom("12", creator=f"@rita:{down.name}", server_name=down.name, signing_key=down.keys.key,
                    join_rule="invite")
    invite = room.invite(room.creator, BOB, unsigned={"invite_room_state": []})
    answer = await outbound.inbound.roomserver.input_room_events(rs_pb.InputRoomEventsRequest(
        wait=True, events=[input_event(invite, input_log_pb2.INPUT_KIND_OUTLIER)]))
    assert answer.results[0].outcome == rs_pb.INPUT_OUTCOME_ACCEPTED
    left = await outbound.api.perform_leave(fed_pb.PerformLeaveRequest(room_id=room.room_id, user_id=BOB))
    assert down.requests == ["make_leave"]
    found = await outbound.membership(room.room_id, BOB)
    assert (found.membership, found.event_id) == ("leave", left.event_id)
    # Nothing to fall back on for a room the user has no invite to.
    with pytest.raises(errors.NotFound):
        await outbound.api.perform_leave(fed_pb.PerformLeaveRequest(room_id=room.room_id, user_id="@cy:test",
                                                                    server_names=[down.name]))


async def test_over_the_grpc_binding(outbound: Outbound) -> None:
    """What the split deployment's client API gets: the same answers and errors."""
    server, port = await serve_grpc(outbound.api, "127.0.0.1:0")
    channel = insecure_channel(f"127.0.0.1:{port}")
    try:
        api = GrpcFederationAPIClient(channel)
        resident = await outbound.resident()
        room = resident.make_room("12")
        answer = await api.perform_join(fed_pb.PerformJoinRequest(
            room_id=room.room_id, user_id=BOB, server_names=[resident.name]))
        assert answer.joined_via == resident.name
        assert (await outbound.membership(room.room_id, BOB)).event_id == answer.event_id
        incompatible = await outbound.resident(refuse=(400, {"errcode": "M_INCOMPATIBLE_ROOM_VERSION",
                                                             "error": "no", "room_version": "99"}))
        with pytest.raises(errors.IncompatibleRoomVersion) as raised:
            await api.perform_join(fed_pb.PerformJoinRequest(
                room_id=room.room_id, user_id="@cy:test", server_names=[incompatible.name]))
        assert raised.value.extra == {"room_version": "99"}
        with pytest.raises(errors.NotFound):
            await api.perform_knock(fed_pb.PerformKnockRequest(room_id=room.room_id, user_id="@cy:test"))
    finally:
        await channel.close()
        await server.stop(None)
