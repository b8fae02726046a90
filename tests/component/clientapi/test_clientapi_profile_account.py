"""Profiles, password changes and deactivation through the HTTP routes."""

from __future__ import annotations

from typing import Any

from tests.component.clientapi.conftest import SERVER_NAME, Harness, User
from tests.fakes.roomserver import FakeRoomserver

V3 = "/_matrix/client/v3"


def member_content(harness: Harness, room_id: str, user_id: str) -> dict[str, Any]:
    rs = harness.roomserver
    assert isinstance(rs, FakeRoomserver)
    room = rs.rooms[room_id]
    return room.events[room.state[("m.room.member", user_id)]].content


async def test_profile_get_and_put(harness: Harness) -> None:
    alice = await harness.register("alice")
    response = await harness.http.get(f"{V3}/profile/{alice.user_id}")
    assert response.json() == {"displayname": "alice"}
    room_id = await harness.create_room(alice, preset="public_chat")
    assert member_content(harness, room_id, alice.user_id) == {"membership": "join", "displayname": "alice"}
    response = await harness.http.put(f"{V3}/profile/{alice.user_id}/displayname",
                                      json={"displayname": "Alice Liddell"}, headers=alice.headers)
    assert response.status_code == 200 and response.json() == {}
    response = await harness.http.put(f"{V3}/profile/{alice.user_id}/avatar_url",
                                      json={"avatar_url": "mxc://example.org/abc"}, headers=alice.headers)
    assert response.status_code == 200
    response = await harness.http.get(f"{V3}/profile/{alice.user_id}")
    assert response.json() == {"displayname": "Alice Liddell", "avatar_url": "mxc://example.org/abc"}
    response = await harness.http.get(f"{V3}/profile/{alice.user_id}/displayname")
    assert response.json() == {"displayname": "Alice Liddell"}
    response = await harness.http.get(f"{V3}/profile/{alice.user_id}/avatar_url")
    assert response.json() == {"avatar_url": "mxc://example.org/abc"}
    # The rooms see the change.
    assert member_content(harness, room_id, alice.user_id) == {
        "membership": "join", "displayname": "Alice Liddell", "avatar_url": "mxc://example.org/abc"}
    # Joins and invites carry the profile.
    bob = await harness.register("bob")
    await harness.http.post(f"{V3}/rooms/{room_id}/join", json={}, headers=bob.headers)
    assert member_content(harness, room_id, bob.user_id) == {"membership": "join", "displayname": "bob"}
    carol = await harness.register("carol")
    await harness.http.post(f"{V3}/rooms/{room_id}/invite", json={"user_id": carol.user_id}, headers=alice.headers)
    assert member_content(harness, room_id, carol.user_id) == {"membership": "invite", "displayname": "carol"}


async def test_profile_refusals(harness: Harness) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    cases: list[tuple[str, str, dict[str, Any] | bytes | None, User | None, int, str]] = [
        ("GET", f"/profile/@ghost:{SERVER_NAME}", None, None, 404, "M_NOT_FOUND"),
        ("GET", "/profile/@someone:remote.example", None, None, 404, "M_NOT_FOUND"),
        ("PUT", f"/profile/{alice.user_id}/displayname", {"displayname": "x"}, bob, 403, "M_FORBIDDEN"),
        ("PUT", f"/profile/{alice.user_id}/displayname", {"displayname": "x"}, None, 401, "M_MISSING_TOKEN"),
        ("PUT", f"/profile/{alice.user_id}/displayname", {}, alice, 400, "M_MISSING_PARAM"),
        ("PUT", f"/profile/{alice.user_id}/displayname", {"displayname": 5}, alice, 400, "M_BAD_JSON"),
        ("PUT", f"/profile/{alice.user_id}/displayname", {"displayname": "x" * 257}, alice, 400, "M_INVALID_PARAM"),
        ("PUT", f"/profile/{alice.user_id}/avatar_url", b"nope", alice, 400, "M_NOT_JSON"),
        ("PUT", f"/profile/{alice.user_id}/nickname", {"nickname": "x"}, alice, 404, "M_UNRECOGNIZED"),
    ]
    for method, path, body, user, status, errcode in cases:
        kwargs: dict[str, Any] = {"headers": user.headers if user else {}}
        if isinstance(body, bytes):
            kwargs["content"] = body
        elif body is not None:
            kwargs["json"] = body
        response = await harness.http.request(method, V3 + path, **kwargs)
        assert (response.status_code, response.json()["errcode"]) == (status, errcode), (method, path, body)


async def _password_auth(user: str, password: str, session: str) -> dict[str, Any]:
    return {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
            "password": password, "session": session}


async def test_change_password(harness: Harness) -> None:
    alice = await harness.register("alice", "old password")
    other = await harness.http.post(f"{V3}/login", json={
        "type": "m.login.password", "user": "alice", "password": "old password"})
    other_headers = {"Authorization": f"Bearer {other.json()['access_token']}"}
    first = await harness.http.post(f"{V3}/account/password", json={"new_password": "new password"},
                                    headers=alice.headers)
    assert first.status_code == 401
    session = first.json()["session"]
    wrong = await harness.http.post(f"{V3}/account/password", headers=alice.headers, json={
        "new_password": "new password", "auth": await _password_auth("alice", "guess", session)})
    assert (wrong.status_code, wrong.json()["errcode"]) == (401, "M_FORBIDDEN")
    done = await harness.http.post(f"{V3}/account/password", headers=alice.headers, json={
        "new_password": "new password", "auth": await _password_auth("alice", "old password", session)})
    assert done.status_code == 200, done.text
    # The device that asked stays; the others are logged out.
    assert (await harness.http.get(f"{V3}/account/whoami", headers=alice.headers)).status_code == 200
    assert (await harness.http.get(f"{V3}/account/whoami", headers=other_headers)).status_code == 401
    old = await harness.http.post(f"{V3}/login", json={
        "type": "m.login.password", "user": "alice", "password": "old password"})
    assert old.status_code == 403
    new = await harness.http.post(f"{V3}/login", json={
        "type": "m.login.password", "user": "alice", "password": "new password"})
    assert new.status_code == 200
    # logout_devices false keeps them.
    new_headers = {"Authorization": f"Bearer {new.json()['access_token']}"}
    first = await harness.http.post(f"{V3}/account/password", json={"new_password": "third"}, headers=alice.headers)
    done = await harness.http.post(f"{V3}/account/password", headers=alice.headers, json={
        "new_password": "third", "logout_devices": False,
        "auth": await _password_auth("alice", "new password", first.json()["session"])})
    assert done.status_code == 200
    assert (await harness.http.get(f"{V3}/account/whoami", headers=new_headers)).status_code == 200
    missing = await harness.http.post(f"{V3}/account/password", json={}, headers=alice.headers)
    assert (missing.status_code, missing.json()["errcode"]) == (400, "M_MISSING_PARAM")


async def test_deactivate(harness: Harness) -> None:
    alice = await harness.register("alice", "pw")
    bob = await harness.register("bob", "pw")
    room_id = await harness.create_room(alice, preset="public_chat")
    await harness.http.post(f"{V3}/rooms/{room_id}/join", json={}, headers=bob.headers)
    invited_to = await harness.create_room(alice, invite=[bob.user_id])
    first = await harness.http.post(f"{V3}/account/deactivate", json={}, headers=bob.headers)
    assert first.status_code == 401
    done = await harness.http.post(f"{V3}/account/deactivate", headers=bob.headers, json={
        "auth": await _password_auth("bob", "pw", first.json()["session"])})
    assert done.status_code == 200, done.text
    assert done.json() == {"id_server_unbind_result": "no-support"}
    assert (await harness.http.get(f"{V3}/account/whoami", headers=bob.headers)).status_code == 401
    login = await harness.http.post(f"{V3}/login", json={"type": "m.login.password", "user": "bob", "password": "pw"})
    assert login.status_code == 403
    assert member_content(harness, room_id, bob.user_id)["membership"] == "leave"
    assert member_content(harness, invited_to, bob.user_id)["membership"] == "leave"
    again = await harness.http.post(f"{V3}/register", json={
        "username": "bob", "password": "pw", "auth": {"type": "m.login.dummy"}})
    assert (again.status_code, again.json()["errcode"]) == (400, "M_USER_IN_USE")
