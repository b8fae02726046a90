"""Two users see each other's typing, read receipts, presence and a
to-device message through /sync, in both process modes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.e2e.harness import RunningHomeserver

pytestmark = pytest.mark.e2e

V3 = "/_matrix/client/v3"


class Client:
    def __init__(self, http: httpx.AsyncClient, user_id: str, device_id: str, token: str) -> None:
        self.http = http
        self.user_id = user_id
        self.device_id = device_id
        self.headers = {"Authorization": f"Bearer {token}"}
        self.since: str | None = None

    async def sync(self, **params: Any) -> dict[str, Any]:
        if self.since is not None:
            params["since"] = self.since
        response = await self.http.get(f"{V3}/sync", params=params, headers=self.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        self.since = body["next_batch"]
        return body

    async def sync_until(self, found: Callable[[dict[str, Any]], Any], **params: Any) -> Any:
        """Long-polls until ``found(body)`` answers something truthy; answers it."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            body = await self.sync(timeout=5000, **params)
            result = found(body)
            if result:
                return result
        raise AssertionError("not seen through /sync in time")


async def register(http: httpx.AsyncClient, prefix: str) -> Client:
    response = await http.post(f"{V3}/register", json={
        "username": f"{prefix}{uuid.uuid4().hex[:6]}", "password": "a-long-password",
        "auth": {"type": "m.login.dummy"}})
    assert response.status_code == 200, response.text
    body = response.json()
    return Client(http, body["user_id"], body["device_id"], body["access_token"])


def room_ephemeral(room_id: str, event_type: str) -> Callable[[dict[str, Any]], list[dict[str, Any]]]:
    def found(body: dict[str, Any]) -> list[dict[str, Any]]:
        room = body["rooms"]["join"].get(room_id, {})
        return [e for e in room.get("ephemeral", {}).get("events", []) if e["type"] == event_type]
    return found


async def test_typing_receipts_presence_and_to_device(homeserver: RunningHomeserver) -> None:
    async with httpx.AsyncClient(base_url=homeserver.base_url, timeout=60) as http:
        alice = await register(http, "alice")
        bob = await register(http, "bob")
        created = await http.post(f"{V3}/createRoom", json={"preset": "public_chat"}, headers=alice.headers)
        assert created.status_code == 200, created.text
        room_id = created.json()["room_id"]
        room = quote(room_id, safe="")
        joined = await http.post(f"{V3}/join/{room}", json={}, headers=bob.headers)
        assert joined.status_code == 200, joined.text
        sent = await http.put(f"{V3}/rooms/{room}/send/m.room.message/t1",
                              json={"msgtype": "m.text", "body": "hello"}, headers=alice.headers)
        assert sent.status_code == 200, sent.text
        event_id = sent.json()["event_id"]
        await alice.sync()
        await bob.sync_until(lambda body: room_id in body["rooms"]["join"])

        # Typing: Alice types, Bob sees it; she stops, he sees that too.
        typing_path = f"{V3}/rooms/{room}/typing/{quote(alice.user_id, safe='')}"
        response = await http.put(typing_path, json={"typing": True, "timeout": 30000}, headers=alice.headers)
        assert response.status_code == 200, response.text
        await bob.sync_until(lambda body: any(alice.user_id in e["content"]["user_ids"]
                                              for e in room_ephemeral(room_id, "m.typing")(body)))
        response = await http.put(typing_path, json={"typing": False}, headers=alice.headers)
        assert response.status_code == 200
        await bob.sync_until(lambda body: any(e["content"]["user_ids"] == []
                                              for e in room_ephemeral(room_id, "m.typing")(body)))
        # Typing for someone else is refused.
        response = await http.put(typing_path, json={"typing": True}, headers=bob.headers)
        assert response.status_code == 403

        # A read receipt from Bob reaches Alice.
        response = await http.post(f"{V3}/rooms/{room}/receipt/m.read/{quote(event_id)}", json={},
                                   headers=bob.headers)
        assert response.status_code == 200, response.text
        receipts = await alice.sync_until(room_ephemeral(room_id, "m.receipt"))
        assert bob.user_id in receipts[0]["content"][event_id]["m.read"]

        # Presence: Alice sets hers; Bob sees it through /sync and GET.
        response = await http.put(f"{V3}/presence/{quote(alice.user_id, safe='')}/status",
                                  json={"presence": "unavailable", "status_msg": "in a meeting"},
                                  headers=alice.headers)
        assert response.status_code == 200, response.text

        def alice_presence(body: dict[str, Any]) -> dict[str, Any] | None:
            for event in body["presence"]["events"]:
                if event["sender"] == alice.user_id and event["content"]["presence"] == "unavailable":
                    content: dict[str, Any] = event["content"]
                    return content
            return None

        presence = await bob.sync_until(alice_presence)
        assert presence["status_msg"] == "in a meeting" and isinstance(presence["last_active_ago"], int)
        response = await http.get(f"{V3}/presence/{quote(alice.user_id, safe='')}/status", headers=bob.headers)
        assert response.status_code == 200, response.text
        assert response.json()["presence"] == "unavailable"

        # A to-device message from Bob to Alice's device, delivered once.
        response = await http.put(f"{V3}/sendToDevice/m.test.ping/{uuid.uuid4().hex}", json={
            "messages": {alice.user_id: {alice.device_id: {"ping": 1}}}}, headers=bob.headers)
        assert response.status_code == 200, response.text
        messages = await alice.sync_until(lambda body: body["to_device"]["events"], set_presence="offline")
        assert messages == [{"type": "m.test.ping", "sender": bob.user_id, "content": {"ping": 1}}]
        after = await alice.sync(set_presence="offline")
        assert after["to_device"]["events"] == []
