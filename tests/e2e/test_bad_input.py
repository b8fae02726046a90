"""Bad input against the running server gets the spec's error JSON, and the
room keeps working afterwards."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.e2e.harness import RunningHomeserver

pytestmark = pytest.mark.e2e


async def test_bad_requests_get_spec_errors(homeserver: RunningHomeserver) -> None:
    async with httpx.AsyncClient(base_url=homeserver.base_url, timeout=30) as http:
        name = f"carol{uuid.uuid4().hex[:6]}"
        registered = await http.post("/_matrix/client/v3/register", json={
            "username": name, "password": "a-long-password", "auth": {"type": "m.login.dummy"}})
        assert registered.status_code == 200, registered.text
        auth = {"Authorization": f"Bearer {registered.json()['access_token']}"}
        created = await http.post("/_matrix/client/v3/createRoom", json={}, headers=auth)
        assert created.status_code == 200, created.text
        room_id = created.json()["room_id"]

        not_json = await http.post("/_matrix/client/v3/createRoom", content=b"{not json", headers=auth)
        assert (not_json.status_code, not_json.json()["errcode"]) == (400, "M_NOT_JSON")

        too_large = await http.put(
            f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/big",
            json={"msgtype": "m.text", "body": "x" * 70000}, headers=auth)
        assert (too_large.status_code, too_large.json()["errcode"]) == (413, "M_TOO_LARGE")

        unknown_token = await http.get("/_matrix/client/v3/account/whoami",
                                       headers={"Authorization": "Bearer not-a-token"})
        assert (unknown_token.status_code, unknown_token.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
        sync_unknown_token = await http.get("/_matrix/client/v3/sync",
                                            headers={"Authorization": "Bearer not-a-token"})
        assert sync_unknown_token.status_code == 401
        assert sync_unknown_token.json()["errcode"] == "M_UNKNOWN_TOKEN"

        unknown_path = await http.get("/_matrix/client/v3/no/such/endpoint", headers=auth)
        assert (unknown_path.status_code, unknown_path.json()["errcode"]) == (404, "M_UNRECOGNIZED")

        other = await http.post("/_matrix/client/v3/register", json={
            "username": f"dave{uuid.uuid4().hex[:6]}", "password": "a-long-password",
            "auth": {"type": "m.login.dummy"}})
        other_auth = {"Authorization": f"Bearer {other.json()['access_token']}"}
        outsider = await http.put(f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t1",
                                  json={"msgtype": "m.text", "body": "let me in"}, headers=other_auth)
        assert (outsider.status_code, outsider.json()["errcode"]) == (403, "M_FORBIDDEN")

        # None of that changed the room: the creator can still send.
        ok = await http.put(f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t2",
                            json={"msgtype": "m.text", "body": "still here"}, headers=auth)
        assert ok.status_code == 200, ok.text
