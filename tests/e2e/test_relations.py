"""A thread, an edit and a redaction as a client sees them, in both process
modes: the client API writes, the room server decides, the sync API's read
model (fed by the output log; Kafka in the split deployment) answers /sync,
/relations, /threads, /event and /messages with bundled aggregations."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.e2e.harness import RunningHomeserver

pytestmark = pytest.mark.e2e

V1 = "/_matrix/client/v1"
V3 = "/_matrix/client/v3"


class Client:
    def __init__(self, http: httpx.AsyncClient, user_id: str, token: str) -> None:
        self.http = http
        self.user_id = user_id
        self.headers = {"Authorization": f"Bearer {token}"}

    async def get(self, path: str, **params: Any) -> dict[str, Any]:
        response = await self.http.get(path, params=params, headers=self.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def send(self, room_id: str, content: dict[str, Any], event_type: str = "m.room.message") -> str:
        response = await self.http.put(f"{V3}/rooms/{room_id}/send/{event_type}/{uuid.uuid4().hex}",
                                       json=content, headers=self.headers)
        assert response.status_code == 200, response.text
        event_id: str = response.json()["event_id"]
        return event_id


async def register(http: httpx.AsyncClient, prefix: str) -> Client:
    response = await http.post(f"{V3}/register", json={
        "username": f"{prefix}{uuid.uuid4().hex[:6]}", "password": "a-long-password",
        "auth": {"type": "m.login.dummy"}})
    assert response.status_code == 200, response.text
    body = response.json()
    return Client(http, body["user_id"], body["access_token"])


async def eventually(check: Callable[[], Awaitable[Any]]) -> Any:
    """The read model follows the log: retries until ``check`` answers something."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError("not seen in time")


async def test_thread_edit_and_redaction(homeserver: RunningHomeserver) -> None:
    async with httpx.AsyncClient(base_url=homeserver.base_url, timeout=60) as http:
        alice = await register(http, "alice")
        bob = await register(http, "bob")
        created = await http.post(f"{V3}/createRoom", json={"preset": "public_chat"}, headers=alice.headers)
        assert created.status_code == 200, created.text
        room_id = created.json()["room_id"]
        joined = await http.post(f"{V3}/rooms/{room_id}/join", json={}, headers=bob.headers)
        assert joined.status_code == 200, joined.text

        root = await alice.send(room_id, {"msgtype": "m.text", "body": "Shall we have cake?"})
        replies = [await bob.send(room_id, {"msgtype": "m.text", "body": f"yes {i}",
                                            "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
                   for i in range(2)]
        edit = await alice.send(room_id, {
            "msgtype": "m.text", "body": "* Shall we have chocolate cake?",
            "m.new_content": {"msgtype": "m.text", "body": "Shall we have chocolate cake?"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": root}})

        # The root as bob fetches it: thread summary and edit bundled, content untouched.
        async def bundled_root() -> dict[str, Any] | None:
            event = await bob.get(f"{V3}/rooms/{room_id}/event/{root}")
            relations = event["unsigned"].get("m.relations", {})
            return event if "m.replace" in relations and relations.get("m.thread", {}).get("count") == 2 \
                else None
        event = await eventually(bundled_root)
        assert event["content"]["body"] == "Shall we have cake?"
        thread = event["unsigned"]["m.relations"]["m.thread"]
        assert thread["latest_event"]["event_id"] == replies[-1]
        assert thread["current_user_participated"] is True
        assert event["unsigned"]["m.relations"]["m.replace"]["event_id"] == edit

        threads = await alice.get(f"{V1}/rooms/{room_id}/threads")
        assert [e["event_id"] for e in threads["chunk"]] == [root]
        in_thread = await alice.get(f"{V1}/rooms/{room_id}/relations/{root}/m.thread", dir="f")
        assert [e["event_id"] for e in in_thread["chunk"]] == replies

        # A limited /sync timeline carries the same bundle.
        synced = await bob.get(f"{V3}/sync", filter='{"room":{"timeline":{"limit":4}}}')
        timeline = synced["rooms"]["join"][room_id]["timeline"]
        assert timeline["limited"] is True
        synced_root = next(e for e in timeline["events"] if e["event_id"] == root)
        assert synced_root["unsigned"]["m.relations"]["m.replace"]["event_id"] == edit

        # Bob redacts his latest reply: it leaves the thread; alice redacts the root: it is emptied
        # and its edit is no longer bundled.
        redacted = await http.put(f"{V3}/rooms/{room_id}/redact/{replies[-1]}/{uuid.uuid4().hex}",
                                  json={"reason": "changed my mind"}, headers=bob.headers)
        assert redacted.status_code == 200, redacted.text
        root_redaction = await http.put(f"{V3}/rooms/{room_id}/redact/{root}/{uuid.uuid4().hex}",
                                        json={}, headers=alice.headers)
        assert root_redaction.status_code == 200, root_redaction.text
        redaction_id = root_redaction.json()["event_id"]

        async def redacted_root() -> dict[str, Any] | None:
            found = await bob.get(f"{V3}/rooms/{room_id}/event/{root}")
            return found if "redacted_because" in found["unsigned"] else None
        after = await eventually(redacted_root)
        assert after["content"] == {}
        assert after["unsigned"]["redacted_because"]["event_id"] == redaction_id
        relations = after["unsigned"].get("m.relations", {})
        assert "m.replace" not in relations
        assert relations["m.thread"]["count"] == 1
        assert relations["m.thread"]["latest_event"]["event_id"] == replies[0]

        async def reply_redacted() -> dict[str, Any] | None:
            page = await bob.get(f"{V3}/rooms/{room_id}/messages", dir="b", limit=20)
            reply = next(e for e in page["chunk"] if e["event_id"] == replies[-1])
            return reply if "redacted_because" in reply["unsigned"] else None
        reply = await eventually(reply_redacted)
        assert reply["content"] == {}
        remaining = await alice.get(f"{V1}/rooms/{room_id}/relations/{root}")
        assert replies[-1] not in [e["event_id"] for e in remaining["chunk"]]
