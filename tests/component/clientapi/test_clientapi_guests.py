"""Guest accounts (modules/guest_access.md) in the client API, against the
real room server: registration with kind=guest, the endpoints a guest may
and may not call, joining only rooms with m.room.guest_access can_join,
and guests made to leave when the room stops allowing them, and a guest's
upgrade to a full account with its guest token (the config
switch that disables guest registration: test_clientapi_accounts.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest

from common.config import Config
from common.logs import open_log
from matrixlib.signing import generate_signing_key
from roomserver.api import ClientRoomserverAPI
from roomserver.component import open_roomserver
from tests.component.clientapi.conftest import SERVER_NAME, Harness, HarnessFactory, User

V3 = "/_matrix/client/v3"


@pytest.fixture
async def roomserver(tmp_path: Path) -> AsyncIterator[ClientRoomserverAPI]:
    directory = tmp_path / "roomserver"
    config = Config(server_name=SERVER_NAME, data_dir=directory, signing_key_path=directory / "key")
    log = open_log(None, directory / "log", "guests-test")
    await log.start()
    component = await open_roomserver(config, log, generate_signing_key("rs"))
    task = asyncio.create_task(component.run())
    try:
        await asyncio.wait_for(component.ready.wait(), 10)
        yield component.api
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await component.close()
        await log.close()


@pytest.fixture
async def harness(make_harness: HarnessFactory, roomserver: ClientRoomserverAPI) -> Harness:
    return await make_harness(roomserver=roomserver)


async def register_guest(harness: Harness) -> User:
    response = await harness.http.post(f"{V3}/register", params={"kind": "guest"}, json={})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user_id"].startswith("@") and body["user_id"][1:].split(":")[0].isdigit()
    assert body["home_server"] == SERVER_NAME
    return User(body["user_id"], body["device_id"], body["access_token"])


async def membership_of(harness: Harness, user: User, room_id: str, owner: User) -> str | None:
    response = await harness.http.get(f"{V3}/rooms/{room_id}/state/m.room.member/{quote(user.user_id)}",
                                      headers=owner.headers)
    if response.status_code == 404:
        return None
    membership: str = response.json()["membership"]
    return membership


async def test_guest_registration_and_the_endpoints_open_to_guests(harness: Harness) -> None:
    guest = await register_guest(harness)
    other = await register_guest(harness)
    assert guest.user_id != other.user_id

    response = await harness.http.get(f"{V3}/account/whoami", headers=guest.headers)
    assert response.json() == {"user_id": guest.user_id, "device_id": guest.device_id, "is_guest": True}
    alice = await harness.register("alice")
    response = await harness.http.get(f"{V3}/account/whoami", headers=alice.headers)
    assert response.json()["is_guest"] is False

    for method, path, body in [("POST", "/createRoom", {}), ("GET", "/pushrules/", None),
                               ("PUT", f"/user/{quote(guest.user_id)}/account_data/x.y", {"a": 1}),
                               ("PUT", f"/profile/{quote(guest.user_id)}/avatar_url", {"avatar_url": "mxc://a/b"}),
                               ("POST", "/account/password", {"new_password": "x"})]:
        response = await harness.http.request(method, V3 + path, json=body, headers=guest.headers)
        assert (response.status_code, response.json()["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN"), path
    response = await harness.http.put(f"{V3}/profile/{quote(guest.user_id)}/displayname",
                                      json={"displayname": "Visitor"}, headers=guest.headers)
    assert response.status_code == 200, response.text
    response = await harness.http.get(f"{V3}/devices", headers=guest.headers)
    assert [d["device_id"] for d in response.json()["devices"]] == [guest.device_id]
    response = await harness.http.get(f"{V3}/capabilities", headers=guest.headers)
    assert response.status_code == 200, response.text
    # A full account may not take a numeric user ID.
    response = await harness.http.post(f"{V3}/register", json={
        "username": "123456", "password": "password1", "auth": {"type": "m.login.dummy"}})
    assert (response.status_code, response.json()["errcode"]) == (400, "M_INVALID_USERNAME")


async def test_guests_join_only_rooms_that_allow_them_and_leave_when_that_stops(harness: Harness) -> None:
    alice = await harness.register("alice")
    guest = await register_guest(harness)
    closed = await harness.create_room(alice, preset="public_chat")
    response = await harness.http.post(f"{V3}/rooms/{closed}/join", headers=guest.headers)
    assert (response.status_code, response.json()["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN")
    response = await harness.http.post(f"{V3}/join/{closed}", headers=guest.headers)
    assert (response.status_code, response.json()["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN")
    assert await membership_of(harness, guest, closed, alice) is None

    open_room = await harness.create_room(alice, preset="public_chat", initial_state=[
        {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "can_join"}}])
    response = await harness.http.post(f"{V3}/join/{open_room}", headers=guest.headers)
    assert response.status_code == 200, response.text
    response = await harness.send(guest, open_room, {"msgtype": "m.text", "body": "hi"}, "g1")
    assert response.status_code == 200, response.text
    response = await harness.http.put(f"{V3}/rooms/{open_room}/state/org.example.guest/{quote(guest.user_id)}",
                                      json={}, headers=guest.headers)
    # Open to guests, refused by the room's power levels like anyone's.
    assert (response.status_code, response.json()["errcode"]) == (403, "M_FORBIDDEN")
    assert await membership_of(harness, guest, open_room, alice) == "join"

    # Alice closes the room to guests: the guest is made to leave.
    response = await harness.http.put(f"{V3}/rooms/{open_room}/state/m.room.guest_access",
                                      json={"guest_access": "forbidden"}, headers=alice.headers)
    assert response.status_code == 200, response.text
    assert await membership_of(harness, guest, open_room, alice) == "leave"
    assert await membership_of(harness, alice, open_room, alice) == "join"
    response = await harness.http.post(f"{V3}/rooms/{open_room}/join", headers=guest.headers)
    assert (response.status_code, response.json()["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN")


async def test_a_guest_upgrades_to_a_full_account_and_keeps_the_user_id(harness: Harness) -> None:
    alice = await harness.register("alice")
    guest = await register_guest(harness)
    localpart = guest.user_id[1:].split(":")[0]
    room = await harness.create_room(alice, preset="public_chat", initial_state=[
        {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "can_join"}}])
    assert (await harness.http.post(f"{V3}/rooms/{room}/join", headers=guest.headers)).status_code == 200

    def upgrade(body: dict[str, str]) -> dict[str, object]:
        return {"password": "a-new-password", "auth": {"type": "m.login.dummy"}, **body}

    for body, status, errcode in [({"guest_access_token": "nonsense"}, 403, "M_FORBIDDEN"),
                                  ({"guest_access_token": alice.access_token}, 403, "M_FORBIDDEN"),
                                  ({"guest_access_token": guest.access_token, "username": "someoneelse"},
                                   400, "M_INVALID_PARAM")]:
        response = await harness.http.post(f"{V3}/register", json=upgrade(body))
        assert (response.status_code, response.json()["errcode"]) == (status, errcode), body
    response = await harness.http.post(f"{V3}/register", json=upgrade(
        {"guest_access_token": guest.access_token, "username": localpart}))
    assert response.status_code == 200, response.text
    assert response.json()["user_id"] == guest.user_id
    upgraded = User(guest.user_id, response.json()["device_id"], response.json()["access_token"])

    for user in (upgraded, guest):  # the guest's own token now belongs to a full account too
        whoami = await harness.http.get(f"{V3}/account/whoami", headers=user.headers)
        assert whoami.json()["is_guest"] is False
    response = await harness.http.post(f"{V3}/createRoom", json={}, headers=upgraded.headers)
    assert response.status_code == 200, response.text
    response = await harness.http.post(f"{V3}/login", json={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart},
        "password": "a-new-password"})
    assert response.status_code == 200, response.text
    # Not a guest any more: closing the room to guests leaves them in it.
    response = await harness.http.put(f"{V3}/rooms/{room}/state/m.room.guest_access",
                                      json={"guest_access": "forbidden"}, headers=alice.headers)
    assert response.status_code == 200, response.text
    assert await membership_of(harness, upgraded, room, alice) == "join"
    # And upgrading again is refused.
    response = await harness.http.post(f"{V3}/register", json=upgrade({"guest_access_token": guest.access_token}))
    assert (response.status_code, response.json()["errcode"]) == (403, "M_FORBIDDEN")
