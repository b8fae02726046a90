"""Keys and device messaging through a running single process (the split
deployment runs the same paths in tests/e2e/test_js_e2ee.py): device list
changes reach users who share a room (and not others),
/keys/changes, one-time key counts in /sync, claims down to the fallback
key, to-device delivery (idempotent by transaction ID) and deletion once
acknowledged, device_lists.left after leaving."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.e2e.harness import RunningHomeserver
from tests.e2ee import ClientDevice

pytestmark = pytest.mark.e2e

V3 = "/_matrix/client/v3"


class Client:
    def __init__(self, http: httpx.AsyncClient, user_id: str, device_id: str, token: str) -> None:
        self.http = http
        self.user_id = user_id
        self.device_id = device_id
        self.headers = {"Authorization": f"Bearer {token}"}
        self.since: str | None = None

    async def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        response = await self.http.request(method, V3 + path, json=body, params=params, headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()

    async def sync(self, timeout: int = 0) -> dict[str, Any]:
        params: dict[str, Any] = {"timeout": timeout}
        if self.since is not None:
            params["since"] = self.since
        body: dict[str, Any] = await self.call("GET", "/sync", **params)
        self.since = body["next_batch"]
        return body

    async def sync_until(self, found: Callable[[dict[str, Any]], Any]) -> Any:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            result = found(await self.sync(timeout=3000))
            if result:
                return result
        raise AssertionError(f"{self.user_id}: not seen through /sync in time")


async def register(http: httpx.AsyncClient, prefix: str) -> Client:
    response = await http.post(f"{V3}/register", json={
        "username": f"{prefix}{uuid.uuid4().hex[:6]}", "password": "a-long-password",
        "auth": {"type": "m.login.dummy"}})
    assert response.status_code == 200, response.text
    body = response.json()
    return Client(http, body["user_id"], body["device_id"], body["access_token"])


def changed(user_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda body: user_id in body.get("device_lists", {}).get("changed", [])


def left(user_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda body: user_id in body.get("device_lists", {}).get("left", [])


async def test_keys_device_lists_and_to_device(monolith: RunningHomeserver) -> None:
    async with httpx.AsyncClient(base_url=monolith.base_url, timeout=30) as http:
        alice, bob, carol = (await register(http, "alice"), await register(http, "bob"),
                             await register(http, "carol"))
        first = await alice.sync()
        assert first["device_one_time_keys_count"] == {"signed_curve25519": 0}
        assert "device_lists" not in first  # only incremental syncs carry changes
        await bob.sync()
        await carol.sync()
        room = (await alice.call("POST", "/createRoom", {"invite": [bob.user_id]}))["room_id"]
        await bob.call("POST", f"/join/{room}", {})
        # A new room-mate's devices are to be tracked: Bob is "changed" for Alice, and Alice for Bob.
        await alice.sync_until(changed(bob.user_id))
        await bob.sync_until(changed(alice.user_id))
        before_keys = alice.since

        # Bob's device uploads keys: Alice (sharing a room) hears of it, Carol does not.
        device = ClientDevice(bob.user_id, bob.device_id)
        counts = await bob.call("POST", "/keys/upload", {
            "device_keys": device.device_keys(), "one_time_keys": device.one_time_keys("1", "2"),
            "fallback_keys": device.fallback_key("fb")})
        assert counts["one_time_key_counts"] == {"signed_curve25519": 2}
        await alice.sync_until(changed(bob.user_id))
        await bob.sync_until(changed(bob.user_id))  # their own device list too
        carol_sync = await carol.sync(timeout=500)
        assert bob.user_id not in carol_sync.get("device_lists", {}).get("changed", [])
        changes = await alice.call("GET", "/keys/changes", **{"from": before_keys, "to": alice.since})
        assert bob.user_id in changes["changed"]
        carol_changes = await carol.call("GET", "/keys/changes", **{"from": before_keys, "to": carol.since})
        assert bob.user_id not in carol_changes["changed"]

        # Alice reads Bob's keys and claims his one-time keys down to the fallback key.
        keys = await alice.call("POST", "/keys/query", {"device_keys": {bob.user_id: []}})
        assert set(keys["device_keys"][bob.user_id]) == {bob.device_id}
        claim = {"one_time_keys": {bob.user_id: {bob.device_id: "signed_curve25519"}}}
        claimed = [list((await alice.call("POST", "/keys/claim", claim))["one_time_keys"][bob.user_id][bob.device_id])
                   for _ in range(3)]
        assert sorted(claimed[0] + claimed[1]) == ["signed_curve25519:1", "signed_curve25519:2"]
        assert claimed[2] == ["signed_curve25519:fb"]

        # A to-device message, sent twice with one transaction ID, arrives once.
        txn = uuid.uuid4().hex
        message = {"messages": {bob.user_id: {bob.device_id: {"n": 1}}}}
        await alice.call("PUT", f"/sendToDevice/m.test.ping/{txn}", message)
        await alice.call("PUT", f"/sendToDevice/m.test.ping/{txn}", message)
        await alice.call("PUT", f"/sendToDevice/m.test.ping/{uuid.uuid4().hex}",
                         {"messages": {bob.user_id: {"*": {"n": 2}}}})
        received: list[dict[str, Any]] = []

        def two_messages(body: dict[str, Any]) -> bool:
            received.extend(body["to_device"]["events"])
            # The counts come along: the fallback key is used now.
            if body["to_device"]["events"]:
                assert body["device_one_time_keys_count"] == {"signed_curve25519": 0}
                assert body["device_unused_fallback_key_types"] == []
            return len(received) >= 2
        await bob.sync_until(two_messages)
        assert sorted(m["content"]["n"] for m in received) == [1, 2]
        assert all(m["sender"] == alice.user_id and m["type"] == "m.test.ping" for m in received)
        # Acknowledged by the next since: never sent again.
        again = await bob.sync(timeout=500)
        assert again["to_device"]["events"] == []

        # Bob leaves: Alice no longer shares a room with him.
        before_leave = alice.since
        await bob.call("POST", f"/rooms/{room}/leave", {})
        await alice.sync_until(left(bob.user_id))
        changes = await alice.call("GET", "/keys/changes", **{"from": before_leave, "to": alice.since})
        assert bob.user_id in changes["left"] and bob.user_id not in changes["changed"]
