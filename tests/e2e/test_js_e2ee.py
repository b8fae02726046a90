"""Real end-to-end encryption between real clients: tests/e2e/js/encrypted.js
drives matrix-js-sdk 37.5.0 with its Rust crypto (matrix-sdk-crypto-wasm
14.2.1, in memory) through Myelin: two users in an encrypted room decrypt
each other's messages, a second device of one of them decrypts what is sent
after it logged in, and cross-signing bootstrapped by one user is seen by the
other (her keys, and her device signed by her); and tests/e2e/js/backup.js:
room keys kept in the server-side key backup are restored by a device that
logs in later, which decrypts older messages. On one server in both
process modes here; across two federating servers (two Myelins, Myelin and
Synapse) in tests/e2e/test_federation_e2ee_keys.py, which shares its
servers with the key query tests there.

The SDK is installed by scripts/test.sh (``npm ci`` in tests/e2e/js).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import RunningHomeserver

pytestmark = pytest.mark.e2e

JS_DIR = Path(__file__).resolve().parent / "js"
SCRIPT = JS_DIR / "encrypted.js"
PASSWORD = "correct horse battery staple"
TIMEOUT = 300.0


async def _register(base_url: str, localpart: str) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        body: dict[str, Any] = {"username": localpart, "password": PASSWORD, "auth": {"type": "m.login.dummy"}}
        response = await http.post("/_matrix/client/v3/register", json=body)
        if response.status_code == 401:  # Synapse wants the session back
            body["auth"]["session"] = response.json()["session"]
            response = await http.post("/_matrix/client/v3/register", json=body)
        assert response.status_code == 200, response.text
        user_id: str = response.json()["user_id"]
        return user_id


async def run_encrypted_conversation(alice_url: str, bob_url: str) -> list[dict[str, Any]]:
    """Runs encrypted.js for a new user on each base URL; checks what it reports."""
    node = shutil.which("node")
    assert node is not None, "node is not installed (scripts/test.sh expects Node 20 on the machine)"
    assert (JS_DIR / "node_modules" / "@matrix-org" / "matrix-sdk-crypto-wasm").is_dir(), (
        "matrix-sdk-crypto-wasm is not installed: run scripts/test.sh, or `npm ci` in tests/e2e/js")
    run = uuid.uuid4().hex[:8]
    alice = await _register(alice_url, f"e2ee_alice_{run}")
    bob = await _register(bob_url, f"e2ee_bob_{run}")
    process = await asyncio.create_subprocess_exec(
        node, str(SCRIPT), alice_url, alice, bob_url, bob, PASSWORD, cwd=JS_DIR,
        env={**os.environ, "JS_SDK_TIMEOUT_MS": str(int((TIMEOUT - 20) * 1000))},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), TIMEOUT)
    except TimeoutError:
        process.kill()
        stdout, stderr = await process.communicate()
    records: list[dict[str, Any]] = [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]
    assert records, "encrypted.js said nothing:\n" + stderr.decode(errors="replace")[-4000:]
    last = records[-1]
    context = "\n".join(json.dumps(r) for r in records) + "\n" + stderr.decode(errors="replace")[-3000:]
    assert last["event"] == "done", context
    assert process.returncode == 0, context
    assert last["bodies"] == {
        "bob": "hello bob, this is secret", "alice": "hello alice, secret too",
        "bob_second_device": "for both of bob's devices", "bob_first_device": "for both of bob's devices"}
    by_event = {r["event"]: r for r in records}
    assert by_event["cross_signing_bootstrapped"]["status"]["publicKeysOnDevice"] is True
    assert by_event["cross_signing_seen"]["signed_by_owner"] is True
    assert [r["device_name"] for r in records if r["event"] == "started"] == [
        "alice laptop", "bob phone", "bob tablet"]
    # Nothing the SDK asked for failed (404s it expects, such as no key backup, aside).
    assert last["failed_requests"] == [], last["failed_requests"]
    return records


async def run_script(script: Path, *args: str) -> list[dict[str, Any]]:
    """Runs a script of tests/e2e/js; answers the JSON lines it printed, the last one "done"."""
    node = shutil.which("node")
    assert node is not None, "node is not installed (scripts/test.sh expects Node 20 on the machine)"
    process = await asyncio.create_subprocess_exec(
        node, str(script), *args, cwd=JS_DIR,
        env={**os.environ, "JS_SDK_TIMEOUT_MS": str(int((TIMEOUT - 20) * 1000))},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), TIMEOUT)
    except TimeoutError:
        process.kill()
        stdout, stderr = await process.communicate()
    records: list[dict[str, Any]] = [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]
    context = "\n".join(json.dumps(r) for r in records) + "\n" + stderr.decode(errors="replace")[-3000:]
    assert records and records[-1]["event"] == "done", context
    assert process.returncode == 0, context
    return records


async def test_js_sdk_end_to_end_encryption(homeserver: RunningHomeserver) -> None:
    await run_encrypted_conversation(homeserver.base_url, homeserver.base_url)

    # Key backup: a device that logs in later restores the room keys from the
    # server-side backup (through secret storage) and decrypts older messages.
    user = await _register(homeserver.base_url, f"e2ee_backup_{uuid.uuid4().hex[:8]}")
    records = await run_script(JS_DIR / "backup.js", homeserver.base_url, user, PASSWORD)
    by_event = {r["event"]: r for r in records}
    assert by_event["backed_up"]["count"] >= 1 and by_event["backed_up"]["version"] == by_event["backup_enabled"]["version"]
    assert by_event["restored"]["imported"] >= 1
    assert by_event["second_device_decrypted"]["body"] == "kept in the key backup"
    done = records[-1]
    assert done["failed_requests"] == [], done["failed_requests"]
    assert any(call.startswith("PUT /_matrix/client/v3/room_keys/keys") for call in done["backup_calls"])

