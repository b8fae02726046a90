"""Interactive auth sessions, refresh tokens, soft logout, device renames,
password changes and the third-party identifier endpoints."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from clientapi.internal.uia import SESSION_TTL_SECONDS, SessionSigner
from tests.component.clientapi.conftest import Harness, User
from userapi.internal.userapi import UserAPIInternal

V3 = "/_matrix/client/v3"


async def login(harness: Harness, user: str, password: str, **extra: Any) -> dict[str, Any]:
    response = await harness.http.post(f"{V3}/login", json={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password,
        **extra})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def whoami(harness: Harness, token: str) -> tuple[int, dict[str, Any]]:
    response = await harness.http.get(f"{V3}/account/whoami", headers=bearer(token))
    return response.status_code, response.json()


def password_auth(session: str, password: str, user: str = "alice") -> dict[str, Any]:
    return {"type": "m.login.password", "session": session, "password": password,
            "identifier": {"type": "m.id.user", "user": user}}


async def test_expired_session_gets_the_flows_again(harness: Harness) -> None:
    now = [1_000_000.0]
    harness.clientapi.services.sessions = SessionSigner(harness.clientapi.services.config.macaroon_secret,
                                                        clock=lambda: now[0])
    alice = await harness.register("alice", "pw")
    other = await login(harness, "alice", "pw")
    path = f"{V3}/devices/{other['device_id']}"
    first = await harness.http.request("DELETE", path, headers=alice.headers)
    assert first.status_code == 401
    challenge = first.json()
    assert challenge["flows"] == [{"stages": ["m.login.password"]}]
    assert challenge["completed"] == [] and "errcode" not in challenge
    # A wrong password: 401, M_FORBIDDEN inside the UIA body, same session.
    wrong = await harness.http.request("DELETE", path, headers=alice.headers,
                                       json={"auth": password_auth(challenge["session"], "nope")})
    assert wrong.status_code == 401
    assert wrong.json()["errcode"] == "M_FORBIDDEN"
    assert wrong.json()["session"] == challenge["session"]
    assert wrong.json()["flows"] == [{"stages": ["m.login.password"]}]
    # Past the lifetime the session is unknown: the flows again with a new session.
    now[0] += SESSION_TTL_SECONDS + 1
    expired = await harness.http.request("DELETE", path, headers=alice.headers,
                                         json={"auth": password_auth(challenge["session"], "pw")})
    assert expired.status_code == 401
    assert expired.json()["errcode"] == "M_UNKNOWN"
    assert expired.json()["flows"] == [{"stages": ["m.login.password"]}]
    assert expired.json()["session"] != challenge["session"]
    assert (await whoami(harness, other["access_token"]))[0] == 200
    # The new session works, and only for this request (not for another method or path).
    fresh = expired.json()["session"]
    other_path = await harness.http.post(f"{V3}/delete_devices", headers=alice.headers, json={
        "devices": [other["device_id"]], "auth": password_auth(fresh, "pw")})
    assert (other_path.status_code, other_path.json()["errcode"]) == (401, "M_UNKNOWN")
    done = await harness.http.request("DELETE", path, headers=alice.headers,
                                      json={"auth": password_auth(fresh, "pw")})
    assert done.status_code == 200, done.text
    assert (await whoami(harness, other["access_token"]))[0] == 401


async def test_register_session_is_bound_to_registration(harness: Harness) -> None:
    alice = await harness.register("alice", "pw")
    first = await harness.http.request("DELETE", f"{V3}/devices/{alice.device_id}", headers=alice.headers)
    session = first.json()["session"]
    response = await harness.http.post(f"{V3}/register", json={
        "username": "bob", "password": "pw", "auth": {"type": "m.login.dummy", "session": session}})
    assert (response.status_code, response.json()["errcode"]) == (401, "M_UNKNOWN")
    start = await harness.http.post(f"{V3}/register", json={"username": "bob", "password": "pw"})
    assert start.status_code == 401 and start.json()["flows"] == [{"stages": ["m.login.dummy"]}]
    done = await harness.http.post(f"{V3}/register", json={
        "username": "bob", "password": "pw", "auth": {"type": "m.login.dummy", "session": start.json()["session"]}})
    assert done.status_code == 200, done.text


async def test_refresh_tokens_rotate_and_expire(harness: Harness) -> None:
    await harness.register("alice", "pw")
    plain = await login(harness, "alice", "pw")
    assert "refresh_token" not in plain and "expires_in_ms" not in plain
    first = await login(harness, "alice", "pw", refresh_token=True)
    assert first["expires_in_ms"] == 5 * 60 * 1000
    assert first["refresh_token"] and first["refresh_token"] != first["access_token"]
    assert (await whoami(harness, first["access_token"]))[0] == 200

    refreshed = await harness.http.post(f"{V3}/refresh", json={"refresh_token": first["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    second = refreshed.json()
    assert set(second) == {"access_token", "refresh_token", "expires_in_ms"}
    # The client lost the answer and repeats: the old refresh token still works,
    # and replaces what the first attempt gave.
    repeat = await harness.http.post(f"{V3}/refresh", json={"refresh_token": first["refresh_token"]})
    assert repeat.status_code == 200
    third = repeat.json()
    assert (await whoami(harness, second["access_token"]))[0] == 401
    assert (await whoami(harness, first["access_token"]))[0] == 200
    # Using the new access token revokes the old refresh token and the old access token.
    status, body = await whoami(harness, third["access_token"])
    assert status == 200 and body["device_id"] == first["device_id"]
    assert (await whoami(harness, first["access_token"]))[0] == 401
    reuse = await harness.http.post(f"{V3}/refresh", json={"refresh_token": first["refresh_token"]})
    assert (reuse.status_code, reuse.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert reuse.json().get("soft_logout", False) is False
    # Using the new refresh token also revokes its predecessor.
    fourth = (await harness.http.post(f"{V3}/refresh", json={"refresh_token": third["refresh_token"]})).json()
    again = await harness.http.post(f"{V3}/refresh", json={"refresh_token": third["refresh_token"]})
    assert again.status_code == 200  # not used yet: its successor has not been used
    fifth = again.json()
    assert (await harness.http.post(f"{V3}/refresh", json={"refresh_token": fifth["refresh_token"]})
            ).status_code == 200
    assert (await harness.http.post(f"{V3}/refresh", json={"refresh_token": third["refresh_token"]})
            ).status_code == 401
    assert (await whoami(harness, fourth["access_token"]))[0] == 401

    bad = await harness.http.post(f"{V3}/refresh", json={"refresh_token": "nonsense"})
    assert (bad.status_code, bad.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    missing = await harness.http.post(f"{V3}/refresh", json={})
    assert (missing.status_code, missing.json()["errcode"]) == (400, "M_MISSING_PARAM")


async def test_expired_access_token_is_a_soft_logout(harness: Harness) -> None:
    userapi = cast(UserAPIInternal, harness.clientapi.services.userapi)
    userapi.refreshable_token_lifetime_ms = 200
    registered = await harness.http.post(f"{V3}/register", json={
        "username": "alice", "password": "pw", "auth": {"type": "m.login.dummy"}, "refresh_token": True})
    body = registered.json()
    assert body["expires_in_ms"] == 200 and body["refresh_token"]
    assert (await whoami(harness, body["access_token"]))[0] == 200
    await asyncio.sleep(0.3)
    status, error = await whoami(harness, body["access_token"])
    assert (status, error["errcode"], error["soft_logout"]) == (401, "M_UNKNOWN_TOKEN", True)
    # A refresh brings the device back.
    userapi.refreshable_token_lifetime_ms = 60_000
    refreshed = (await harness.http.post(f"{V3}/refresh", json={"refresh_token": body["refresh_token"]})).json()
    status, me = await whoami(harness, refreshed["access_token"])
    assert status == 200 and me["device_id"] == body["device_id"]
    # A token of a deleted device is a hard logout.
    await harness.http.post(f"{V3}/logout", headers=bearer(refreshed["access_token"]))
    status, error = await whoami(harness, refreshed["access_token"])
    assert (status, error["soft_logout"]) == (401, False)


async def test_rename_device(harness: Harness) -> None:
    alice = await harness.register("alice", "pw")
    response = await harness.http.put(f"{V3}/devices/{alice.device_id}", headers=alice.headers,
                                      json={"display_name": "Laptop"})
    assert (response.status_code, response.json()) == (200, {})
    device = (await harness.http.get(f"{V3}/devices/{alice.device_id}", headers=alice.headers)).json()
    assert device["display_name"] == "Laptop"
    bob = await harness.register("bob", "pw")
    for target in ("NOPE", bob.device_id):
        missing = await harness.http.put(f"{V3}/devices/{target}", headers=alice.headers,
                                         json={"display_name": "x"})
        assert (missing.status_code, missing.json()["errcode"]) == (404, "M_NOT_FOUND")


async def _change_password(harness: Harness, user: User, new: str, old: str, **extra: Any) -> None:
    first = await harness.http.post(f"{V3}/account/password", headers=user.headers,
                                    json={"new_password": new, **extra})
    assert first.status_code == 401
    done = await harness.http.post(f"{V3}/account/password", headers=user.headers, json={
        "new_password": new, "auth": password_auth(first.json()["session"], old), **extra})
    assert done.status_code == 200, done.text


async def test_password_change_logs_out_other_devices_unless_asked_not_to(harness: Harness) -> None:
    alice = await harness.register("alice", "pw")
    other = await login(harness, "alice", "pw")
    await _change_password(harness, alice, "pw2", "pw", logout_devices=False)
    assert (await whoami(harness, other["access_token"]))[0] == 200
    await _change_password(harness, alice, "pw3", "pw2")
    assert (await whoami(harness, other["access_token"]))[0] == 401
    assert (await whoami(harness, alice.access_token))[0] == 200
    await login(harness, "alice", "pw3")
    # logout/all ends every session, this one too.
    assert (await harness.http.post(f"{V3}/logout/all", headers=alice.headers)).status_code == 200
    assert (await whoami(harness, alice.access_token))[0] == 401


async def test_third_party_identifiers_without_email_or_identity_server(harness: Harness) -> None:
    alice = await harness.register("alice", "pw")
    listed = await harness.http.get(f"{V3}/account/3pid", headers=alice.headers)
    assert listed.json() == {"threepids": []}
    email = {"client_secret": "s3cret", "email": "a@example.org", "send_attempt": 1}
    phone = {"client_secret": "s3cret", "country": "GB", "phone_number": "07700900001", "send_attempt": 1}
    for path, body, expected in (
            ("/account/3pid/email/requestToken", email, (400, "M_THREEPID_MEDIUM_NOT_SUPPORTED")),
            ("/account/3pid/msisdn/requestToken", phone, (400, "M_THREEPID_MEDIUM_NOT_SUPPORTED")),
            ("/register/email/requestToken", email, (403, "M_THREEPID_DENIED")),
            ("/register/msisdn/requestToken", phone, (403, "M_THREEPID_DENIED")),
            ("/account/password/email/requestToken", email, (403, "M_THREEPID_DENIED")),
            ("/account/password/msisdn/requestToken", phone, (403, "M_THREEPID_DENIED"))):
        response = await harness.http.post(V3 + path, json=body)
        assert (response.status_code, response.json()["errcode"]) == expected, path
        incomplete = await harness.http.post(V3 + path, json={"client_secret": "s3cret"})
        assert (incomplete.status_code, incomplete.json()["errcode"]) == (400, "M_MISSING_PARAM"), path
    bind = await harness.http.post(f"{V3}/account/3pid/bind", headers=alice.headers, json={
        "client_secret": "s", "id_server": "id.example.org", "id_access_token": "t", "sid": "1"})
    assert (bind.status_code, bind.json()["errcode"]) == (400, "M_SERVER_NOT_TRUSTED")
    for path in ("/account/3pid/unbind", "/account/3pid/delete"):
        response = await harness.http.post(V3 + path, headers=alice.headers,
                                           json={"medium": "email", "address": "a@example.org"})
        assert response.json() == {"id_server_unbind_result": "no-support"}
    add = await harness.http.post(f"{V3}/account/3pid/add", headers=alice.headers,
                                  json={"client_secret": "s", "sid": "1"})
    assert add.status_code == 401 and add.json()["flows"] == [{"stages": ["m.login.password"]}]
    added = await harness.http.post(f"{V3}/account/3pid/add", headers=alice.headers, json={
        "client_secret": "s", "sid": "1", "auth": password_auth(add.json()["session"], "pw")})
    assert (added.status_code, added.json()["errcode"]) == (400, "M_THREEPID_AUTH_FAILED")
    unauthenticated = await harness.http.get(f"{V3}/account/3pid")
    assert unauthenticated.status_code == 401


async def test_an_expired_token_may_still_log_out(harness: Harness) -> None:
    userapi = cast(UserAPIInternal, harness.clientapi.services.userapi)
    userapi.refreshable_token_lifetime_ms = 100
    await harness.register("alice", "pw")
    session = await login(harness, "alice", "pw", refresh_token=True)
    await asyncio.sleep(0.2)
    assert (await whoami(harness, session["access_token"]))[1]["soft_logout"] is True
    out = await harness.http.post(f"{V3}/logout", headers=bearer(session["access_token"]))
    assert out.status_code == 200, out.text
    # The device is gone: its refresh token with it.
    again = await harness.http.post(f"{V3}/refresh", json={"refresh_token": session["refresh_token"]})
    assert (again.status_code, again.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    status, error = await whoami(harness, session["access_token"])
    assert (status, error["soft_logout"]) == (401, False)
