"""Registration, login, logout and whoami through the real HTTP routes."""

from __future__ import annotations

import pytest

from tests.component.clientapi.conftest import SERVER_NAME, Harness, HarnessFactory

V3 = "/_matrix/client/v3"


async def test_versions_and_well_known(harness: Harness) -> None:
    response = await harness.http.get("/_matrix/client/versions")
    assert response.status_code == 200
    versions = response.json()["versions"]
    assert "v1.1" in versions and "v1.12" in versions
    response = await harness.http.get("/.well-known/matrix/client")
    assert response.json() == {"m.homeserver": {"base_url": f"https://{SERVER_NAME}/"}}


async def test_register_two_steps(harness: Harness) -> None:
    body = {"username": "Alice", "password": "pw123456"}
    first = await harness.http.post(f"{V3}/register", json=body)
    assert first.status_code == 401
    challenge = first.json()
    assert challenge["flows"] == [{"stages": ["m.login.dummy"]}]
    assert challenge["params"] == {}
    session = challenge["session"]
    second = await harness.http.post(f"{V3}/register", json={
        **body, "auth": {"type": "m.login.dummy", "session": session},
        "device_id": "MYPHONE", "initial_device_display_name": "Phone"})
    assert second.status_code == 200, second.text
    registered = second.json()
    assert registered["user_id"] == f"@alice:{SERVER_NAME}"  # lowercased
    assert registered["device_id"] == "MYPHONE"
    whoami = await harness.http.get(f"{V3}/account/whoami",
                                    headers={"Authorization": f"Bearer {registered['access_token']}"})
    assert whoami.json() == {"user_id": f"@alice:{SERVER_NAME}", "device_id": "MYPHONE", "is_guest": False}


async def test_register_single_step_dummy_without_session(harness: Harness) -> None:
    user = await harness.register("bob")
    assert user.user_id == f"@bob:{SERVER_NAME}"
    assert len(user.access_token) >= 40


async def test_register_r0_prefix(harness: Harness) -> None:
    response = await harness.http.post("/_matrix/client/r0/register", json={
        "username": "oldclient", "password": "pw", "auth": {"type": "m.login.dummy"}})
    assert response.status_code == 200, response.text


async def test_register_forged_session_is_refused(harness: Harness) -> None:
    response = await harness.http.post(f"{V3}/register", json={
        "username": "carl", "password": "pw", "auth": {"type": "m.login.dummy", "session": "1.abc.def"}})
    # An unknown session gets the flows again, with a new session.
    assert (response.status_code, response.json()["errcode"]) == (401, "M_UNKNOWN")
    assert response.json()["flows"] == [{"stages": ["m.login.dummy"]}]
    assert response.json()["session"] != "1.abc.def"


async def test_register_unknown_stage_is_a_401_with_flows(harness: Harness) -> None:
    response = await harness.http.post(f"{V3}/register", json={
        "username": "dora", "password": "pw", "auth": {"type": "m.login.recaptcha"}})
    assert response.status_code == 401
    assert response.json()["flows"] == [{"stages": ["m.login.dummy"]}]


async def test_register_inhibit_login(harness: Harness) -> None:
    response = await harness.http.post(f"{V3}/register", json={
        "username": "erin", "password": "pw", "auth": {"type": "m.login.dummy"}, "inhibit_login": True})
    assert response.status_code == 200
    assert response.json() == {"user_id": f"@erin:{SERVER_NAME}"}


async def test_register_without_username_picks_one(harness: Harness) -> None:
    response = await harness.http.post(f"{V3}/register", json={
        "password": "pw", "auth": {"type": "m.login.dummy"}})
    assert response.status_code == 200
    assert response.json()["user_id"].endswith(f":{SERVER_NAME}")


async def test_register_taken_and_invalid_names(harness: Harness) -> None:
    await harness.register("frank")
    response = await harness.http.post(f"{V3}/register", json={
        "username": "frank", "password": "pw", "auth": {"type": "m.login.dummy"}})
    assert (response.status_code, response.json()["errcode"]) == (400, "M_USER_IN_USE")
    # The name is checked before the auth stage.
    response = await harness.http.post(f"{V3}/register", json={"username": "frank", "password": "pw"})
    assert (response.status_code, response.json()["errcode"]) == (400, "M_USER_IN_USE")
    for bad in ["fr ank", "_bridge", "émile", "server"]:
        response = await harness.http.post(f"{V3}/register", json={
            "username": bad, "password": "pw", "auth": {"type": "m.login.dummy"}})
        assert (response.status_code, response.json()["errcode"]) == (400, "M_INVALID_USERNAME"), bad


async def test_register_guest_refused_when_disabled(harness: Harness) -> None:
    # Guests are allowed by default (tests/component/clientapi/test_clientapi_guests.py).
    harness.clientapi.services.config.registration.allow_guests = False
    response = await harness.http.post(f"{V3}/register?kind=guest", json={})
    assert response.status_code == 403
    assert response.json()["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"


async def test_register_closed(make_harness: HarnessFactory) -> None:
    harness = await make_harness(registration_open=False)
    response = await harness.http.post(f"{V3}/register", json={
        "username": "gina", "password": "pw", "auth": {"type": "m.login.dummy"}})
    assert (response.status_code, response.json()["errcode"]) == (403, "M_FORBIDDEN")


@pytest.mark.parametrize("body, errcode", [
    ({"username": 5, "password": "pw", "auth": {"type": "m.login.dummy"}}, "M_BAD_JSON"),
    ({"username": "h", "password": ["pw"], "auth": {"type": "m.login.dummy"}}, "M_BAD_JSON"),
    ({"username": "h", "password": "pw", "auth": "dummy"}, "M_BAD_JSON"),
    ({"username": "h", "password": "pw", "inhibit_login": "yes"}, "M_BAD_JSON"),
    ({"username": "h", "password": "x" * 513, "auth": {"type": "m.login.dummy"}}, "M_INVALID_PARAM"),
    ({"username": "h", "password": "pw", "device_id": 7, "auth": {"type": "m.login.dummy"}}, "M_BAD_JSON"),
    ({"username": "h", "password": "pw", "initial_device_display_name": "n" * 101,
      "auth": {"type": "m.login.dummy"}}, "M_INVALID_PARAM"),
])
async def test_register_bad_fields(harness: Harness, body: dict[str, object], errcode: str) -> None:
    response = await harness.http.post(f"{V3}/register", json=body)
    assert (response.status_code, response.json()["errcode"]) == (400, errcode)


async def test_register_not_json(harness: Harness) -> None:
    for raw in [b"{not json", b"", b"[1, 2]"]:
        response = await harness.http.post(f"{V3}/register", content=raw)
        assert response.status_code == 400
        assert response.json()["errcode"] in ("M_NOT_JSON", "M_BAD_JSON")
    response = await harness.http.post(f"{V3}/register", content=b"{oops")
    assert response.json()["errcode"] == "M_NOT_JSON"


async def test_register_available(harness: Harness) -> None:
    response = await harness.http.get(f"{V3}/register/available", params={"username": "ivan"})
    assert response.json() == {"available": True}
    await harness.register("ivan")
    response = await harness.http.get(f"{V3}/register/available", params={"username": "IVAN"})
    assert (response.status_code, response.json()["errcode"]) == (400, "M_USER_IN_USE")
    response = await harness.http.get(f"{V3}/register/available", params={"username": "_ivan"})
    assert (response.status_code, response.json()["errcode"]) == (400, "M_INVALID_USERNAME")
    response = await harness.http.get(f"{V3}/register/available")
    assert (response.status_code, response.json()["errcode"]) == (400, "M_MISSING_PARAM")


async def test_login_flows(harness: Harness) -> None:
    response = await harness.http.get(f"{V3}/login")
    assert response.json() == {"flows": [{"type": "m.login.password"},
                                         {"type": "m.login.token", "get_login_token": True}]}


@pytest.mark.parametrize("who", [
    {"identifier": {"type": "m.id.user", "user": "judy"}},
    {"identifier": {"type": "m.id.user", "user": f"@judy:{SERVER_NAME}"}},
    {"identifier": {"type": "m.id.user", "user": "JUDY"}},
    {"user": "judy"},
    {"user": f"@judy:{SERVER_NAME}"},
])
async def test_login_password(harness: Harness, who: dict[str, object]) -> None:
    registered = await harness.register("judy", "s3cret!")
    response = await harness.http.post(f"{V3}/login", json={
        "type": "m.login.password", "password": "s3cret!", **who, "initial_device_display_name": "Laptop"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user_id"] == registered.user_id
    assert body["device_id"] != registered.device_id
    assert body["access_token"] != registered.access_token
    assert body["home_server"] == SERVER_NAME
    assert body["well_known"]["m.homeserver"]["base_url"]
    whoami = await harness.http.get(f"{V3}/account/whoami",
                                    headers={"Authorization": f"Bearer {body['access_token']}"})
    assert whoami.json()["device_id"] == body["device_id"]


async def test_login_with_device_id_reuses_device(harness: Harness) -> None:
    registered = await harness.register("kate", "pw")
    response = await harness.http.post(f"{V3}/login", json={
        "type": "m.login.password", "user": "kate", "password": "pw", "device_id": registered.device_id})
    assert response.json()["device_id"] == registered.device_id
    # The device's old token no longer works.
    old = await harness.http.get(f"{V3}/account/whoami", headers=registered.headers)
    assert old.status_code == 401


async def test_login_failures(harness: Harness) -> None:
    await harness.register("liam", "right")
    cases: list[tuple[dict[str, object], int, str]] = [
        ({"type": "m.login.password", "user": "liam", "password": "wrong"}, 403, "M_FORBIDDEN"),
        ({"type": "m.login.password", "user": "nobody", "password": "right"}, 403, "M_FORBIDDEN"),
        ({"type": "m.login.password", "user": "@liam:other.server", "password": "right"}, 403, "M_FORBIDDEN"),
        # The spec: an invalid login token is 403 M_FORBIDDEN.
        ({"type": "m.login.token", "token": "x"}, 403, "M_FORBIDDEN"),
        ({"type": "m.login.token"}, 400, "M_MISSING_PARAM"),
        ({"type": "org.example.unknown", "user": "liam", "password": "right"}, 400, "M_UNKNOWN"),
        ({"type": "m.login.password", "identifier": {"type": "m.id.phone", "country": "GB", "phone": "1"},
          "password": "right"}, 400, "M_UNKNOWN"),
        ({"user": "liam", "password": "right"}, 400, "M_MISSING_PARAM"),
        ({"type": "m.login.password", "user": "liam"}, 400, "M_MISSING_PARAM"),
        ({"type": "m.login.password", "password": "right"}, 400, "M_MISSING_PARAM"),
        ({"type": "m.login.password", "user": "liam", "password": 5}, 400, "M_BAD_JSON"),
        ({"type": "m.login.password", "identifier": "liam", "password": "right"}, 400, "M_BAD_JSON"),
        ({"type": "m.login.password", "user": "liam", "password": "right", "device_id": "D" * 256}, 400,
         "M_INVALID_PARAM"),
        ({"type": "m.login.password", "user": "liam", "password": "right",
          "initial_device_display_name": "n" * 101}, 400, "M_INVALID_PARAM"),
    ]
    for body, status, errcode in cases:
        response = await harness.http.post(f"{V3}/login", json=body)
        assert (response.status_code, response.json()["errcode"]) == (status, errcode), body


async def test_logout_and_logout_all(harness: Harness) -> None:
    first = await harness.register("mia", "pw")
    logins = []
    for _ in range(2):
        response = await harness.http.post(f"{V3}/login", json={
            "type": "m.login.password", "user": "mia", "password": "pw"})
        logins.append({"Authorization": f"Bearer {response.json()['access_token']}"})
    response = await harness.http.post(f"{V3}/logout", headers=first.headers)
    assert response.status_code == 200 and response.json() == {}
    assert (await harness.http.get(f"{V3}/account/whoami", headers=first.headers)).status_code == 401
    assert (await harness.http.get(f"{V3}/account/whoami", headers=logins[0])).status_code == 200
    response = await harness.http.post(f"{V3}/logout/all", headers=logins[0])
    assert response.status_code == 200
    for headers in logins:
        assert (await harness.http.get(f"{V3}/account/whoami", headers=headers)).status_code == 401


async def test_tokens(harness: Harness) -> None:
    response = await harness.http.get(f"{V3}/account/whoami", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.json()["errcode"] == "M_UNKNOWN_TOKEN"
    assert response.json()["soft_logout"] is False
    response = await harness.http.get(f"{V3}/account/whoami")
    assert (response.status_code, response.json()["errcode"]) == (401, "M_MISSING_TOKEN")
    user = await harness.register("nina")
    # The query parameter still works, as the spec allows.
    response = await harness.http.get(f"{V3}/account/whoami", params={"access_token": user.access_token})
    assert response.json()["user_id"] == user.user_id


async def test_well_known_uses_public_baseurl(make_harness: HarnessFactory) -> None:
    harness = await make_harness()
    harness.clientapi.services.config.public_baseurl = "https://matrix.example.org/"
    response = await harness.http.get("/.well-known/matrix/client")
    assert response.json() == {"m.homeserver": {"base_url": "https://matrix.example.org/"}}
