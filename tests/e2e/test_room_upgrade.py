"""A room upgrade followed by a member, in both process modes: the upgrader
upgrades to room version 12, the other member sees the tombstone through
/sync, follows replacement_room, finds the predecessor and the copied state
there, talks; then leaves and forgets the old room, which leaves /sync."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.e2e.harness import RunningHomeserver

pytestmark = pytest.mark.e2e

V3 = "/_matrix/client/v3"


class Client:
    def __init__(self, http: httpx.AsyncClient, user_id: str, token: str) -> None:
        self.http = http
        self.user_id = user_id
        self.headers = {"Authorization": f"Bearer {token}"}
        self.since: str | None = None

    async def sync_until(self, found: Callable[[dict[str, Any]], Any]) -> Any:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            params: dict[str, Any] = {"timeout": 5000}
            if self.since is not None:
                params["since"] = self.since
            response = await self.http.get(f"{V3}/sync", params=params, headers=self.headers)
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            self.since = body["next_batch"]
            result = found(body)
            if result:
                return result
        raise AssertionError("not seen through /sync in time")

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.post(f"{V3}{path}", json=body, headers=self.headers)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


async def register(http: httpx.AsyncClient, prefix: str) -> Client:
    response = await http.post(f"{V3}/register", json={
        "username": f"{prefix}{uuid.uuid4().hex[:6]}", "password": "a-long-password",
        "auth": {"type": "m.login.dummy"}})
    assert response.status_code == 200, response.text
    body = response.json()
    return Client(http, body["user_id"], body["access_token"])


def timeline_event(room_id: str, type: str) -> Callable[[dict[str, Any]], Any]:
    def found(body: dict[str, Any]) -> Any:
        room = body["rooms"]["join"].get(room_id, {})
        for event in room.get("timeline", {}).get("events", []):
            if event["type"] == type:
                return event
        return None
    return found


async def test_upgrade_and_follow_the_tombstone(homeserver: RunningHomeserver) -> None:
    async with httpx.AsyncClient(base_url=homeserver.base_url, timeout=30) as http:
        alice = await register(http, "alice")
        bob = await register(http, "bob")
        old_room = (await alice.post("/createRoom", {"preset": "public_chat", "name": "Before the upgrade",
                                                      "room_version": "10"}))["room_id"]
        await bob.post(f"/join/{old_room}", {})
        await bob.sync_until(lambda body: old_room in body["rooms"]["join"])

        refused = await http.post(f"{V3}/rooms/{old_room}/upgrade", json={"new_version": "12"},
                                  headers=bob.headers)
        assert refused.status_code == 403 and refused.json()["errcode"] == "M_FORBIDDEN"
        new_room = (await alice.post(f"/rooms/{old_room}/upgrade", {"new_version": "12"}))["replacement_room"]

        tombstone = await bob.sync_until(timeline_event(old_room, "m.room.tombstone"))
        assert tombstone["content"]["replacement_room"] == new_room
        assert tombstone["sender"] == alice.user_id
        await bob.post(f"/join/{new_room}", {})
        create = await http.get(f"{V3}/rooms/{new_room}/state/m.room.create", headers=bob.headers)
        assert create.status_code == 200, create.text
        assert create.json()["predecessor"]["room_id"] == old_room
        assert create.json()["room_version"] == "12"
        name = await http.get(f"{V3}/rooms/{new_room}/state/m.room.name", headers=bob.headers)
        assert name.json() == {"name": "Before the upgrade"}

        sent = await http.put(f"{V3}/rooms/{new_room}/send/m.room.message/{uuid.uuid4().hex}",
                              json={"msgtype": "m.text", "body": "after the upgrade"}, headers=alice.headers)
        assert sent.status_code == 200, sent.text
        message = await bob.sync_until(timeline_event(new_room, "m.room.message"))
        assert message["content"]["body"] == "after the upgrade"
        # The old room no longer lets bob speak.
        late = await http.put(f"{V3}/rooms/{old_room}/send/m.room.message/{uuid.uuid4().hex}",
                              json={"msgtype": "m.text", "body": "too late"}, headers=bob.headers)
        assert late.status_code == 403

        joined = await http.post(f"{V3}/rooms/{old_room}/forget", json={}, headers=bob.headers)
        assert joined.status_code == 400 and joined.json()["errcode"] == "M_UNKNOWN"
        await bob.post(f"/rooms/{old_room}/leave", {})
        await bob.sync_until(lambda body: old_room in body["rooms"]["leave"])
        await bob.post(f"/rooms/{old_room}/forget", {})
        everything = await http.get(f"{V3}/sync", headers=bob.headers, params={
            "filter": '{"room": {"include_leave": true}}'})
        assert everything.status_code == 200
        assert old_room not in everything.json()["rooms"]["leave"]
        assert old_room not in everything.json()["rooms"]["join"]
        assert new_room in everything.json()["rooms"]["join"]
