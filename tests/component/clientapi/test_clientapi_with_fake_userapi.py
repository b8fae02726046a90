"""The fake user API (tests/fakes/userapi.py) satisfies the interface and
serves the client API's routes, so other fronts can test with it."""

from __future__ import annotations

from pathlib import Path

import httpx

from clientapi.component import build, open_clientapi_database
from common.http import make_app, serve_app
from matrixlib.signing import generate_signing_key
from tests.component.clientapi.conftest import SERVER_NAME, make_config
from tests.fakes.roomserver import FakeRoomserver
from tests.fakes.userapi import FakeUserAPI
from userapi.api import UserAPI


async def test_routes_with_fake_userapi(tmp_path: Path) -> None:
    userapi = FakeUserAPI(SERVER_NAME)
    typed: UserAPI = userapi
    config = make_config(tmp_path)
    database = await open_clientapi_database(config)
    clientapi = build(config, database, None, FakeRoomserver(), typed, generate_signing_key("k"))
    serving = await serve_app(make_app("clientapi_fake_userapi", [clientapi.blueprint]), "127.0.0.1:0")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{serving.port}") as http:
            user_id, token = userapi.add_user("zed")
            headers = {"Authorization": f"Bearer {token}"}
            whoami = await http.get("/_matrix/client/v3/account/whoami", headers=headers)
            assert whoami.json()["user_id"] == user_id
            created = await http.post("/_matrix/client/v3/createRoom", json={}, headers=headers)
            assert created.status_code == 200
            registered = await http.post("/_matrix/client/v3/register", json={
                "username": "yan", "password": "pw", "auth": {"type": "m.login.dummy"}})
            assert registered.status_code == 200
            login = await http.post("/_matrix/client/v3/login", json={
                "type": "m.login.password", "user": "yan", "password": "pw"})
            assert login.status_code == 200
            wrong = await http.post("/_matrix/client/v3/login", json={
                "type": "m.login.password", "user": "yan", "password": "no"})
            assert wrong.status_code == 403
            logout = await http.post("/_matrix/client/v3/logout", headers=headers)
            assert logout.status_code == 200
            assert (await http.get("/_matrix/client/v3/account/whoami", headers=headers)).status_code == 401
    finally:
        await serving.stop()
        await database.close()
