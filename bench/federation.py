"""The federation workloads, against a fake remote homeserver run by the
benchmark itself (TLS on loopback, its own signing key, its key served at
/_matrix/key/v2/server), the same for every server under test:

- ``fed-send``: the fake's user joins a room of the server under test over
  make_join/send_join; then the fake sends its messages in transactions of
  50 PDUs (PUT /send), one transaction after another, and the figure is the
  PDUs per second from the first transaction to the last message's arrival
  in a local member's /sync, counting only the PDUs that reached it (also
  shown on their own). Like a real server, the fake answers
  get_missing_events, /event, and /state_ids and /state at the events it
  sent: a receiver that drops part of a long queue of received PDUs (Synapse
  keeps at most ~100 a room) fetches the state at the gap instead;
- ``fed-join``: the fake hosts a room of ``remote_room_members`` members
  (answering make_join and send_join with the room's whole state and auth
  chain); a local user of the server under test joins it, timed from the
  request to its answer.

The split deployment is started without a federation listener by the e2e
harness, so these run on the single process and on Synapse.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from bench import client
from bench.workloads import CpuClock, Figures, WorkloadContext
from common.http import ServingApp, json_response
from federationapi.client import FederationClient
from matrixlib.builder import build_event
from matrixlib.events import Event, StateKey
from matrixlib.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from tests.component.federationapi.conftest import FakeKeyServer, serve_tls

TRANSACTION_PDUS = 50
ROOM_VERSION = "10"


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class RemoteMember:
    """The fake's user in a room of the server under test: where its next
    event goes in the DAG."""

    room_version: RoomVersion
    room_id: str
    user_id: str
    auth_event_ids: list[str]
    prev_event_ids: list[str]
    depth: int
    # The room's state after the join (the send_join answer's state and the
    # join) and its auth chain: the state at every event the fake sends
    # afterwards, as nothing else changes the state in these workloads.
    state_ids: list[str] = field(default_factory=list)
    auth_chain_ids: list[str] = field(default_factory=list)


@dataclass
class HostedRoom:
    """A room the fake hosts: its events, current state and tip."""

    room_version: RoomVersion
    room_id: str
    events: dict[str, Event] = field(default_factory=dict)
    state: dict[StateKey, str] = field(default_factory=dict)
    tip: str = ""
    depth: int = 0
    joined: int = 0

    def auth_chain(self, event_ids: list[str]) -> list[Event]:
        seen: set[str] = set()
        todo = list(event_ids)
        while todo:
            for auth_id in self.events[todo.pop()].auth_event_ids:
                if auth_id not in seen:
                    seen.add(auth_id)
                    todo.append(auth_id)
        return [self.events[e] for e in seen]


class FakeRemote:
    def __init__(self) -> None:
        self.keys = FakeKeyServer()
        self.keys.valid_until_ts = _now_ms() + 24 * 3600 * 1000
        self.keys.extra_routes.append(self._add_routes)
        self.serving: ServingApp | None = None
        self.client: FederationClient | None = None
        self.rooms: dict[str, HostedRoom] = {}
        # Every event the fake sent as a member of someone else's room, by ID:
        # a receiver that is missing a prev event asks for it.
        self.sent: dict[str, Event] = {}
        # The rooms of others the fake is in, and the events it was given
        # when it joined them (served again, as a real server would).
        self.members: dict[str, RemoteMember] = {}
        self.known: dict[str, Event] = {}

    @property
    def server_name(self) -> str:
        return self.keys.server_name

    async def start(self, cert_dir: Path) -> None:
        await asyncio.to_thread(cert_dir.mkdir, parents=True, exist_ok=True)
        self.serving = await serve_tls(self.keys.blueprint(), cert_dir)
        self.keys.server_name = f"localhost:{self.serving.port}"
        self.client = FederationClient(self.server_name, self.keys.key, verify_tls=False,
                                       allow_private_addresses=True)

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.close()
        if self.serving is not None:
            await self.serving.stop()

    def _federation(self) -> FederationClient:
        if self.client is None:
            raise RuntimeError("the fake remote is not started")
        return self.client

    # -- the fake as a joining server -------------------------------------------------

    async def join(self, server: str, room_id: str, user_id: str) -> RemoteMember:
        federation = self._federation()
        answer = await federation.get_json(
            server, f"/_matrix/federation/v1/make_join/{quote(room_id)}/{quote(user_id)}",
            query={"ver": [ROOM_VERSION, "11", "12"]})
        room_version = KNOWN_ROOM_VERSIONS[answer.get("room_version", "1")]
        template = answer["event"]
        event = build_event(room_version, room_id=room_id, type="m.room.member", sender=user_id,
                            content={"membership": "join"}, state_key=user_id,
                            prev_event_ids=list(template["prev_events"]),
                            auth_event_ids=list(template["auth_events"]), depth=template["depth"],
                            origin_server_ts=_now_ms(), server_name=self.server_name,
                            signing_key=self.keys.key)
        joined = await federation.put_json(
            server, f"/_matrix/federation/v2/send_join/{quote(room_id)}/{quote(event.event_id)}", event.pdu)
        keys: dict[StateKey, str] = {}
        for pdu in joined.get("state", []):
            state_event = Event(pdu, room_version)
            self.known[state_event.event_id] = state_event
            if state_event.state_key is not None:
                keys[state_event.state_tuple] = state_event.event_id
        chain = [Event(pdu, room_version) for pdu in joined.get("auth_chain", [])]
        self.known.update((e.event_id, e) for e in chain)
        self.known[event.event_id] = event
        keys[event.state_tuple] = event.event_id
        auth = [keys[k] for k in (("m.room.create", ""), ("m.room.power_levels", "")) if k in keys]
        member = RemoteMember(room_version, room_id, user_id, [*auth, event.event_id], [event.event_id],
                              template["depth"], state_ids=list(keys.values()),
                              auth_chain_ids=list(dict.fromkeys(e.event_id for e in chain)))
        self.members[room_id] = member
        return member

    def message(self, member: RemoteMember, body: str) -> dict[str, Any]:
        event = build_event(member.room_version, room_id=member.room_id, type="m.room.message",
                            sender=member.user_id, content={"msgtype": "m.text", "body": body}, state_key=None,
                            prev_event_ids=member.prev_event_ids, auth_event_ids=member.auth_event_ids,
                            depth=member.depth + 1, origin_server_ts=_now_ms(), server_name=self.server_name,
                            signing_key=self.keys.key)
        member.prev_event_ids = [event.event_id]
        member.depth += 1
        self.sent[event.event_id] = event
        return event.pdu

    async def send_transaction(self, server: str, pdus: list[dict[str, Any]]) -> None:
        answer = await self._federation().put_json(
            server, f"/_matrix/federation/v1/send/{uuid.uuid4().hex}",
            {"origin": self.server_name, "origin_server_ts": _now_ms(), "pdus": pdus})
        failed = {e: r for e, r in (answer.get("pdus") or {}).items() if r.get("error")}
        if failed:
            raise RuntimeError(f"{len(failed)} PDUs refused, e.g. {next(iter(failed.items()))}")

    # -- the fake as a resident server --------------------------------------------------

    def host_room(self, members: int) -> HostedRoom:
        room_version = KNOWN_ROOM_VERSIONS[ROOM_VERSION]
        name = self.server_name
        room = HostedRoom(room_version, f"!bench{uuid.uuid4().hex[:10]}:{name}")
        creator = f"@creator:{name}"

        def add(type: str, sender: str, state_key: str, content: Mapping[str, Any]) -> None:
            auth_keys: list[StateKey] = [("m.room.create", ""), ("m.room.power_levels", ""),
                                         ("m.room.member", sender)]
            if type == "m.room.member" and content.get("membership") == "join":
                auth_keys.append(("m.room.join_rules", ""))
            auth = [] if type == "m.room.create" else [room.state[k] for k in auth_keys if k in room.state]
            event = build_event(room_version, room_id=room.room_id, type=type, sender=sender, content=content,
                                state_key=state_key, prev_event_ids=[room.tip] if room.tip else [],
                                auth_event_ids=list(dict.fromkeys(auth)), depth=room.depth + 1,
                                origin_server_ts=_now_ms(), server_name=name, signing_key=self.keys.key)
            self._record(room, event)

        add("m.room.create", creator, "", {"creator": creator, "room_version": ROOM_VERSION})
        add("m.room.member", creator, creator, {"membership": "join"})
        add("m.room.power_levels", creator, "", {"users": {creator: 100}, "users_default": 0,
                                                 "events_default": 0, "state_default": 50, "ban": 50,
                                                 "kick": 50, "redact": 50, "invite": 0, "events": {}})
        add("m.room.join_rules", creator, "", {"join_rule": "public"})
        add("m.room.history_visibility", creator, "", {"history_visibility": "shared"})
        for i in range(members - 1):
            user = f"@member{i}:{name}"
            add("m.room.member", user, user, {"membership": "join"})
        self.rooms[room.room_id] = room
        return room

    @staticmethod
    def _record(room: HostedRoom, event: Event) -> None:
        room.events[event.event_id] = event
        if event.state_key is not None:
            room.state[event.state_tuple] = event.event_id
        room.tip = event.event_id
        room.depth = max(room.depth, int(event.pdu["depth"]))

    def _add_routes(self, bp: Blueprint) -> None:
        async def make_join(request: Request, room_id: str, user_id: str) -> HTTPResponse:
            room = self.rooms.get(room_id)
            if room is None:
                return json_response({"errcode": "M_NOT_FOUND", "error": "no such room"}, status=404)
            auth = [room.state[k] for k in (("m.room.create", ""), ("m.room.power_levels", ""),
                                            ("m.room.join_rules", ""))]
            template = {"type": "m.room.member", "room_id": room_id, "sender": user_id, "state_key": user_id,
                        "content": {"membership": "join"}, "prev_events": [room.tip], "auth_events": auth,
                        "depth": room.depth + 1, "origin": self.server_name, "origin_server_ts": _now_ms()}
            return json_response({"room_version": ROOM_VERSION, "event": template})

        async def send_join(request: Request, room_id: str, event_id: str) -> HTTPResponse:
            room = self.rooms.get(room_id)
            if room is None:
                return json_response({"errcode": "M_NOT_FOUND", "error": "no such room"}, status=404)
            event = Event(request.json, room.room_version)
            state = [room.events[e] for e in room.state.values()]
            chain = room.auth_chain([e.event_id for e in state])
            self._record(room, event)
            return json_response({"origin": self.server_name, "event": event.pdu, "members_omitted": False,
                                  "state": [e.pdu for e in state], "auth_chain": [e.pdu for e in chain]})

        def find(event_id: str) -> Event | None:
            for room in self.rooms.values():
                if event_id in room.events:
                    return room.events[event_id]
            return self.sent.get(event_id) or self.known.get(event_id)

        def state_at(request: Request, room_id: str) -> tuple[list[str], list[str]] | None:
            """(state IDs, auth chain IDs) before an event the fake sent in
            someone else's room (state_ids / state): what a receiver asks
            when it cannot fetch a gap of prev events (Synapse, once it has
            dropped part of a long queue of received PDUs)."""
            member = self.members.get(room_id)
            event_id = request.args.get("event_id")
            if member is None or event_id not in self.sent or self.sent[event_id].room_id != room_id:
                return None
            return member.state_ids, member.auth_chain_ids

        async def state_ids(request: Request, room_id: str) -> HTTPResponse:
            found = state_at(request, room_id)
            if found is None:
                return json_response({"errcode": "M_NOT_FOUND", "error": "no such event"}, status=404)
            return json_response({"pdu_ids": found[0], "auth_chain_ids": found[1]})

        async def state(request: Request, room_id: str) -> HTTPResponse:
            found = state_at(request, room_id)
            if found is None:
                return json_response({"errcode": "M_NOT_FOUND", "error": "no such event"}, status=404)
            return json_response({"pdus": [self.known[e].pdu for e in found[0]],
                                  "auth_chain": [self.known[e].pdu for e in found[1]]})

        async def get_event(request: Request, event_id: str) -> HTTPResponse:
            event = find(event_id)
            if event is None:
                return json_response({"errcode": "M_NOT_FOUND", "error": "no such event"}, status=404)
            return json_response({"origin": self.server_name, "origin_server_ts": _now_ms(), "pdus": [event.pdu]})

        async def get_missing_events(request: Request, room_id: str) -> HTTPResponse:
            # The events between what the receiver has (earliest) and what it
            # was sent (latest), walking prev_events back, oldest first.
            body = request.json or {}
            earliest = set(body.get("earliest_events", []))
            limit = int(body.get("limit", 10))
            found: list[Event] = []
            todo = [p for e in body.get("latest_events", []) if (ev := find(e)) for p in ev.prev_event_ids]
            seen: set[str] = set()
            while todo and len(found) < limit:
                event_id = todo.pop(0)
                event = find(event_id)
                if event_id in earliest or event_id in seen or event is None:
                    continue
                seen.add(event_id)
                found.append(event)
                todo.extend(event.prev_event_ids)
            found.sort(key=lambda e: int(e.pdu["depth"]))
            return json_response({"events": [e.pdu for e in found]})

        async def send(request: Request, txn_id: str) -> HTTPResponse:
            # What the server under test sends on (its joined user's events) is accepted unread.
            return json_response({"pdus": {}})

        bp.add_route(make_join, "/_matrix/federation/v1/make_join/<room_id>/<user_id>", methods=["GET"])
        bp.add_route(send_join, "/_matrix/federation/v2/send_join/<room_id>/<event_id>", methods=["PUT"])
        bp.add_route(get_event, "/_matrix/federation/v1/event/<event_id>", methods=["GET"])
        bp.add_route(get_missing_events, "/_matrix/federation/v1/get_missing_events/<room_id>", methods=["POST"])
        bp.add_route(state_ids, "/_matrix/federation/v1/state_ids/<room_id>", methods=["GET"], unquote=True)
        bp.add_route(state, "/_matrix/federation/v1/state/<room_id>", methods=["GET"], unquote=True)
        bp.add_route(send, "/_matrix/federation/v1/send/<txn_id>", methods=["PUT"])


def _need_federation(ctx: WorkloadContext) -> None:
    if not ctx.federation:
        raise RuntimeError("this deployment is started without federation")


async def fed_send(ctx: WorkloadContext) -> Figures:
    _need_federation(ctx)
    remote = FakeRemote()
    await remote.start(ctx.workdir / "fake-remote-send")
    try:
        local = await client.register(ctx.http, client.unique("host"))
        room_id = await client.create_room(ctx.http, local, preset="public_chat", room_version=ROOM_VERSION)
        member = await remote.join(ctx.server_name, room_id, f"@sender:{remote.server_name}")
        since = (await client.sync(ctx.http, local, timeout="0", filter=client.timeline_filter(1)))["next_batch"]
        stream_filter = client.timeline_filter(1000)

        # The message bodies the local member's /sync has shown.
        seen: set[str] = set()

        async def arrival_of(body: str) -> None:
            nonlocal since
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                answer = await client.sync(ctx.http, local, timeout="30000", since=since, filter=stream_filter)
                since = answer["next_batch"]
                timeline = answer.get("rooms", {}).get("join", {}).get(room_id, {}).get("timeline", {})
                seen.update(e.get("content", {}).get("body") for e in timeline.get("events", []))
                if body in seen:
                    return
            raise RuntimeError(f"{body!r} did not reach /sync")

        warm_up = client.unique("warm-up-")
        await remote.send_transaction(ctx.server_name, [remote.message(member, warm_up)])
        await arrival_of(warm_up)
        count = ctx.sizes.federation_pdus
        figures: Figures = {"fed_send.per_s": [], "fed_send.cpu_ms": [], "fed_send.delivered": []}
        for rep in range(ctx.reps):
            bodies = [f"fed-r{rep}-{n}-{uuid.uuid4().hex[:6]}" for n in range(count)]
            pdus = [remote.message(member, body) for body in bodies]
            watcher = asyncio.create_task(arrival_of(bodies[-1]))
            with CpuClock(ctx) as cpu:
                started = time.perf_counter()
                for i in range(0, count, TRANSACTION_PDUS):
                    await remote.send_transaction(ctx.server_name, pdus[i:i + TRANSACTION_PDUS])
                await watcher
                elapsed = time.perf_counter() - started
            # A server may accept the last PDU without some of those before it
            # (Synapse drops most of a room's queue of received PDUs once it
            # holds 100 and fetches only the last few again): only the PDUs
            # that reached the local member's /sync count.
            delivered = len(seen.intersection(bodies))
            figures["fed_send.per_s"].append(delivered / elapsed)
            figures["fed_send.cpu_ms"].append(cpu.seconds * 1000 / count)
            figures["fed_send.delivered"].append(delivered)
        return figures
    finally:
        await remote.stop()


async def fed_join(ctx: WorkloadContext) -> Figures:
    _need_federation(ctx)
    remote = FakeRemote()
    await remote.start(ctx.workdir / "fake-remote-join")
    try:
        figures: Figures = {"fed_join.ms": []}
        joiners = [await client.register(ctx.http, client.unique("traveller"))
                   for _ in range(max(ctx.reps, ctx.sizes.samples))]
        rooms = [remote.host_room(ctx.sizes.remote_room_members) for _ in joiners]
        with CpuClock(ctx) as cpu:
            for account, room in zip(joiners, rooms, strict=True):
                started = time.perf_counter()
                response = await ctx.http.post(f"/_matrix/client/v3/join/{quote(room.room_id)}",
                                               params={"server_name": remote.server_name, "via": remote.server_name},
                                               json={}, headers=account.headers)
                if response.status_code != 200:
                    raise RuntimeError(f"join: {response.status_code} {response.text[:300]}")
                figures["fed_join.ms"].append((time.perf_counter() - started) * 1000)
        figures["fed_join.cpu_ms"] = [cpu.seconds * 1000 / len(joiners)]
        return figures
    finally:
        await remote.stop()
