"""Nothing lost: kill -9 the room server of a split deployment in the middle
of a burst of sends from several clients. After it restarts, every send that
was answered 200 is in the room exactly once, and the clients carry on."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.harness import RunningHomeserver, restart_component

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.kafka]

SENDERS = 4
SENDS_EACH = 40


async def _register(http: httpx.AsyncClient, name: str) -> str:
    response = await http.post("/_matrix/client/v3/register", json={
        "username": name, "password": "durable-password", "auth": {"type": "m.login.dummy"}})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _send_with_retries(http: httpx.AsyncClient, token: str, room_id: str, body: str,
                             answered: dict[str, str]) -> None:
    """Sends one message as a client would: retrying the same transaction
    ID until the server answers 200."""
    txn = uuid.uuid4().hex
    for _ in range(120):
        try:
            response = await http.put(
                f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}",
                json={"msgtype": "m.text", "body": body}, headers=_auth(token), timeout=10)
        except httpx.HTTPError:
            await asyncio.sleep(0.25)
            continue
        if response.status_code == 200:
            answered[body] = response.json()["event_id"]
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"{body} was never accepted")


async def _messages_by_body(http: httpx.AsyncClient, token: str, room_id: str) -> dict[str, list[str]]:
    """The room's whole timeline through /messages: message body -> event IDs."""
    chunk: list[dict[str, Any]] = []
    page_token: str | None = None
    while True:
        params = {"dir": "b", "limit": "100"}
        if page_token:
            params["from"] = page_token
        page = await http.get(f"/_matrix/client/v3/rooms/{room_id}/messages", params=params,
                              headers=_auth(token))
        assert page.status_code == 200, page.text
        body = page.json()
        chunk.extend(body["chunk"])
        if not body.get("end") or not body["chunk"]:
            break
        page_token = body["end"]
    by_body: dict[str, list[str]] = {}
    for event in chunk:
        if event["type"] == "m.room.message":
            by_body.setdefault(event["content"]["body"], []).append(event["event_id"])
    return by_body


async def test_kill_roomserver_mid_burst_loses_nothing(split: RunningHomeserver) -> None:
    async with httpx.AsyncClient(base_url=split.base_url, timeout=30) as http:
        suffix = uuid.uuid4().hex[:6]
        tokens = [await _register(http, f"sender{i}{suffix}") for i in range(SENDERS)]
        created = await http.post("/_matrix/client/v3/createRoom", json={"preset": "public_chat"},
                                  headers=_auth(tokens[0]))
        assert created.status_code == 200, created.text
        room_id = created.json()["room_id"]
        for token in tokens[1:]:
            joined = await http.post(f"/_matrix/client/v3/join/{room_id}", json={}, headers=_auth(token))
            assert joined.status_code == 200, joined.text

        answered: dict[str, str] = {}
        quarter_done = asyncio.Event()

        async def sender(index: int) -> None:
            for n in range(SENDS_EACH):
                await _send_with_retries(http, tokens[index], room_id, f"s{index}-m{n}", answered)
                if len(answered) >= SENDERS * SENDS_EACH // 4:
                    quarter_done.set()

        async def crash() -> None:
            # Wait until the burst is well under way, then kill -9.
            await quarter_done.wait()
            split.kill("roomserver")
            await asyncio.sleep(1.0)
            await asyncio.to_thread(restart_component, split, "roomserver")

        await asyncio.gather(crash(), *(sender(i) for i in range(SENDERS)))
        assert len(answered) == SENDERS * SENDS_EACH

        # Every answered send is in the room exactly once. The sync API
        # follows the output log, so give it a moment to catch up.
        by_body: dict[str, list[str]] = {}
        for _ in range(60):
            by_body = await _messages_by_body(http, tokens[0], room_id)
            if all(body_text in by_body for body_text in answered):
                break
            await asyncio.sleep(0.5)
        for body_text, event_id in answered.items():
            assert by_body.get(body_text) == [event_id], f"{body_text}: {by_body.get(body_text)}"

        # And the clients carry on.
        after = await http.put(f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/after",
                               json={"msgtype": "m.text", "body": "after the crash"},
                               headers=_auth(tokens[1]))
        assert after.status_code == 200, after.text
