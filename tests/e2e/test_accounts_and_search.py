"""Accounts, sessions, the user directory and search as clients see them, in
both process modes: mautrix (0.21) logs in, sets its display name, creates a
room, sends and searches the user directory; httpx drives what mautrix has no
call for (POST /search, refresh tokens, interactive auth)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from mautrix.client import Client
from mautrix.types import RoomCreatePreset, UserID

from tests.e2e.harness import RunningHomeserver

pytestmark = pytest.mark.e2e

V3 = "/_matrix/client/v3"
PASSWORD = "a-long-password"


async def register(http: httpx.AsyncClient, prefix: str) -> str:
    response = await http.post(f"{V3}/register", json={
        "username": f"{prefix}{uuid.uuid4().hex[:6]}", "password": PASSWORD, "auth": {"type": "m.login.dummy"}})
    assert response.status_code == 200, response.text
    user_id: str = response.json()["user_id"]
    return user_id


@asynccontextmanager
async def mautrix_client(hs: RunningHomeserver, user_id: str) -> AsyncIterator[Client]:
    client = Client(mxid=UserID(user_id), base_url=hs.base_url)
    try:
        await client.login(identifier=UserID(user_id), password=PASSWORD, device_name="mautrix")
        yield client
    finally:
        await client.api.session.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def eventually(check: Callable[[], Awaitable[Any]]) -> Any:
    """The read model follows the log: retries until ``check`` answers something."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await _sleep()
    raise AssertionError("not seen in time")


async def _sleep() -> None:
    import asyncio
    await asyncio.sleep(0.2)


async def search(http: httpx.AsyncClient, token: str, term: str) -> list[dict[str, Any]]:
    response = await http.post(f"{V3}/search", headers=bearer(token), json={
        "search_categories": {"room_events": {"search_term": term, "order_by": "recent",
                                              "event_context": {"before_limit": 2, "after_limit": 0}}}})
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["search_categories"]["room_events"]["results"]
    return results


async def test_directory_and_search(homeserver: RunningHomeserver) -> None:
    marker = uuid.uuid4().hex[:8]
    async with httpx.AsyncClient(base_url=homeserver.base_url, timeout=30) as http:
        alice_id, bob_id, carol_id = [await register(http, p) for p in ("alice", "bob", "carol")]
        async with mautrix_client(homeserver, alice_id) as alice, mautrix_client(homeserver, bob_id) as bob, \
                mautrix_client(homeserver, carol_id) as carol:
            await bob.set_displayname(f"Bob Findable {marker}")
            room_id = await alice.create_room(preset=RoomCreatePreset.PRIVATE, invitees=[UserID(bob_id)])
            await alice.send_text(room_id, f"before bob joined {marker}")
            await bob.join_room(room_id)
            await alice.send_text(room_id, f"the secret word is xylophone{marker}")

            async def bob_in_directory() -> Any:
                found = await alice.search_users(f"findable {marker}")
                return [u for u in found.results if u.user_id == bob_id]
            await eventually(bob_in_directory)
            # mautrix 0.21 reads `displayname` where the spec (and this server) says `display_name`.
            answer = await http.post(f"{V3}/user_directory/search", headers=bearer(alice.api.token),
                                     json={"search_term": f"findable {marker}"})
            assert answer.json() == {"results": [{"user_id": bob_id, "display_name": f"Bob Findable {marker}"}],
                                     "limited": False}
            # Carol shares no room with Bob, and the room is private.
            assert (await carol.search_users(f"findable {marker}")).results == []

            async def found_by_alice() -> Any:
                return await search(http, alice.api.token, f"xylophone{marker}")
            results = await eventually(found_by_alice)
            assert results[0]["result"]["room_id"] == room_id
            before = results[0]["context"]["events_before"]
            # Newest first, as /context: Bob's join, then the message before it.
            assert [e["type"] for e in before] == ["m.room.member", "m.room.message"]
            assert before[1]["content"]["body"] == f"before bob joined {marker}"
            # Bob finds the message sent while he was joined, and (the history is shared, and he
            # joined) the one from before; Carol, in no room with them, finds nothing.
            assert len(await search(http, bob.api.token, f"xylophone{marker}")) == 1
            assert [r["result"]["content"]["body"] for r in await search(http, bob.api.token, marker)] == [
                f"before bob joined {marker}"]
            assert await search(http, carol.api.token, f"xylophone{marker}") == []


async def test_refresh_tokens_and_interactive_auth(homeserver: RunningHomeserver) -> None:
    async with httpx.AsyncClient(base_url=homeserver.base_url, timeout=30) as http:
        user_id = await register(http, "dora")
        async with mautrix_client(homeserver, user_id) as mautrix:
            assert (await mautrix.whoami()).user_id == user_id
            mautrix_device = mautrix.device_id
            login = await http.post(f"{V3}/login", json={
                "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id},
                "password": PASSWORD, "refresh_token": True})
            first = login.json()
            assert first["expires_in_ms"] > 0 and first["refresh_token"]
            refreshed = await http.post(f"{V3}/refresh", json={"refresh_token": first["refresh_token"]})
            assert refreshed.status_code == 200, refreshed.text
            second = refreshed.json()
            me = await http.get(f"{V3}/account/whoami", headers=bearer(second["access_token"]))
            assert me.json()["device_id"] == first["device_id"]
            # The new access token was used: the old refresh token is spent.
            reused = await http.post(f"{V3}/refresh", json={"refresh_token": first["refresh_token"]})
            assert (reused.status_code, reused.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")

            # Deleting mautrix's device: the flows, a wrong password, then the right one.
            path = f"{V3}/devices/{mautrix_device}"
            headers = bearer(second["access_token"])
            start = await http.request("DELETE", path, headers=headers)
            assert start.status_code == 401 and start.json()["flows"] == [{"stages": ["m.login.password"]}]
            auth = {"type": "m.login.password", "session": start.json()["session"],
                    "identifier": {"type": "m.id.user", "user": user_id}}
            wrong = await http.request("DELETE", path, headers=headers, json={"auth": {**auth, "password": "no"}})
            assert (wrong.status_code, wrong.json()["errcode"]) == (401, "M_FORBIDDEN")
            done = await http.request("DELETE", path, headers=headers, json={"auth": {**auth, "password": PASSWORD}})
            assert done.status_code == 200, done.text
            gone = await http.get(f"{V3}/account/whoami", headers=bearer(mautrix.api.token))
            assert (gone.status_code, gone.json()["soft_logout"]) == (401, False)
            renamed = await http.put(f"{V3}/devices/{first['device_id']}", headers=headers,
                                     json={"display_name": "renamed"})
            assert renamed.status_code == 200
            devices = (await http.get(f"{V3}/devices", headers=headers)).json()["devices"]
            names = {d["device_id"]: d.get("display_name") for d in devices}
            assert names[first["device_id"]] == "renamed" and mautrix_device not in names
            assert (await http.get(f"{V3}/account/3pid", headers=headers)).json() == {"threepids": []}
