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
