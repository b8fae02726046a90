"""The client API's membership routes reaching other servers through the
federation API (a fake recording the calls) with a real room server:
which rooms are joined, left and knocked on remotely, through which
servers, and remote invites signed by the invitee's server before they are
input."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from myelin.federationapi.v1 import federationapi_pb2 as pb
from myelin.roomserver.v1 import input_log_pb2
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb

from common import errors
from common.config import Config
from common.logs import open_log
from matrixlib.events import CREATE, Event
from matrixlib.room_versions import get_room_version
from matrixlib.signing import generate_signing_key
from roomserver.api import RoomserverAPI
from roomserver.component import open_roomserver
from tests.builders import TestRoom, input_event
from tests.component.clientapi.conftest import SERVER_NAME, Harness, HarnessFactory

V3 = "/_matrix/client/v3"
REMOTE = "remote.test"


@dataclass
class FakeFederation:
    """``FederationInternalAPI`` recording what the client API asks."""

    calls: list[tuple[str, Any]] = field(default_factory=list)
    refuse_joins: bool = False

    async def perform_join(self, req: pb.PerformJoinRequest) -> pb.PerformJoinResponse:
        self.calls.append(("join", req))
        if self.refuse_joins:
            raise errors.Forbidden("not invited")
        return pb.PerformJoinResponse(event_id="$joined", joined_via=req.server_names[0])

    async def perform_leave(self, req: pb.PerformLeaveRequest) -> pb.PerformLeaveResponse:
        self.calls.append(("leave", req))
        return pb.PerformLeaveResponse(event_id="$left")

    async def perform_invite(self, req: pb.PerformInviteRequest) -> pb.PerformInviteResponse:
        self.calls.append(("invite", req))
        pdu = json.loads(req.event_json)
        pdu["signatures"][REMOTE] = {"ed25519:r": "c2lnbmF0dXJl"}
        return pb.PerformInviteResponse(event_json=json.dumps(pdu).encode())

    async def perform_knock(self, req: pb.PerformKnockRequest) -> pb.PerformKnockResponse:
        self.calls.append(("knock", req))
        return pb.PerformKnockResponse(event_id="$knocked")

    async def query_room_alias(self, req: pb.QueryRoomAliasRequest) -> pb.QueryRoomAliasResponse:
        self.calls.append(("alias", req))
        return pb.QueryRoomAliasResponse(room_id=f"!aliased:{REMOTE}", servers=["alias.test", REMOTE])

    async def perform_backfill(self, req: pb.PerformBackfillRequest) -> pb.PerformBackfillResponse:
        raise errors.Unrecognized("not in this fake")

    async def query_profile(self, req: pb.QueryProfileRequest) -> pb.QueryProfileResponse:
        raise errors.NotFound("not in this fake")

    async def query_keys(self, req: pb.QueryKeysRequest) -> pb.QueryKeysResponse:
        raise errors.Unrecognized("not in this fake")

    async def claim_keys(self, req: pb.ClaimKeysRequest) -> pb.ClaimKeysResponse:
        raise errors.Unrecognized("not in this fake")

    async def query_user_devices(self, req: pb.QueryUserDevicesRequest) -> pb.QueryUserDevicesResponse:
        raise errors.Unrecognized("not in this fake")

    async def query_public_rooms(self, req: pb.QueryPublicRoomsRequest) -> pb.QueryPublicRoomsResponse:
        raise errors.Unrecognized("not in this fake")

    async def download_media(self, req: pb.DownloadMediaRequest) -> pb.DownloadMediaResponse:
        raise errors.Unrecognized("not in this fake")

    def of(self, kind: str) -> list[Any]:
        return [req for k, req in self.calls if k == kind]


@dataclass
class Remote:
    harness: Harness
    roomserver: RoomserverAPI
    federation: FakeFederation

    async def post(self, path: str, headers: dict[str, str], body: dict[str, Any] | None = None,
                   **params: Any) -> Any:
        return await self.harness.http.post(f"{V3}{path}", json=body or {}, headers=headers, params=params)


@pytest.fixture
async def remote(make_harness: HarnessFactory, tmp_path: Path) -> AsyncIterator[Remote]:
    directory = tmp_path / "roomserver"
    config = Config(server_name=SERVER_NAME, data_dir=directory, signing_key_path=directory / "key",
                    input_timeout_seconds=20.0)
    log = open_log(None, directory / "log", "clientapi-remote-test")
    await log.start()
    component = await open_roomserver(config, log, generate_signing_key("rs"))
    task = asyncio.create_task(component.run())
    try:
        await asyncio.wait_for(component.ready.wait(), 10)
        harness = await make_harness(roomserver=component.api)
        federation = FakeFederation()
        harness.clientapi.services.federation = federation
        yield Remote(harness, component.api, federation)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await component.close()
        await log.close()


async def remote_invite(remote: Remote, user_id: str, room_version: str = "10") -> TestRoom:
    """A room of another server, which invited ``user_id``; we have only the invite."""
    room = TestRoom(room_version, creator=f"@rita:{REMOTE}", server_name=REMOTE, join_rule="invite")
    invite = room.invite(room.creator, user_id, unsigned={"invite_room_state": []})
    answer = await remote.roomserver.input_room_events(rs_pb.InputRoomEventsRequest(
        wait=True, events=[input_event(invite, input_log_pb2.INPUT_KIND_OUTLIER)]))
    assert answer.results[0].outcome == rs_pb.INPUT_OUTCOME_ACCEPTED
    return room


async def test_joining_an_unknown_room_goes_through_the_named_servers(remote: Remote) -> None:
    user = await remote.harness.register()
    room_id = f"!far:{REMOTE}"
    r = await remote.post(f"/join/{quote(room_id)}", user.headers, {"reason": "hi"},
                          via=["a.test", "b.test"], server_name="c.test")
    assert r.status_code == 200, r.text
    [join] = remote.federation.of("join")
    assert (join.room_id, join.user_id) == (room_id, user.user_id)
    assert list(join.server_names) == ["a.test", "b.test", "c.test", REMOTE]
    assert json.loads(join.content_json)["reason"] == "hi"
    # /rooms/{roomId}/join: the room ID's server only.
    r = await remote.post(f"/rooms/{quote(room_id)}/join", user.headers)
    assert r.status_code == 200, r.text
    assert list(remote.federation.of("join")[1].server_names) == [REMOTE]
    # Refused by the remote server: its 403 reaches the client.
    remote.federation.refuse_joins = True
    r = await remote.post(f"/join/{quote(room_id)}", user.headers)
    assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN")


async def test_joining_by_remote_alias_uses_the_alias_servers(remote: Remote) -> None:
    user = await remote.harness.register()
    r = await remote.post(f"/join/{quote('#far:' + REMOTE)}", user.headers, via="v.test")
    assert r.status_code == 200, r.text
    assert r.json()["room_id"] == f"!aliased:{REMOTE}"
    [join] = remote.federation.of("join")
    assert list(join.server_names) == ["v.test", "alias.test", REMOTE]


async def test_a_remote_invite_is_accepted_through_the_inviter_and_rejected_through_it(remote: Remote) -> None:
    user = await remote.harness.register()
    room = await remote_invite(remote, user.user_id, "12")
    r = await remote.post(f"/rooms/{quote(room.room_id)}/join", user.headers)
    assert r.status_code == 200, r.text
    assert list(remote.federation.of("join")[0].server_names) == [REMOTE]

    other = await remote.harness.register()
    room = await remote_invite(remote, other.user_id)
    r = await remote.post(f"/rooms/{quote(room.room_id)}/leave", other.headers, {"reason": "no"})
    assert r.status_code == 200, r.text
    [leave] = remote.federation.of("leave")
    assert (leave.room_id, leave.user_id, leave.reason) == (room.room_id, other.user_id, "no")


async def test_knocking_on_a_room_this_server_is_not_in(remote: Remote) -> None:
    user = await remote.harness.register()
    room_id = f"!knockable:{REMOTE}"
    r = await remote.post(f"/knock/{quote(room_id)}", user.headers, {"reason": "me"}, via="k.test")
    assert r.status_code == 200, r.text
    [knock] = remote.federation.of("knock")
    assert (knock.room_id, knock.user_id, list(knock.server_names), knock.reason) == (
        room_id, user.user_id, ["k.test"], "me")


async def test_inviting_a_remote_user(remote: Remote) -> None:
    alice = await remote.harness.register()
    room_id = await remote.harness.create_room(alice, preset="private_chat", name="Ours")
    zed = f"@zed:{REMOTE}"
    r = await remote.post(f"/rooms/{quote(room_id)}/invite", alice.headers, {"user_id": zed})
    assert r.status_code == 200, r.text
    [invite] = remote.federation.of("invite")
    rv = get_room_version(invite.room_version)
    event = Event.from_json(invite.event_json, rv)
    assert (event.state_key, event.membership, event.sender) == (zed, "invite", alice.user_id)
    shown = [Event.from_json(s, rv) for s in invite.invite_room_state_json]
    assert {e.type for e in shown} >= {CREATE, "m.room.name"}
    # The invitee's server's signature is on the event the room server has.
    found = await remote.roomserver.query_membership_for_user(
        rs_pb.QueryMembershipForUserRequest(room_id=room_id, user_id=zed))
    assert (found.membership, found.event_id) == ("invite", event.event_id)
    stored = await remote.roomserver.query_events_by_id(rs_pb.QueryEventsByIDRequest(event_ids=[event.event_id]))
    assert REMOTE in json.loads(stored.events[0].pdu_json)["signatures"]

    # One the room would refuse never leaves this server.
    bob = await remote.harness.register()
    r = await remote.post(f"/rooms/{quote(room_id)}/invite", bob.headers, {"user_id": f"@yan:{REMOTE}"})
    assert r.status_code == 403, r.text
    assert len(remote.federation.of("invite")) == 1


async def test_local_rooms_stay_local(remote: Remote) -> None:
    alice = await remote.harness.register()
    bob = await remote.harness.register()
    room_id = await remote.harness.create_room(alice, preset="public_chat")
    r = await remote.post(f"/join/{quote(room_id)}", bob.headers, via=REMOTE)
    assert r.status_code == 200, r.text
    r = await remote.post(f"/rooms/{quote(room_id)}/leave", bob.headers)
    assert r.status_code == 200, r.text
    assert remote.federation.calls == []
