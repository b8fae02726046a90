"""Account data, tags and push rules reach /sync, and a user joins a room by
its alias, in both process modes (in the split one, the user API publishes
account data over Kafka and the sync API serves it)."""

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
    def __init__(self, http: httpx.AsyncClient, user_id: str, token: str) -> None:
        self.http = http
        self.user_id = user_id
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

    async def sync_until(self, found: Callable[[dict[str, Any]], Any]) -> Any:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            result = found(await self.sync(timeout=5000))
            if result:
                return result
        raise AssertionError("not seen through /sync in time")


async def register(http: httpx.AsyncClient, prefix: str) -> Client:
    response = await http.post(f"{V3}/register", json={
        "username": f"{prefix}{uuid.uuid4().hex[:6]}", "password": "a-long-password",
        "auth": {"type": "m.login.dummy"}})
    assert response.status_code == 200, response.text
    body = response.json()
    return Client(http, body["user_id"], body["access_token"])


def global_data(data_type: str) -> Callable[[dict[str, Any]], Any]:
    def found(body: dict[str, Any]) -> Any:
        for event in body["account_data"]["events"]:
            if event["type"] == data_type:
                return event["content"]
        return None
    return found


async def test_account_data_tags_push_rules_and_aliases(homeserver: RunningHomeserver) -> None:
    async with httpx.AsyncClient(base_url=homeserver.base_url, timeout=60) as http:
        alice = await register(http, "alice")
        bob = await register(http, "bob")
        server_name = alice.user_id.partition(":")[2]
        alias_name = f"lobby{uuid.uuid4().hex[:6]}"
        created = await http.post(f"{V3}/createRoom", json={"preset": "public_chat", "room_alias_name": alias_name},
                                  headers=alice.headers)
        assert created.status_code == 200, created.text
        room_id = created.json()["room_id"]
        alias = f"#{alias_name}:{server_name}"

        # An initial sync already has the default push rules.
        initial = await alice.sync()
        rules = global_data("m.push_rules")(initial)
        assert rules["global"]["override"][0]["rule_id"] == ".m.rule.master"

        # Account data and a tag, then both in the next syncs.
        me = quote(alice.user_id, safe="")
        room = quote(room_id, safe="")
        put = await http.put(f"{V3}/user/{me}/account_data/org.example.e2e", json={"n": 1}, headers=alice.headers)
        assert put.status_code == 200, put.text
        put = await http.put(f"{V3}/user/{me}/rooms/{room}/tags/u.work", json={"order": 0.5},
                             headers=alice.headers)
        assert put.status_code == 200, put.text
        forbidden = await http.get(f"{V3}/user/{me}/account_data/org.example.e2e", headers=bob.headers)
        assert forbidden.status_code == 403 and forbidden.json()["errcode"] == "M_FORBIDDEN"
        seen: dict[str, Any] = {}

        def both(body: dict[str, Any]) -> bool:
            content = global_data("org.example.e2e")(body)
            if content is not None:
                seen["global"] = content
            for event in body["rooms"]["join"].get(room_id, {}).get("account_data", {}).get("events", []):
                if event["type"] == "m.tag":
                    seen["tag"] = event["content"]
            return "global" in seen and "tag" in seen
        await alice.sync_until(both)
        assert seen == {"global": {"n": 1}, "tag": {"tags": {"u.work": {"order": 0.5}}}}

        # Push rules: add, read, disable, delete; each change reaches /sync.
        put = await http.put(f"{V3}/pushrules/global/content/cake", json={"pattern": "cake", "actions": ["notify"]},
                             headers=alice.headers)
        assert put.status_code == 200, put.text
        got = await http.get(f"{V3}/pushrules/global/content/cake", headers=alice.headers)
        assert got.json() == {"rule_id": "cake", "default": False, "enabled": True, "pattern": "cake",
                              "actions": ["notify"]}
        put = await http.put(f"{V3}/pushrules/global/content/cake/enabled", json={"enabled": False},
                             headers=alice.headers)
        assert put.status_code == 200, put.text

        def cake_disabled(body: dict[str, Any]) -> bool:
            content = global_data("m.push_rules")(body)
            return content is not None and any(
                r["rule_id"] == "cake" and r["enabled"] is False for r in content["global"]["content"])
        await alice.sync_until(cake_disabled)
        deleted = await http.delete(f"{V3}/pushrules/global/content/cake", headers=alice.headers)
        assert deleted.status_code == 200, deleted.text
        missing = await http.get(f"{V3}/pushrules/global/content/cake", headers=alice.headers)
        assert missing.status_code == 404 and missing.json()["errcode"] == "M_NOT_FOUND"

        # Bob resolves the alias and joins by it.
        resolved = await http.get(f"{V3}/directory/room/{quote(alias, safe='')}")
        assert resolved.status_code == 200 and resolved.json()["room_id"] == room_id, resolved.text
        joined = await http.post(f"{V3}/join/{quote(alias, safe='')}", json={}, headers=bob.headers)
        assert joined.status_code == 200 and joined.json() == {"room_id": room_id}, joined.text
        await bob.sync_until(lambda body: room_id in body["rooms"]["join"])
        unknown = await http.post(f"{V3}/join/{quote(f'#nothing{alias_name}:{server_name}', safe='')}", json={},
                                  headers=bob.headers)
        assert unknown.status_code == 404 and unknown.json()["errcode"] == "M_NOT_FOUND"
