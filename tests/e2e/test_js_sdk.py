"""matrix-js-sdk, the client library behind Element, talks to Myelin:
tests/e2e/js/conversation.js logs in, syncs, joins, sends and receives
messages, sends a read receipt and a typing notification, while this test
plays the other user over plain HTTP and sees them. Both process modes.

The SDK is installed by scripts/test.sh (``npm ci`` in tests/e2e/js, from
the committed package-lock.json): matrix-js-sdk 37.5.0, the last release
that runs on Node 20.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import RunningHomeserver

pytestmark = pytest.mark.e2e

JS_DIR = Path(__file__).resolve().parent / "js"
SCRIPT = JS_DIR / "conversation.js"
PASSWORD = "correct horse battery staple"
TIMEOUT = 120.0


async def _register(http: httpx.AsyncClient, localpart: str) -> dict[str, Any]:
    body = {"username": localpart, "password": PASSWORD, "auth": {"type": "m.login.dummy"}}
    response = await http.post("/_matrix/client/v3/register", json=body)
    assert response.status_code == 200, response.text
    account: dict[str, Any] = response.json()
    return account


def _auth(account: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {account['access_token']}"}


async def _read_line(process: asyncio.subprocess.Process, stderr_tail: list[str]) -> dict[str, Any]:
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), TIMEOUT)
    except TimeoutError:
        process.kill()
        raise AssertionError(f"conversation.js said nothing for {TIMEOUT}s:\n" + "".join(stderr_tail[-40:])) from None
    if not line:
        await process.wait()
        raise AssertionError(f"conversation.js exited ({process.returncode}) early:\n" + "".join(stderr_tail[-40:]))
    record: dict[str, Any] = json.loads(line)
    if record["event"] == "error":
        raise AssertionError(f"conversation.js failed: {record['message']}\nfailed requests: "
                             f"{record.get('failed_requests')}\n" + "".join(stderr_tail[-40:]))
    return record


async def _expect(process: asyncio.subprocess.Process, event: str, stderr_tail: list[str]) -> dict[str, Any]:
    record = await _read_line(process, stderr_tail)
    assert record["event"] == event, record
    return record


async def _collect_stderr(process: asyncio.subprocess.Process, into: list[str]) -> None:
    assert process.stderr is not None
    async for line in process.stderr:
        into.append(line.decode(errors="replace"))
        del into[:-200]


async def _sync_until(http: httpx.AsyncClient, account: dict[str, Any], room_id: str,
                      found: Any, since: str | None = None) -> dict[str, Any]:
    """Long-polls /sync as ``account`` until ``found(joined_room)`` holds."""
    deadline = asyncio.get_running_loop().time() + 60
    while asyncio.get_running_loop().time() < deadline:
        params = {"timeout": "5000", **({"since": since} if since else {})}
        response = await http.get("/_matrix/client/v3/sync", params=params, headers=_auth(account))
        assert response.status_code == 200, response.text
        body = response.json()
        since = body["next_batch"]
        room = body.get("rooms", {}).get("join", {}).get(room_id)
        if room is not None and found(room):
            result: dict[str, Any] = room
            return result
    raise AssertionError(f"/sync never showed what was expected in {room_id}")


async def test_js_sdk_conversation(homeserver: RunningHomeserver) -> None:
    node = shutil.which("node")
    assert node is not None, "node is not installed (scripts/test.sh expects Node 20 on the machine)"
    assert (JS_DIR / "node_modules" / "matrix-js-sdk").is_dir(), (
        "matrix-js-sdk is not installed: run scripts/test.sh, or `npm ci` in tests/e2e/js")

    run = uuid.uuid4().hex[:8]
    async with httpx.AsyncClient(base_url=homeserver.base_url, timeout=60) as http:
        alice = await _register(http, f"js_alice_{run}")
        bob = await _register(http, f"js_bob_{run}")
        created = await http.post("/_matrix/client/v3/createRoom", headers=_auth(bob),
                                  json={"preset": "public_chat", "name": "matrix-js-sdk"})
        assert created.status_code == 200, created.text
        room_id = created.json()["room_id"]

        process = await asyncio.create_subprocess_exec(
            node, str(SCRIPT), homeserver.base_url, alice["user_id"], PASSWORD, room_id, bob["user_id"],
            "--receipts-and-typing",
            cwd=JS_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        stderr_tail: list[str] = []
        stderr_task = asyncio.create_task(_collect_stderr(process, stderr_tail))
        try:
            await _expect(process, "logged_in", stderr_tail)
            await _expect(process, "prepared", stderr_tail)
            await _expect(process, "joined", stderr_tail)
            sent = await _expect(process, "sent", stderr_tail)
            await _expect(process, "echoed", stderr_tail)

            # Bob sees alice's message, then answers.
            messages = await http.get(f"/_matrix/client/v3/rooms/{room_id}/messages", headers=_auth(bob),
                                      params={"dir": "b", "limit": "10"})
            assert messages.status_code == 200, messages.text
            by_id = {e["event_id"]: e for e in messages.json()["chunk"]}
            assert by_id[sent["event_id"]]["content"]["body"] == "hello from matrix-js-sdk"
            answer = await http.put(f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{run}",
                                    headers=_auth(bob), json={"msgtype": "m.text", "body": "hello from bob"})
            assert answer.status_code == 200, answer.text
            answer_id = answer.json()["event_id"]

            received = await _expect(process, "received", stderr_tail)
            assert received["event_id"] == answer_id
            assert received["body"] == "hello from bob"
            await _expect(process, "receipt_and_typing_sent", stderr_tail)
            done = await _expect(process, "done", stderr_tail)
            assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            stderr_task.cancel()

        print("requests matrix-js-sdk made:", *sorted({f"{r['method']} {r['path']} -> {r['status']}"
                                                       for r in done["requests"]}), sep="\n  ")
        # Nothing the SDK asked for failed (it tolerates some 404s; Myelin should not need it to).
        assert done["failed_requests"] == [], done["failed_requests"]

        # Bob's sync carries alice's read receipt on his message and her typing
        # (in one response or over several).
        seen: set[str] = set()

        def has_receipt_and_typing(room: dict[str, Any]) -> bool:
            for event in room.get("ephemeral", {}).get("events", []):
                if event["type"] == "m.receipt" and alice["user_id"] in (
                        event["content"].get(answer_id, {}).get("m.read", {})):
                    seen.add("receipt")
                if event["type"] == "m.typing" and alice["user_id"] in event["content"].get("user_ids", []):
                    seen.add("typing")
            return seen == {"receipt", "typing"}

        await _sync_until(http, bob, room_id, has_receipt_and_typing)
