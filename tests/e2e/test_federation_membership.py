"""Joins, invites, leaves and knocks between two Myelin single processes
federating over TLS on loopback: a user of one server is invited to a room
of the other (room versions 10 and 12), sees the invite in /sync, joins,
talks, leaves, is invited again and rejoins; an invite is rejected; a user
joins a public room by room ID with ``via``, and one by alias; a user
knocks; with a third server, the resident sends a newcomer's join on."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.e2e.harness import RunningHomeserver
from tests.e2e.test_federation_keys import start_federating

pytestmark = pytest.mark.e2e
V3 = "/_matrix/client/v3"


@dataclass
class Server:
    hs: RunningHomeserver
    name: str


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    root: Path = tmp_path_factory.mktemp("federation-membership")
    first, first_name, _ = start_federating(root / "a")
    try:
        second, second_name, _ = start_federating(root / "b")
    except BaseException:
        first.stop()
        raise
    try:
        yield Server(first, first_name), Server(second, second_name)
    finally:
        second.stop()
        first.stop()


class User:
    def __init__(self, server: Server, localpart: str) -> None:
        self.server = server
        self.http = httpx.AsyncClient(base_url=server.hs.base_url, timeout=60)
        self.localpart = localpart
        self.user_id = ""
        self.headers: dict[str, str] = {}
        self.since: str | None = None

    async def register(self) -> User:
        r = await self.http.post(f"{V3}/register", json={"username": self.localpart, "password": "a-long-password",
                                                         "auth": {"type": "m.login.dummy"}})
        assert r.status_code == 200, r.text
        self.user_id, self.headers = r.json()["user_id"], {"Authorization": f"Bearer {r.json()['access_token']}"}
        return self

    async def close(self) -> None:
        await self.http.aclose()

    async def post(self, path: str, body: dict[str, Any] | None = None, **params: Any) -> httpx.Response:
        return await self.http.post(f"{V3}{path}", json=body or {}, headers=self.headers, params=params)

    async def get(self, path: str) -> httpx.Response:
        return await self.http.get(f"{V3}{path}", headers=self.headers)

    async def sync_until(self, found: Callable[[dict[str, Any]], Any], what: str, timeout: float = 45.0) -> Any:
        """Long-polls /sync until ``found`` answers something truthy for a response."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            params: dict[str, Any] = {"timeout": 3000}
            if self.since:
                params["since"] = self.since
            r = await self.http.get(f"{V3}/sync", headers=self.headers, params=params)
            assert r.status_code == 200, r.text
            body = r.json()
            self.since = body["next_batch"]
            answer = found(body)
            if answer:
                return answer
        raise AssertionError(f"{self.user_id} never saw {what} (server log:\n"
                             f"{self.server.hs.log_tail('monolith')})")


def joined_events(room_id: str) -> Callable[[dict[str, Any]], list[dict[str, Any]]]:
    def found(body: dict[str, Any]) -> list[dict[str, Any]]:
        room = body.get("rooms", {}).get("join", {}).get(room_id)
        if room is None:
            return []
        return [*room.get("state", {}).get("events", []), *room.get("timeline", {}).get("events", [])]
    return found


def timeline_has(room_id: str, check: Callable[[dict[str, Any]], bool]) -> Callable[[dict[str, Any]], bool]:
    def found(body: dict[str, Any]) -> bool:
        return any(check(e) for e in joined_events(room_id)(body))
    return found


def member_event(user_id: str, membership: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: (e.get("type") == "m.room.member" and e.get("state_key") == user_id
                      and e.get("content", {}).get("membership") == membership)


def message(body: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e.get("type") == "m.room.message" and e.get("content", {}).get("body") == body


@pytest.fixture
async def users(servers: tuple[Server, Server]) -> Any:
    made: list[User] = []

    async def make(server: Server, localpart: str) -> User:
        user = await User(server, localpart).register()
        made.append(user)
        return user

    yield make
    for user in made:
        await user.close()


@pytest.mark.parametrize("room_version", ["10", "12"])
async def test_invite_join_talk_and_leave_across_servers(servers: tuple[Server, Server], users: Any,
                                                         room_version: str) -> None:
    first, second = servers
    alice = await users(first, f"alice{room_version}")
    bob = await users(second, f"bob{room_version}")
    r = await alice.post("/createRoom", {"preset": "private_chat", "room_version": room_version,
                                         "name": f"Room v{room_version}"})
    assert r.status_code == 200, r.text
    room_id = r.json()["room_id"]
    await bob.sync_until(lambda b: True, "an initial sync")

    r = await alice.post(f"/rooms/{quote(room_id)}/invite", {"user_id": bob.user_id})
    assert r.status_code == 200, r.text
    invite_state = await bob.sync_until(
        lambda b: b.get("rooms", {}).get("invite", {}).get(room_id, {}).get("invite_state", {}).get("events"),
        "the invite")
    assert {e["type"] for e in invite_state} >= {"m.room.create", "m.room.join_rules", "m.room.name"}
    assert any(e["type"] == "m.room.member" and e["state_key"] == bob.user_id for e in invite_state)

    r = await bob.post(f"/rooms/{quote(room_id)}/join")
    assert r.status_code == 200, r.text
    events = await bob.sync_until(joined_events(room_id), "the joined room")
    types = {e["type"] for e in events}
    assert {"m.room.create", "m.room.power_levels", "m.room.name"} <= types, types
    assert any(member_event(alice.user_id, "join")(e) for e in events)
    assert any(member_event(bob.user_id, "join")(e) for e in events)
    await alice.sync_until(timeline_has(room_id, member_event(bob.user_id, "join")), "bob's join")

    # Messages both ways.
    r = await alice.http.put(f"{V3}/rooms/{quote(room_id)}/send/m.room.message/t1", headers=alice.headers,
                             json={"msgtype": "m.text", "body": "hello bob"})
    assert r.status_code == 200, r.text
    await bob.sync_until(timeline_has(room_id, message("hello bob")), "alice's message")
    r = await bob.http.put(f"{V3}/rooms/{quote(room_id)}/send/m.room.message/t1", headers=bob.headers,
                           json={"msgtype": "m.text", "body": "hello alice"})
    assert r.status_code == 200, r.text
    await alice.sync_until(timeline_has(room_id, message("hello alice")), "bob's message")

    r = await bob.post(f"/rooms/{quote(room_id)}/leave")
    assert r.status_code == 200, r.text
    await alice.sync_until(timeline_has(room_id, member_event(bob.user_id, "leave")), "bob's leave")
    await bob.sync_until(lambda b: room_id in b.get("rooms", {}).get("leave", {}), "the room left")

    # Invited again to the room his server holds an old copy of, and back in.
    r = await alice.http.put(f"{V3}/rooms/{quote(room_id)}/send/m.room.message/t2", headers=alice.headers,
                             json={"msgtype": "m.text", "body": "while bob was away"})
    assert r.status_code == 200, r.text
    r = await alice.post(f"/rooms/{quote(room_id)}/invite", {"user_id": bob.user_id})
    assert r.status_code == 200, r.text
    await bob.sync_until(lambda b: room_id in b.get("rooms", {}).get("invite", {}), "the second invite")
    r = await bob.post(f"/rooms/{quote(room_id)}/join")
    assert r.status_code == 200, r.text
    await alice.sync_until(timeline_has(room_id, member_event(bob.user_id, "join")), "bob's rejoin")
    r = await alice.http.put(f"{V3}/rooms/{quote(room_id)}/send/m.room.message/t3", headers=alice.headers,
                             json={"msgtype": "m.text", "body": "welcome back"})
    assert r.status_code == 200, r.text
    await bob.sync_until(timeline_has(room_id, message("welcome back")), "a message after the rejoin")


async def test_a_rejected_invite_reaches_the_inviting_server(servers: tuple[Server, Server], users: Any) -> None:
    first, second = servers
    alice = await users(first, "alice_r")
    carol = await users(second, "carol_r")
    r = await alice.post("/createRoom", {"preset": "private_chat"})
    room_id = r.json()["room_id"]
    await carol.sync_until(lambda b: True, "an initial sync")
    await alice.sync_until(joined_events(room_id), "the new room")
    r = await alice.post(f"/rooms/{quote(room_id)}/invite", {"user_id": carol.user_id})
    assert r.status_code == 200, r.text
    await carol.sync_until(lambda b: room_id in b.get("rooms", {}).get("invite", {}), "the invite")

    r = await carol.post(f"/rooms/{quote(room_id)}/leave", {"reason": "no thanks"})
    assert r.status_code == 200, r.text
    await alice.sync_until(timeline_has(room_id, member_event(carol.user_id, "leave")), "carol's rejection")
    await carol.sync_until(lambda b: room_id in b.get("rooms", {}).get("leave", {}), "the rejected invite")
    r = await carol.get(f"/rooms/{quote(room_id)}/state/m.room.member/{quote(carol.user_id)}")
    assert r.status_code in (403, 404), r.text


async def test_join_a_public_room_by_id_with_via_and_by_alias(servers: tuple[Server, Server], users: Any) -> None:
    first, second = servers
    alice = await users(first, "alice_p")
    dave = await users(second, "dave_p")
    erin = await users(second, "erin_p")
    r = await alice.post("/createRoom", {"preset": "public_chat", "name": "Lobby", "room_alias_name": "lobby_p"})
    assert r.status_code == 200, r.text
    room_id = r.json()["room_id"]

    # Without a server to ask, a room this server does not know cannot be joined.
    r = await dave.post(f"/join/{quote(room_id)}")
    assert r.status_code == 404, r.text
    assert r.json()["errcode"] == "M_NOT_FOUND"
    # A server that is not in the room answers 404 and the next one is tried.
    r = await dave.post(f"/join/{quote(room_id)}", via=["localhost:1", first.name])
    assert r.status_code == 200, r.text
    assert r.json()["room_id"] == room_id
    events = await dave.sync_until(joined_events(room_id), "the public room")
    assert any(e["type"] == "m.room.name" and e["content"].get("name") == "Lobby" for e in events)
    await alice.sync_until(timeline_has(room_id, member_event(dave.user_id, "join")), "dave's join")

    # Second's server is in the room now: erin joins locally, by the remote alias.
    r = await erin.post(f"/join/{quote('#lobby_p:' + first.name)}")
    assert r.status_code == 200, r.text
    assert r.json()["room_id"] == room_id
    await alice.sync_until(timeline_has(room_id, member_event(erin.user_id, "join")), "erin's join")


async def test_join_by_remote_alias_and_knock(servers: tuple[Server, Server], users: Any) -> None:
    first, second = servers
    alice = await users(first, "alice_k")
    frank = await users(second, "frank_k")
    r = await alice.post("/createRoom", {"preset": "public_chat", "room_alias_name": "hall_k"})
    hall = r.json()["room_id"]
    r = await frank.post(f"/join/{quote('#hall_k:' + first.name)}")
    assert r.status_code == 200, r.text
    assert r.json()["room_id"] == hall
    await alice.sync_until(timeline_has(hall, member_event(frank.user_id, "join")), "frank's join by alias")

    r = await alice.post("/createRoom", {"room_version": "10", "initial_state": [
        {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}]})
    assert r.status_code == 200, r.text
    knock_room = r.json()["room_id"]
    r = await frank.post(f"/knock/{quote(knock_room)}", {"reason": "let me in"}, via=[first.name])
    assert r.status_code == 200, r.text
    await alice.sync_until(timeline_has(knock_room, member_event(frank.user_id, "knock")), "frank's knock")
    # Frank's server is not in the room: his /sync shows it under knock with the state the room's server sent.
    knocked = await frank.sync_until(lambda b: b["rooms"]["knock"].get(knock_room), "the knock in frank's /sync")
    shown = knocked["knock_state"]["events"]
    assert any(e["type"] == "m.room.join_rules" and e["content"]["join_rule"] == "knock" for e in shown)
    assert any(member_event(frank.user_id, "knock")(e) for e in shown)
    # Accepted with an invite, then joined.
    r = await alice.post(f"/rooms/{quote(knock_room)}/invite", {"user_id": frank.user_id})
    assert r.status_code == 200, r.text
    r = await frank.post(f"/rooms/{quote(knock_room)}/join")
    assert r.status_code == 200, r.text
    await alice.sync_until(timeline_has(knock_room, member_event(frank.user_id, "join")), "frank's join")


async def test_the_resident_sends_a_newcomers_join_to_the_rooms_other_servers(
        servers: tuple[Server, Server], users: Any, tmp_path: Path) -> None:
    first, second = servers
    third_hs, third_name, _ = start_federating(tmp_path / "c")
    third = Server(third_hs, third_name)
    try:
        alice = await users(first, "alice_t")
        bob = await users(second, "bob_t")
        carol = await users(third, "carol_t")
        r = await alice.post("/createRoom", {"preset": "public_chat", "room_version": "12"})
        room_id = r.json()["room_id"]
        r = await bob.post(f"/join/{quote(room_id)}", via=first.name)
        assert r.status_code == 200, r.text
        await bob.sync_until(joined_events(room_id), "the room")
        # Carol joins through the first server too: it sends her join on to the second.
        r = await carol.post(f"/join/{quote(room_id)}", via=first.name)
        assert r.status_code == 200, r.text
        await bob.sync_until(timeline_has(room_id, member_event(carol.user_id, "join")), "carol's join")
        r = await carol.http.put(f"{V3}/rooms/{quote(room_id)}/send/m.room.message/t1", headers=carol.headers,
                                 json={"msgtype": "m.text", "body": "hello from the third server"})
        assert r.status_code == 200, r.text
        await bob.sync_until(timeline_has(room_id, message("hello from the third server")), "carol's message")
    finally:
        third_hs.stop()
