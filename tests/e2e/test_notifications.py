"""Notification counts and GET /notifications through the whole server, in
both process modes: a mention highlights, a read receipt resets the counts."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.e2e.harness import RunningHomeserver
from tests.e2e.test_ephemeral import V3, register

pytestmark = pytest.mark.e2e


async def test_mention_counts_notifications_and_receipt(homeserver: RunningHomeserver) -> None:
    async with httpx.AsyncClient(base_url=homeserver.base_url, timeout=60) as http:
        alice = await register(http, "alice")
        bob = await register(http, "bob")
        carol = await register(http, "carol")
        created = await http.post(f"{V3}/createRoom", json={"preset": "public_chat"}, headers=alice.headers)
        assert created.status_code == 200, created.text
        room_id = created.json()["room_id"]
        room = quote(room_id, safe="")
        for member in (bob, carol):
            joined = await http.post(f"{V3}/join/{room}", json={}, headers=member.headers)
            assert joined.status_code == 200, joined.text
        sent = await http.put(f"{V3}/rooms/{room}/send/m.room.message/n1", headers=bob.headers, json={
            "msgtype": "m.text", "body": "alice, look", "m.mentions": {"user_ids": [alice.user_id]}})
        assert sent.status_code == 200, sent.text
        event_id = sent.json()["event_id"]

        def counts(body: dict[str, Any]) -> dict[str, int] | None:
            joined_room = body["rooms"]["join"].get(room_id, {})
            timeline = [e["event_id"] for e in joined_room.get("timeline", {}).get("events", [])]
            return joined_room.get("unread_notifications") if event_id in timeline else None

        assert await alice.sync_until(counts) == {"notification_count": 1, "highlight_count": 1}
        listed = await http.get(f"{V3}/notifications", headers=alice.headers)
        assert listed.status_code == 200, listed.text
        [notification] = listed.json()["notifications"]
        assert notification["event"]["event_id"] == event_id and notification["read"] is False
        assert {"set_tweak": "highlight"} in notification["actions"]

        read = await http.post(f"{V3}/rooms/{room}/receipt/m.read/{quote(event_id, safe='')}", json={},
                               headers=alice.headers)
        assert read.status_code == 200, read.text

        def reset(body: dict[str, Any]) -> dict[str, int] | None:
            found = body["rooms"]["join"].get(room_id, {}).get("unread_notifications")
            return found if found == {"notification_count": 0, "highlight_count": 0} else None

        assert await alice.sync_until(reset)
        listed = await http.get(f"{V3}/notifications", headers=alice.headers)
        assert listed.json()["notifications"][0]["read"] is True
