"""Redactions, kicks and bans, capabilities and devices."""

from __future__ import annotations

import pytest

from tests.component.clientapi.conftest import Harness
from tests.fakes.roomserver import FakeRoomserver

V3 = "/_matrix/client/v3"


def fake(harness: Harness) -> FakeRoomserver:
    assert isinstance(harness.roomserver, FakeRoomserver)
    return harness.roomserver


@pytest.mark.parametrize("version", ["10", "11"])
async def test_redact(harness: Harness, version: str) -> None:
    alice = await harness.register("alice")
    room_id = await harness.create_room(alice, room_version=version)
    sent = (await harness.send(alice, room_id, {"msgtype": "m.text", "body": "oops"}, "t1")).json()["event_id"]
    path = f"{V3}/rooms/{room_id}/redact/{sent}/r1"
    first = await harness.http.put(path, json={"reason": "typo"}, headers=alice.headers)
    assert first.status_code == 200, first.text
    again = await harness.http.put(path, json={"reason": "typo"}, headers=alice.headers)
    assert again.json() == first.json()
    redaction = fake(harness).rooms[room_id].events[first.json()["event_id"]]
    assert redaction.type == "m.room.redaction" and redaction.redacts == sent
    assert redaction.content["reason"] == "typo"
    if version == "10":
        assert redaction.pdu["redacts"] == sent
    else:
        assert redaction.content["redacts"] == sent and "redacts" not in redaction.pdu
    assert fake(harness).inputs[-1].transaction_id.transaction_id == "r1"
    response = await harness.http.put(f"{V3}/rooms/{room_id}/redact/notanevent/r2", json={},
                                      headers=alice.headers)
    assert (response.status_code, response.json()["errcode"]) == (400, "M_INVALID_PARAM")


async def test_kick_ban_unban(harness: Harness) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    room_id = await harness.create_room(alice, preset="public_chat")

    async def membership(user_id: str) -> str:
        room = fake(harness).rooms[room_id]
        return room.events[room.state[("m.room.member", user_id)]].content["membership"]  # type: ignore[no-any-return]

    await harness.http.post(f"{V3}/rooms/{room_id}/join", json={}, headers=bob.headers)
    # Bob has no power to kick.
    response = await harness.http.post(f"{V3}/rooms/{room_id}/kick", json={"user_id": alice.user_id},
                                       headers=bob.headers)
    assert (response.status_code, response.json()["errcode"]) == (403, "M_FORBIDDEN")
    response = await harness.http.post(f"{V3}/rooms/{room_id}/kick", json={"user_id": bob.user_id, "reason": "r"},
                                       headers=alice.headers)
    assert response.status_code == 200, response.text
    assert await membership(bob.user_id) == "leave"
    # Unbanning someone who is not banned would kick them: refused.
    response = await harness.http.post(f"{V3}/rooms/{room_id}/unban", json={"user_id": bob.user_id},
                                       headers=alice.headers)
    assert response.status_code == 403
    response = await harness.http.post(f"{V3}/rooms/{room_id}/ban", json={"user_id": bob.user_id},
                                       headers=alice.headers)
    assert response.status_code == 200
    assert await membership(bob.user_id) == "ban"
    response = await harness.http.post(f"{V3}/rooms/{room_id}/join", json={}, headers=bob.headers)
    assert response.status_code == 403
    response = await harness.http.post(f"{V3}/rooms/{room_id}/unban", json={"user_id": bob.user_id},
                                       headers=alice.headers)
    assert response.status_code == 200
    assert await membership(bob.user_id) == "leave"
    response = await harness.http.post(f"{V3}/rooms/{room_id}/join", json={}, headers=bob.headers)
    assert response.status_code == 200
    response = await harness.http.post(f"{V3}/rooms/{room_id}/ban", json={}, headers=alice.headers)
    assert (response.status_code, response.json()["errcode"]) == (400, "M_MISSING_PARAM")


async def test_capabilities(harness: Harness) -> None:
    alice = await harness.register("alice")
    response = await harness.http.get(f"{V3}/capabilities", headers=alice.headers)
    versions = response.json()["capabilities"]["m.room_versions"]
    assert versions["default"] == "12"
    assert set(versions["available"]) == {str(n) for n in range(1, 13)}
    assert (await harness.http.get(f"{V3}/capabilities")).status_code == 401


async def test_devices(harness: Harness) -> None:
    alice = await harness.register("alice", "pw")
    login = await harness.http.post(f"{V3}/login", json={
        "type": "m.login.password", "user": "alice", "password": "pw", "initial_device_display_name": "Tablet"})
    second = login.json()["device_id"]
    response = await harness.http.get(f"{V3}/devices", headers=alice.headers)
    devices = {d["device_id"]: d for d in response.json()["devices"]}
    assert set(devices) == {alice.device_id, second}
    assert devices[second]["display_name"] == "Tablet"
    response = await harness.http.get(f"{V3}/devices/{second}", headers=alice.headers)
    assert response.json()["device_id"] == second
    response = await harness.http.get(f"{V3}/devices/NOPE", headers=alice.headers)
    assert (response.status_code, response.json()["errcode"]) == (404, "M_NOT_FOUND")


async def _login(harness: Harness, user: str, password: str) -> dict[str, str]:
    response = await harness.http.post(f"{V3}/login", json={
        "type": "m.login.password", "user": user, "password": password})
    assert response.status_code == 200, response.text
    body = response.json()
    return {"device_id": body["device_id"], "token": body["access_token"]}


async def test_delete_device_with_password_auth(harness: Harness) -> None:
    alice = await harness.register("alice", "pw")
    other = await _login(harness, "alice", "pw")
    path = f"{V3}/devices/{other['device_id']}"
    first = await harness.http.request("DELETE", path, headers=alice.headers)
    assert first.status_code == 401
    assert first.json()["flows"] == [{"stages": ["m.login.password"]}]
    session = first.json()["session"]
    wrong = await harness.http.request("DELETE", path, headers=alice.headers, json={"auth": {
        "type": "m.login.password", "session": session, "password": "nope",
        "identifier": {"type": "m.id.user", "user": "alice"}}})
    assert (wrong.status_code, wrong.json()["errcode"]) == (401, "M_FORBIDDEN")
    # The session is bound to this request: it cannot delete another device.
    elsewhere = await harness.http.request("DELETE", f"{V3}/devices/{alice.device_id}", headers=alice.headers,
                                           json={"auth": {"type": "m.login.password", "session": session,
                                                          "password": "pw", "user": "alice"}})
    assert (elsewhere.status_code, elsewhere.json()["errcode"]) == (401, "M_UNKNOWN")
    done = await harness.http.request("DELETE", path, headers=alice.headers, json={"auth": {
        "type": "m.login.password", "session": session, "password": "pw",
        "identifier": {"type": "m.id.user", "user": alice.user_id}}})
    assert done.status_code == 200, done.text
    gone = await harness.http.get(f"{V3}/account/whoami", headers={"Authorization": f"Bearer {other['token']}"})
    assert gone.status_code == 401
    assert (await harness.http.get(f"{V3}/account/whoami", headers=alice.headers)).status_code == 200
    missing = await harness.http.request("DELETE", f"{V3}/devices/NOPE", headers=alice.headers)
    assert missing.status_code == 404


async def test_delete_devices_in_bulk(harness: Harness) -> None:
    alice = await harness.register("alice", "pw")
    bob = await harness.register("bob", "pw2")
    logins = [await _login(harness, "alice", "pw") for _ in range(2)]
    ids = [login["device_id"] for login in logins]
    first = await harness.http.post(f"{V3}/delete_devices", json={"devices": ids}, headers=alice.headers)
    assert first.status_code == 401
    session = first.json()["session"]
    # Bob's password does not authorise Alice's deletion.
    as_bob = await harness.http.post(f"{V3}/delete_devices", headers=alice.headers, json={
        "devices": ids, "auth": {"type": "m.login.password", "session": session, "user": "bob",
                                 "password": "pw2"}})
    assert as_bob.status_code == 403
    done = await harness.http.post(f"{V3}/delete_devices", headers=alice.headers, json={
        "devices": ids, "auth": {"type": "m.login.password", "session": session, "user": "alice",
                                 "password": "pw"}})
    assert done.status_code == 200, done.text
    remaining = await harness.http.get(f"{V3}/devices", headers=alice.headers)
    assert [d["device_id"] for d in remaining.json()["devices"]] == [alice.device_id]
    assert (await harness.http.get(f"{V3}/account/whoami", headers=bob.headers)).status_code == 200
    response = await harness.http.post(f"{V3}/delete_devices", json={}, headers=alice.headers)
    assert (response.status_code, response.json()["errcode"]) == (400, "M_MISSING_PARAM")
    response = await harness.http.post(f"{V3}/delete_devices", json={"devices": "x"}, headers=alice.headers)
    assert (response.status_code, response.json()["errcode"]) == (400, "M_BAD_JSON")


async def test_knock(harness: Harness) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    knockable = await harness.create_room(alice, room_version="10", initial_state=[
        {"type": "m.room.join_rules", "content": {"join_rule": "knock"}}])
    response = await harness.http.post(f"{V3}/knock/{knockable}", json={"reason": "let me in"},
                                       headers=bob.headers)
    assert response.json() == {"room_id": knockable}
    room = fake(harness).rooms[knockable]
    knock = room.events[room.state[("m.room.member", bob.user_id)]]
    assert knock.content == {"membership": "knock", "reason": "let me in", "displayname": "bob"}
    # An invite-only room refuses knocks.
    private = await harness.create_room(alice, room_version="10")
    response = await harness.http.post(f"{V3}/knock/{private}", json={}, headers=bob.headers)
    assert (response.status_code, response.json()["errcode"]) == (403, "M_FORBIDDEN")
