"""Two people talk through Myelin with matrix-nio, a real client from PyPI,
against the single process and the split deployment alike."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import nio
import pytest

from tests.e2e.harness import RunningHomeserver

pytestmark = pytest.mark.e2e

MESSAGES = 100


async def _register_and_login(base_url: str, name: str) -> nio.AsyncClient:
    client = nio.AsyncClient(base_url, name)
    registered = await client.register(name, "correct horse battery staple")
    assert isinstance(registered, nio.RegisterResponse), registered
    await client.close()
    client = nio.AsyncClient(base_url, name)
    logged_in = await client.login("correct horse battery staple", device_name=f"{name}'s laptop")
    assert isinstance(logged_in, nio.LoginResponse), logged_in
    return client


async def _raw(client: nio.AsyncClient, method: str, path: str, body: Any = None,
               params: dict[str, str] | None = None) -> httpx.Response:
    """Some responses are read as raw JSON: nio 0.26 assumes room IDs with a
    server part in places, which v12 rooms do not have."""
    async with httpx.AsyncClient(base_url=client.homeserver, timeout=60) as http:
        return await http.request(method, path, json=body, params=params,
                                  headers={"Authorization": f"Bearer {client.access_token}"})


async def _sync_until(client: nio.AsyncClient, since: str | None, done: Any,
                      timeout: float = 60.0) -> tuple[str, list[dict[str, Any]]]:
    """Long-polls /sync until ``done(events)`` holds for the timeline events
    seen so far; answers the last next_batch and those events."""
    seen: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        # A timeline limit above the burst, so no sync comes back limited.
        params = {"timeout": "5000", "filter": '{"room": {"timeline": {"limit": 500}}}'}
        if since:
            params["since"] = since
        response = await _raw(client, "GET", "/_matrix/client/v3/sync", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        initial = since is None
        since = body["next_batch"]
        for room in body.get("rooms", {}).get("join", {}).values():
            assert initial or not room.get("timeline", {}).get("limited")
            seen.extend(room.get("timeline", {}).get("events", []))
        for room_id, room in body.get("rooms", {}).get("invite", {}).items():
            seen.append({"type": "invite", "room_id": room_id, "invite": room})
        if done(seen):
            return since, seen
        assert asyncio.get_running_loop().time() < deadline, f"gave up; saw {len(seen)} events"


async def test_two_users_converse_and_paginate(homeserver: RunningHomeserver) -> None:
    suffix = uuid.uuid4().hex[:6]
    alice = await _register_and_login(homeserver.base_url, f"alice{suffix}")
    bob = await _register_and_login(homeserver.base_url, f"bob{suffix}")
    try:
        whoami = await _raw(alice, "GET", "/_matrix/client/v3/account/whoami")
        assert whoami.json()["user_id"] == alice.user_id

        created = await _raw(alice, "POST", "/_matrix/client/v3/createRoom",
                             {"preset": "private_chat", "name": "Myelin e2e", "topic": "logs"})
        assert created.status_code == 200, created.text
        room_id = created.json()["room_id"]

        bob_since, _ = await _sync_until(bob, None, lambda events: True)
        invited = await _raw(alice, "POST", f"/_matrix/client/v3/rooms/{room_id}/invite",
                             {"user_id": bob.user_id})
        assert invited.status_code == 200, invited.text
        bob_since, _ = await _sync_until(
            bob, bob_since, lambda events: any(e.get("room_id") == room_id for e in events))

        joined = await _raw(bob, "POST", f"/_matrix/client/v3/join/{room_id}", {})
        assert joined.status_code == 200, joined.text
        rooms = await _raw(bob, "GET", "/_matrix/client/v3/joined_rooms")
        assert room_id in rooms.json()["joined_rooms"]

        alice_since, _ = await _sync_until(alice, None, lambda events: any(
            e["type"] == "m.room.member" and e.get("state_key") == bob.user_id
            and e["content"].get("membership") == "join" for e in events))

        # Alternate senders; each side must see every message, in order.
        sent: list[str] = []
        for i in range(MESSAGES):
            sender = alice if i % 2 == 0 else bob
            result = await sender.room_send(room_id, "m.room.message",
                                            {"msgtype": "m.text", "body": f"message {i}"})
            assert isinstance(result, nio.RoomSendResponse), result
            sent.append(result.event_id)

        def has_all(events: list[dict[str, Any]]) -> bool:
            return sum(1 for e in events if e["type"] == "m.room.message") >= MESSAGES

        for client, since in ((alice, alice_since), (bob, bob_since)):
            _, events = await _sync_until(client, since, has_all)
            received = [e["event_id"] for e in events if e["type"] == "m.room.message"]
            assert received == sent
            mine = [e for e in events if e["type"] == "m.room.message" and e["sender"] == client.user_id]
            assert all("transaction_id" in e.get("unsigned", {}) for e in mine)

        # Back to the room's creation with /messages: no gap, no duplicate.
        paginated: list[dict[str, Any]] = []
        token: str | None = None
        first_page: dict[str, Any] | None = None
        while True:
            params = {"dir": "b", "limit": "17"}
            if token:
                params["from"] = token
            page = await _raw(bob, "GET", f"/_matrix/client/v3/rooms/{room_id}/messages", params=params)
            assert page.status_code == 200, page.text
            body = page.json()
            first_page = first_page or body
            paginated.extend(body["chunk"])
            if not body.get("end") or not body["chunk"]:
                break
            token = body["end"]
        ids = [e["event_id"] for e in paginated]
        assert len(ids) == len(set(ids)), "an event came twice"
        assert paginated[-1]["type"] == "m.room.create"
        messages_newest_first = [e["event_id"] for e in paginated if e["type"] == "m.room.message"]
        assert list(reversed(messages_newest_first)) == sent

        # Forwards from where the first backward page ended gives that
        # page again, oldest first.
        assert first_page is not None and first_page.get("end")
        forward = await _raw(bob, "GET", f"/_matrix/client/v3/rooms/{room_id}/messages",
                             params={"dir": "f", "limit": "1000", "from": first_page["end"]})
        assert forward.status_code == 200, forward.text
        forward_ids = [e["event_id"] for e in forward.json()["chunk"]]
        assert forward_ids == [e["event_id"] for e in reversed(first_page["chunk"])]

        members = await _raw(alice, "GET", f"/_matrix/client/v3/rooms/{room_id}/members")
        joined_members = {e["state_key"] for e in members.json()["chunk"]
                          if e["content"]["membership"] == "join"}
        assert joined_members == {alice.user_id, bob.user_id}

        left = await _raw(bob, "POST", f"/_matrix/client/v3/rooms/{room_id}/leave", {})
        assert left.status_code == 200, left.text
        await _sync_until(alice, None, lambda events: any(
            e["type"] == "m.room.member" and e.get("state_key") == bob.user_id
            and e["content"].get("membership") == "leave" for e in events))
        after = await _raw(bob, "PUT", f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/late",
                           {"msgtype": "m.text", "body": "not a member"})
        assert after.status_code == 403
        assert after.json()["errcode"] == "M_FORBIDDEN"
    finally:
        await alice.close()
        await bob.close()
