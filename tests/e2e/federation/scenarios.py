"""The interop scenarios, each written once for a ``home`` server (where the
room or the data lives) and an ``away`` server (whose user reaches it over
federation). The test modules run each with both pairings and in both
directions, so every scenario is checked Myelin->Myelin, Myelin->Synapse and
Synapse->Myelin."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx

from tests.e2e.federation.harness import PASSWORD, V3, Peer, SyncView, User, register_user

BACKFILL_MESSAGES = 100
BURST = 6


@contextlib.asynccontextmanager
async def users(home: Peer, away: Peer) -> AsyncIterator[tuple[User, User]]:
    """alice on the home server, bob on the away server."""
    alice = await register_user(home, "alice")
    bob = await register_user(away, "bob")
    try:
        yield alice, bob
    finally:
        await alice.close()
        await bob.close()


def joined(room_id: str, user_id: str) -> Any:
    return lambda view: view.membership_of(room_id, user_id) == "join"


async def share_room(alice: User, bob: User, room_version: str | None = None, **create: Any) -> str:
    """alice creates a room on her server, invites bob, bob joins from his;
    both have seen bob's join when it returns."""
    if room_version:
        create["room_version"] = room_version
    room_id = await alice.create_room(preset="private_chat", **create)
    await bob.sync_once(timeout_ms=0)
    await alice.invite(room_id, bob.user_id)
    await bob.sync_until(lambda view: room_id in view.invites, f"the invite to {room_id}")
    # A client joins an invited room by its ID alone (v12 IDs name no server).
    assert await bob.join(room_id) == room_id
    await alice.sync_until(joined(room_id, bob.user_id), f"{bob.user_id} join")
    await bob.sync_until(lambda view: room_id in view.timeline, f"{room_id} in his joined rooms")
    return room_id


# -- invite and join ---------------------------------------------------------------


async def invite_and_join(home: Peer, away: Peer, room_version: str) -> None:
    async with users(home, away) as (alice, bob):
        room_id = await alice.create_room(preset="private_chat", name="Interop", room_version=room_version)
        await alice.invite(room_id, bob.user_id)
        view = await bob.sync_until(lambda view: room_id in view.invites, "the invite")
        stripped = {(e["type"], e.get("state_key")): e for e in view.invites[room_id]}
        assert stripped[("m.room.member", bob.user_id)]["content"]["membership"] == "invite"
        assert stripped[("m.room.member", bob.user_id)]["sender"] == alice.user_id
        assert stripped[("m.room.name", "")]["content"]["name"] == "Interop"

        assert await bob.join(room_id) == room_id
        await alice.sync_until(joined(room_id, bob.user_id), "bob's join")
        await bob.sync_until(lambda view: room_id in view.timeline, "the joined room")
        for user in (alice, bob):
            assert await user.joined_members(room_id) == {alice.user_id, bob.user_id}
            create = (await user.get_state(room_id, "m.room.create")).json()
            assert create.get("room_version", "1") == room_version
        joined_rooms = await bob.ok("GET", f"{V3}/joined_rooms")
        assert room_id in joined_rooms["joined_rooms"]


# -- messages in order ---------------------------------------------------------------


async def messages_in_order(home: Peer, away: Peer, room_version: str) -> None:
    """Bursts from each side in turn; both servers' timelines (in /sync and
    in /messages) hold every message once, in the same order."""
    async with users(home, away) as (alice, bob):
        room_id = await share_room(alice, bob, room_version)
        expected: list[str] = []
        for round_number in range(2):
            for sender, receiver in ((alice, bob), (bob, alice)):
                burst = [f"{sender.peer.kind}-{round_number}-{i}" for i in range(BURST)]
                for text in burst:
                    await sender.send_text(room_id, text)
                expected.extend(burst)
                await receiver.sync_until(lambda view: view.bodies(room_id)[-1:] == expected[-1:],
                                          f"the burst ending {burst[-1]}")
        for user in (alice, bob):
            await user.sync_until(lambda view: len(view.messages(room_id)) >= len(expected), "every message")
            assert user.view.bodies(room_id) == expected, f"{user.peer.kind}'s /sync order"
            paginated = [e["content"]["body"] for e in reversed(await user.room_messages(room_id))
                         if e["type"] == "m.room.message"]
            assert paginated == expected, f"{user.peer.kind}'s /messages order"
        # Same event IDs on both sides.
        assert [e["event_id"] for e in alice.view.messages(room_id)] == \
            [e["event_id"] for e in bob.view.messages(room_id)]


# -- state changes ---------------------------------------------------------------


async def state_changes(home: Peer, away: Peer, room_version: str) -> None:
    """Name and power levels set on one side are current state on the other;
    once promoted, the remote user's own state change comes back."""
    async with users(home, away) as (alice, bob):
        room_id = await share_room(alice, bob, room_version)
        # Not yet allowed: private_chat needs power 50 for the name.
        refused = await bob.request("PUT", f"{V3}/rooms/{quote(room_id)}/state/m.room.name/",
                                    {"name": "too early"})
        assert refused.status_code == 403, refused.text

        await alice.put_state(room_id, "m.room.name", {"name": "Renamed at home"})
        await bob.sync_until(lambda view: any(e["type"] == "m.room.name" for e in view.timeline[room_id]),
                             "the new name")
        assert (await bob.get_state(room_id, "m.room.name")).json() == {"name": "Renamed at home"}

        levels = (await alice.get_state(room_id, "m.room.power_levels")).json()
        levels["users"][bob.user_id] = 50
        pl_event_id = await alice.put_state(room_id, "m.room.power_levels", levels)
        await bob.sync_until(lambda view: any(e["event_id"] == pl_event_id for e in view.timeline[room_id]),
                             "his promotion")
        assert (await bob.get_state(room_id, "m.room.power_levels")).json()["users"][bob.user_id] == 50

        topic_event_id = await bob.put_state(room_id, "m.room.topic", {"topic": "set from away"})
        await bob.put_state(room_id, "m.room.name", {"name": "Renamed away"})
        await alice.sync_until(lambda view: any(e["event_id"] == topic_event_id
                                                for e in view.timeline.get(room_id, [])), "bob's topic")
        await alice.sync_until(lambda view: any(e["type"] == "m.room.name" and e["sender"] == bob.user_id
                                                for e in view.timeline[room_id]), "bob's name")
        for user in (alice, bob):
            assert (await user.get_state(room_id, "m.room.name")).json() == {"name": "Renamed away"}
            assert (await user.get_state(room_id, "m.room.topic")).json() == {"topic": "set from away"}
            response = await user.request("GET", f"{V3}/rooms/{quote(room_id)}/state")
            assert response.status_code == 200, response.text
            state: list[dict[str, Any]] = response.json()
            assert {(e["type"], e["state_key"]) for e in state} >= {
                ("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", alice.user_id),
                ("m.room.member", bob.user_id), ("m.room.name", ""), ("m.room.topic", "")}


# -- leave and rejoin ---------------------------------------------------------------


async def leave_and_rejoin(home: Peer, away: Peer, room_version: str) -> None:
    async with users(home, away) as (alice, bob):
        room_id = await alice.create_room(preset="public_chat", room_version=room_version)
        await bob.join(room_id, via=[home.server_name])
        await alice.sync_until(joined(room_id, bob.user_id), "bob's join")
        await bob.send_text(room_id, "hello, then goodbye")
        await alice.sync_until(lambda view: "hello, then goodbye" in view.bodies(room_id), "bob's hello")

        await bob.leave(room_id)
        await alice.sync_until(lambda view: view.membership_of(room_id, bob.user_id) == "leave", "bob's leave")
        assert await alice.joined_members(room_id) == {alice.user_id}
        await bob.sync_until(lambda view: room_id in view.left, "the room among his left rooms")
        refused = await bob.request("PUT", f"{V3}/rooms/{quote(room_id)}/send/m.room.message/late",
                                    {"msgtype": "m.text", "body": "not a member"})
        assert refused.status_code == 403, refused.text
        await alice.send_text(room_id, "while bob was away")

        assert await bob.join(room_id, via=[home.server_name]) == room_id
        await alice.sync_until(lambda view: view.membership_of(room_id, bob.user_id) == "join", "bob's rejoin")
        await bob.send_text(room_id, "back again")
        await alice.sync_until(lambda view: "back again" in view.bodies(room_id), "bob's message after rejoin")
        await alice.send_text(room_id, "welcome back")
        await bob.sync_until(lambda view: "welcome back" in view.bodies(room_id), "alice's welcome")
        for user in (alice, bob):
            assert await user.joined_members(room_id) == {alice.user_id, bob.user_id}


# -- joining a public room by alias -----------------------------------------------------


async def join_by_alias(home: Peer, away: Peer, room_version: str) -> None:
    async with users(home, away) as (alice, bob):
        alias_name = f"lobby{alice.user_id[1:9]}"
        room_id = await alice.create_room(preset="public_chat", visibility="public", name="Public lobby",
                                          room_alias_name=alias_name, room_version=room_version)
        alias = f"#{alias_name}:{home.server_name}"
        resolved = await bob.ok("GET", f"{V3}/directory/room/{quote(alias)}")
        assert resolved["room_id"] == room_id and home.server_name in resolved["servers"]
        assert await bob.join(alias) == room_id
        await alice.sync_until(joined(room_id, bob.user_id), "bob's join by alias")
        await bob.send_text(room_id, "found it by its alias")
        await alice.sync_until(lambda view: "found it by its alias" in view.bodies(room_id), "bob's message")
        assert (await bob.get_state(room_id, "m.room.name")).json() == {"name": "Public lobby"}


# -- remote profile lookup -------------------------------------------------------------


async def remote_profile(home: Peer, away: Peer) -> None:
    async with users(home, away) as (alice, bob):
        await alice.ok("PUT", f"{V3}/profile/{quote(alice.user_id)}/displayname",
                       {"displayname": f"Alice of {home.kind}"})
        profile = await bob.ok("GET", f"{V3}/profile/{quote(alice.user_id)}")
        assert profile["displayname"] == f"Alice of {home.kind}"
        name = await bob.ok("GET", f"{V3}/profile/{quote(alice.user_id)}/displayname")
        assert name == {"displayname": f"Alice of {home.kind}"}
        missing = await bob.request("GET", f"{V3}/profile/{quote('@nobody-here:' + home.server_name)}")
        assert missing.status_code == 404, missing.text


# -- typing and receipts ------------------------------------------------------------------


def _typing(view: SyncView, room_id: str) -> list[str] | None:
    """The user IDs of the last m.typing seen in the room, if any."""
    typing = [e for e in view.ephemeral.get(room_id, []) if e["type"] == "m.typing"]
    return typing[-1]["content"]["user_ids"] if typing else None


def _read_by(view: SyncView, room_id: str, event_id: str) -> set[str]:
    readers: set[str] = set()
    for event in view.ephemeral.get(room_id, []):
        if event["type"] == "m.receipt":
            readers.update(event["content"].get(event_id, {}).get("m.read", {}))
    return readers


async def typing_and_receipts(home: Peer, away: Peer) -> None:
    async with users(home, away) as (alice, bob):
        room_id = await share_room(alice, bob)
        await alice.ok("PUT", f"{V3}/rooms/{quote(room_id)}/typing/{quote(alice.user_id)}",
                       {"typing": True, "timeout": 30000})
        await bob.sync_until(lambda view: alice.user_id in (_typing(view, room_id) or []), "alice typing")
        await alice.ok("PUT", f"{V3}/rooms/{quote(room_id)}/typing/{quote(alice.user_id)}", {"typing": False})
        await bob.sync_until(lambda view: alice.user_id not in (_typing(view, room_id) or []),
                             "alice stop typing")

        event_id = await alice.send_text(room_id, "read me")
        await bob.sync_until(lambda view: "read me" in view.bodies(room_id), "alice's message")
        await bob.ok("POST", f"{V3}/rooms/{quote(room_id)}/receipt/m.read/{quote(event_id)}", {})
        await alice.sync_until(lambda view: bob.user_id in _read_by(view, room_id, event_id), "bob's receipt")

        reply_id = await bob.send_text(room_id, "and you read mine")
        await alice.sync_until(lambda view: "and you read mine" in view.bodies(room_id), "bob's reply")
        await alice.ok("POST", f"{V3}/rooms/{quote(room_id)}/receipt/m.read/{quote(reply_id)}", {})
        await bob.sync_until(lambda view: alice.user_id in _read_by(view, room_id, reply_id), "alice's receipt")


# -- to-device ---------------------------------------------------------------------------


async def to_device_message(home: Peer, away: Peer) -> None:
    async with users(home, away) as (alice, bob):
        content = {"note": f"from {home.kind}", "nonce": os.urandom(6).hex()}
        await alice.ok("PUT", f"{V3}/sendToDevice/m.interop.test/txn{content['nonce']}",
                       {"messages": {bob.user_id: {bob.device_id: content}}})
        view = await bob.sync_until(lambda view: any(m["type"] == "m.interop.test" for m in view.to_device),
                                    "the to-device message")
        [message] = [m for m in view.to_device if m["type"] == "m.interop.test"]
        assert message["sender"] == alice.user_id
        assert message["content"] == content
        # Delivered once: the next sync does not repeat it.
        assert len([m for m in bob.view.to_device if m["type"] == "m.interop.test"]) == 1


# -- remote key query --------------------------------------------------------------------


def _device_keys(user: User) -> dict[str, Any]:
    """Device keys as a client uploads them (the servers keep them as given;
    the signature is only checked by other clients)."""
    curve, ed = os.urandom(32).hex()[:43], os.urandom(32).hex()[:43]
    return {
        "user_id": user.user_id, "device_id": user.device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {f"curve25519:{user.device_id}": curve, f"ed25519:{user.device_id}": ed},
        "signatures": {user.user_id: {f"ed25519:{user.device_id}": os.urandom(32).hex()}},
    }


async def remote_key_query(home: Peer, away: Peer) -> None:
    """bob's device keys and a one-time key live on the away server; alice
    queries and claims them through hers."""
    async with users(home, away) as (alice, bob):
        device_keys = _device_keys(bob)
        one_time = {f"signed_curve25519:AAAA{os.urandom(2).hex()}": {
            "key": os.urandom(16).hex(), "signatures": {bob.user_id: {f"ed25519:{bob.device_id}": "sig"}}}}
        uploaded = await bob.ok("POST", f"{V3}/keys/upload", {"device_keys": device_keys, "one_time_keys": one_time})
        assert uploaded["one_time_key_counts"].get("signed_curve25519") == 1

        answer = await alice.ok("POST", f"{V3}/keys/query", {"device_keys": {bob.user_id: []}})
        assert answer.get("failures", {}) == {}, answer
        got = answer["device_keys"][bob.user_id][bob.device_id]
        assert {k: got[k] for k in ("user_id", "device_id", "algorithms", "keys")} == \
            {k: device_keys[k] for k in ("user_id", "device_id", "algorithms", "keys")}
        assert got["signatures"][bob.user_id] == device_keys["signatures"][bob.user_id]

        claimed = await alice.ok("POST", f"{V3}/keys/claim",
                                 {"one_time_keys": {bob.user_id: {bob.device_id: "signed_curve25519"}}})
        assert claimed.get("failures", {}) == {}, claimed
        assert claimed["one_time_keys"][bob.user_id][bob.device_id] == one_time


# -- backfill ------------------------------------------------------------------------------


async def backfill_history(home: Peer, away: Peer, room_version: str) -> None:
    """A newcomer from another server pages back through 100 messages sent
    before he joined: every one, in the home server's order, none twice,
    down to the creation. They are sent one after the other: sent all at
    once, the home server forks the DAG into as many forward extremities,
    the join references at most a few of them, and the rest are not in the
    join's history at all (so no backfill can find them)."""
    async with users(home, away) as (alice, bob):
        room_id = await alice.create_room(preset="public_chat", room_version=room_version)
        texts = [f"history {i}" for i in range(BACKFILL_MESSAGES)]
        for text in texts:
            await alice.send_text(room_id, text)
        # The order to find is the home server's, once its readers have all.
        await alice.sync_until(lambda view: len(view.messages(room_id)) >= len(texts), "her own messages")
        sent = [e["content"]["body"] for e in reversed(await alice.room_messages(room_id, limit=50))
                if e["type"] == "m.room.message"]
        assert sorted(sent) == sorted(texts)
        await bob.join(room_id, via=[home.server_name])
        await alice.sync_until(joined(room_id, bob.user_id), "bob's join")
        # As a client does, page back from what /sync gave (the sync API
        # follows the room server's output; before it has bob's join it
        # answers /messages with 403).
        await bob.sync_until(lambda view: room_id in view.timeline, "the joined room")
        events = await bob.room_messages(room_id, limit=25)
        ids = [e["event_id"] for e in events]
        assert len(ids) == len(set(ids)), "an event came twice"
        bodies = [e["content"].get("body") for e in reversed(events) if e["type"] == "m.room.message"]
        missing = [text for text in sent if text not in bodies]
        assert bodies == sent, f"{len(bodies)} of {len(sent)} messages, missing {missing[:5]}..., got {bodies[:3]}"
        assert events[-1]["type"] == "m.room.create", [e["type"] for e in events[-3:]]


# -- remote media ------------------------------------------------------------------------------


async def remote_media(home: Peer, away: Peer) -> None:
    async with users(home, away) as (alice, bob):
        payload = os.urandom(3000) + b"interop media"
        response = await alice.http.post("/_matrix/media/v3/upload", content=payload,
                                         params={"filename": "blob.bin"},
                                         headers={"Content-Type": "application/octet-stream"})
        assert response.status_code == 200, response.text
        mxc = response.json()["content_uri"]
        server, media_id = mxc.removeprefix("mxc://").split("/", 1)
        assert server == home.server_name
        download = await bob.http.get(f"/_matrix/client/v1/media/download/{server}/{media_id}")
        assert download.status_code == 200, download.text
        assert download.content == payload
        assert download.headers["content-type"].startswith("application/octet-stream")
        # Cached or fetched again, the second answer is the same.
        again = await bob.http.get(f"/_matrix/client/v1/media/download/{server}/{media_id}/blob.bin")
        assert again.status_code == 200 and again.content == payload
        missing = await bob.http.get(f"/_matrix/client/v1/media/download/{server}/doesNotExist{media_id}")
        assert missing.status_code == 404, missing.text



# -- beyond the list: more that crosses servers ----------------------------------------


async def large_concurrent_burst(home: Peer, away: Peer) -> None:
    """120 messages sent at once on the home server (more than one 50-PDU
    transaction) all arrive on the away server, each once, in /sync and in
    /messages. (Sent concurrently they may fork the DAG, so their order is
    not compared: messages_in_order does that for a line.)"""
    async with users(home, away) as (alice, bob):
        room_id = await share_room(alice, bob)
        texts = [f"burst {i}" for i in range(120)]
        event_ids = await asyncio.gather(*(alice.send_text(room_id, text) for text in texts))
        await bob.sync_until(lambda view: len(view.messages(room_id)) >= len(texts), "the whole burst")
        synced = [e["event_id"] for e in bob.view.messages(room_id)]
        assert sorted(synced) == sorted(event_ids), "a message missing or twice in /sync"
        paginated = [e["event_id"] for e in await bob.room_messages(room_id, limit=50)
                     if e["type"] == "m.room.message"]
        assert sorted(paginated) == sorted(event_ids), "a message missing or twice in /messages"


async def concurrent_state_converges(home: Peer, away: Peer) -> None:
    """Both admins rename the room at the same moment from their own
    servers (a fork); once each has the other's event, both servers hold the
    same current name and both see every message sent meanwhile."""
    async with users(home, away) as (alice, bob):
        room_id = await share_room(alice, bob)
        levels = (await alice.get_state(room_id, "m.room.power_levels")).json()
        levels["users"][bob.user_id] = 100
        pl_event_id = await alice.put_state(room_id, "m.room.power_levels", levels)
        await bob.sync_until(lambda view: any(e["event_id"] == pl_event_id for e in view.timeline[room_id]),
                             "his promotion")
        names = await asyncio.gather(
            alice.put_state(room_id, "m.room.name", {"name": "alice's name"}),
            bob.put_state(room_id, "m.room.name", {"name": "bob's name"}),
            alice.send_text(room_id, "alice during the fork"),
            bob.send_text(room_id, "bob during the fork"))
        for user in (alice, bob):
            await user.sync_until(lambda view: {e["event_id"] for e in view.timeline[room_id]} >= set(names),
                                  "both sides' events")
        # Joining the fork: one more message each, then compare.
        await alice.send_text(room_id, "after the fork (alice)")
        await bob.send_text(room_id, "after the fork (bob)")
        for user in (alice, bob):
            await user.sync_until(lambda view: {"after the fork (alice)", "after the fork (bob)"}
                                  <= set(view.bodies(room_id)), "the messages after the fork")
        home_name = (await alice.get_state(room_id, "m.room.name")).json()
        away_name = (await bob.get_state(room_id, "m.room.name")).json()
        assert home_name == away_name, (home_name, away_name)
        assert home_name["name"] in ("alice's name", "bob's name")


async def redaction_crosses(home: Peer, away: Peer) -> None:
    async with users(home, away) as (alice, bob):
        room_id = await share_room(alice, bob)
        event_id = await alice.send_text(room_id, "regrettable")
        await bob.sync_until(lambda view: "regrettable" in view.bodies(room_id), "the message")
        await alice.ok("PUT", f"{V3}/rooms/{quote(room_id)}/redact/{quote(event_id)}/r1", {"reason": "oops"})
        await bob.sync_until(lambda view: any(e["type"] == "m.room.redaction" for e in view.timeline[room_id]),
                             "the redaction")
        seen = await bob.ok("GET", f"{V3}/rooms/{quote(room_id)}/event/{quote(event_id)}")
        assert seen["content"] == {}, seen
        assert seen["unsigned"]["redacted_because"]["sender"] == alice.user_id
        paginated = {e["event_id"]: e for e in await bob.room_messages(room_id)}
        assert paginated[event_id]["content"] == {}


async def ban_crosses(home: Peer, away: Peer) -> None:
    """A remote member banned at home is out on his server too and cannot
    come back, even though the room is public."""
    async with users(home, away) as (alice, bob):
        room_id = await alice.create_room(preset="public_chat")
        await bob.join(room_id, via=[home.server_name])
        await alice.sync_until(joined(room_id, bob.user_id), "bob's join")
        await alice.ok("POST", f"{V3}/rooms/{quote(room_id)}/ban", {"user_id": bob.user_id, "reason": "spam"})
        await bob.sync_until(lambda view: room_id in view.left, "the room among his left rooms")
        refused = await bob.request("POST", f"{V3}/join/{quote(room_id)}?server_name={quote(home.server_name)}",
                                    {})
        assert refused.status_code == 403, refused.text
        assert await alice.joined_members(room_id) == {alice.user_id}


async def device_list_update(home: Peer, away: Peer) -> None:
    """bob, sharing a room with alice, logs in a second device and uploads
    its keys: alice's /sync says his devices changed and her key query finds
    the new device."""
    async with users(home, away) as (alice, bob):
        room_id = await share_room(alice, bob)
        await bob.ok("POST", f"{V3}/keys/upload", {"device_keys": _device_keys(bob)})
        first = await alice.ok("POST", f"{V3}/keys/query", {"device_keys": {bob.user_id: []}})
        assert bob.device_id in first["device_keys"][bob.user_id]
        alice.view.device_lists_changed.clear()
        await alice.sync_once(timeout_ms=0)
        alice.view.device_lists_changed.clear()

        async with httpx.AsyncClient(base_url=away.client_url, timeout=60) as http:
            r = await http.post(f"{V3}/login", json={
                "type": "m.login.password", "identifier": {"type": "m.id.user", "user": bob.user_id},
                "password": PASSWORD, "device_id": "SECONDDEV"})
            assert r.status_code == 200, r.text
            second = r.json()
            keys = _device_keys(bob)
            keys["device_id"] = "SECONDDEV"
            keys["keys"] = {f"{k.split(':')[0]}:SECONDDEV": v for k, v in keys["keys"].items()}
            r = await http.post(f"{V3}/keys/upload", json={"device_keys": keys},
                                headers={"Authorization": f"Bearer {second['access_token']}"})
            assert r.status_code == 200, r.text
        await alice.sync_until(lambda view: bob.user_id in view.device_lists_changed, "bob's device change")
        # The login and the key upload are two updates; the first may be the
        # change /sync reported, so look until the keys are there.
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            answer = await alice.ok("POST", f"{V3}/keys/query", {"device_keys": {bob.user_id: []}})
            if set(answer["device_keys"][bob.user_id]) == {bob.device_id, "SECONDDEV"}:
                break
            assert asyncio.get_running_loop().time() < deadline, answer
            await asyncio.sleep(0.5)
        assert room_id


async def public_room_directory(home: Peer, away: Peer) -> None:
    async with users(home, away) as (alice, bob):
        topic = f"topic {os.urandom(4).hex()}"
        room_id = await alice.create_room(preset="public_chat", visibility="public", name="Listed", topic=topic)
        listed = await bob.ok("POST", f"{V3}/publicRooms", {"filter": {"generic_search_term": topic}},
                              params={"server": home.server_name})
        assert [(c["room_id"], c.get("name"), c.get("topic")) for c in listed["chunk"]] == \
            [(room_id, "Listed", topic)], listed


async def remote_thumbnail(home: Peer, away: Peer) -> None:
    import io

    from PIL import Image

    async with users(home, away) as (alice, bob):
        buffer = io.BytesIO()
        Image.new("RGB", (640, 480), (200, 30, 30)).save(buffer, format="PNG")
        response = await alice.http.post("/_matrix/media/v3/upload", content=buffer.getvalue(),
                                         headers={"Content-Type": "image/png"})
        assert response.status_code == 200, response.text
        server, media_id = response.json()["content_uri"].removeprefix("mxc://").split("/", 1)
        thumb = await bob.http.get(f"/_matrix/client/v1/media/thumbnail/{server}/{media_id}",
                                   params={"width": "64", "height": "64", "method": "scale"})
        assert thumb.status_code == 200, thumb.text
        assert thumb.headers["content-type"].startswith("image/")
        image = Image.open(io.BytesIO(thumb.content))
        assert max(image.size) <= 640 and image.size[0] >= 32, image.size


async def reject_invite(home: Peer, away: Peer) -> None:
    async with users(home, away) as (alice, bob):
        room_id = await alice.create_room(preset="private_chat")
        await alice.invite(room_id, bob.user_id)
        await bob.sync_until(lambda view: room_id in view.invites, "the invite")
        await bob.ok("POST", f"{V3}/rooms/{quote(room_id)}/leave", {})
        await alice.sync_until(lambda view: view.membership_of(room_id, bob.user_id) == "leave",
                               "bob's rejection")
        await bob.sync_until(lambda view: room_id not in view.invites, "the invite gone")


async def knock_accepted(home: Peer, away: Peer) -> None:
    """bob knocks on alice's knock-only room from his server; alice sees the
    knock and invites him; he joins."""
    async with users(home, away) as (alice, bob):
        room_id = await alice.create_room(preset="private_chat", room_version="10",
                                          initial_state=[{"type": "m.room.join_rules", "state_key": "",
                                                          "content": {"join_rule": "knock"}}])
        knocked = await bob.http.post(f"{V3}/knock/{quote(room_id)}", json={"reason": "let me in"},
                                      params={"server_name": home.server_name})
        assert knocked.status_code == 200, knocked.text
        await alice.sync_until(lambda view: view.membership_of(room_id, bob.user_id) == "knock", "bob's knock")
        await alice.invite(room_id, bob.user_id)
        await bob.sync_until(lambda view: room_id in view.invites, "the invite after his knock")
        assert await bob.join(room_id) == room_id
        await alice.sync_until(joined(room_id, bob.user_id), "bob's join")


async def restricted_join(home: Peer, away: Peer) -> None:
    """A room restricted to members of another room: bob, a member of that
    room, joins it from his server (the home server authorises the join)."""
    async with users(home, away) as (alice, bob):
        space_id = await alice.create_room(preset="public_chat", room_version="10")
        await bob.join(space_id, via=[home.server_name])
        await alice.sync_until(joined(space_id, bob.user_id), "bob in the parent room")
        room_id = await alice.create_room(preset="private_chat", room_version="10", initial_state=[{
            "type": "m.room.join_rules", "state_key": "",
            "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space_id}]}}])
        assert await bob.join(room_id, via=[home.server_name]) == room_id
        await alice.sync_until(joined(room_id, bob.user_id), "bob's restricted join")
        member = (await alice.get_state(room_id, "m.room.member", bob.user_id)).json()
        assert member["membership"] == "join"
        assert member.get("join_authorised_via_users_server") == alice.user_id


async def upgrade_followed(home: Peer, away: Peer) -> None:
    """alice upgrades a public v10 room to v12; bob on the other server sees
    the tombstone and follows it into the new room (public too: the join
    rules are copied)."""
    async with users(home, away) as (alice, bob):
        old_id = await alice.create_room(preset="public_chat", room_version="10")
        await bob.join(old_id, via=[home.server_name])
        await alice.sync_until(joined(old_id, bob.user_id), "bob's join")
        await bob.sync_until(lambda view: old_id in view.timeline, "the joined room")
        upgraded = await alice.ok("POST", f"{V3}/rooms/{quote(old_id)}/upgrade", {"new_version": "12"})
        new_id = upgraded["replacement_room"]
        await bob.sync_until(lambda view: any(e["type"] == "m.room.tombstone" for e in view.timeline[old_id]),
                             "the tombstone")
        assert (await bob.get_state(old_id, "m.room.tombstone")).json()["replacement_room"] == new_id
        assert await bob.join(new_id, via=[home.server_name]) == new_id
        await alice.sync_until(joined(new_id, bob.user_id), "bob in the new room")
        create = (await bob.get_state(new_id, "m.room.create")).json()
        assert create["room_version"] == "12" and create["predecessor"]["room_id"] == old_id


async def edits_and_threads(home: Peer, away: Peer) -> None:
    """An edit and a thread reply sent from the away server are related to
    the home server's message on both servers."""
    async with users(home, away) as (alice, bob):
        room_id = await share_room(alice, bob)
        root = await alice.send_text(room_id, "root message")
        await bob.sync_until(lambda view: "root message" in view.bodies(room_id), "the root")
        reply = await bob.nio.room_send(room_id, "m.room.message", {
            "msgtype": "m.text", "body": "in thread",
            "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
        assert hasattr(reply, "event_id"), reply
        edit_of_own = await bob.nio.room_send(room_id, "m.room.message", {
            "msgtype": "m.text", "body": "* in thread (edited)",
            "m.new_content": {"msgtype": "m.text", "body": "in thread (edited)"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": reply.event_id}})
        assert hasattr(edit_of_own, "event_id"), edit_of_own
        await alice.sync_until(lambda view: "* in thread (edited)" in view.bodies(room_id), "bob's edit")
        for user in (alice, bob):
            related = await user.ok("GET", f"{V3}/rooms/{quote(room_id)}/relations/{quote(root)}/m.thread".replace(
                V3, "/_matrix/client/v1"))
            assert [e["event_id"] for e in related["chunk"]] == [reply.event_id], (user.peer.kind, related)
            original = await user.ok("GET", f"{V3}/rooms/{quote(room_id)}/event/{quote(reply.event_id)}")
            replace = original.get("unsigned", {}).get("m.relations", {}).get("m.replace", {})
            assert replace.get("event_id") == edit_of_own.event_id, (user.peer.kind, original)


async def presence_crosses(home: Peer, away: Peer) -> None:
    """alice's presence and status message reach bob's server (they share a
    room), in his /sync and in GET /presence."""
    async with users(home, away) as (alice, bob):
        await share_room(alice, bob)
        status = f"busy {os.urandom(3).hex()}"
        await alice.ok("PUT", f"{V3}/presence/{quote(alice.user_id)}/status",
                       {"presence": "online", "status_msg": status})
        presence: list[dict[str, Any]] = []

        def has_status() -> bool:
            return any(e["sender"] == alice.user_id and e["content"].get("status_msg") == status for e in presence)

        deadline = asyncio.get_running_loop().time() + 30
        while not has_status():
            assert asyncio.get_running_loop().time() < deadline, f"no presence for alice in {presence}"
            presence.extend((await bob.sync_once()).get("presence", {}).get("events", []))
        answer = await bob.ok("GET", f"{V3}/presence/{quote(alice.user_id)}/status")
        assert answer["presence"] == "online" and answer["status_msg"] == status, answer
