"""The workloads, each the same HTTP conversation with every server.

A workload sets up what it needs once per server (users, rooms, history),
then times ``reps`` repetitions of its measured part; it returns, per
metric, one figure per repetition (the report quotes their median, min and
max). Latency distributions are summarised inside a repetition (p50, p99)
and those summaries are what repeat. Each timed part is bracketed by the
server processes' CPU time, so a CPU-per-operation figure sits beside the
wall-clock ones.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import client
from bench.client import Account
from bench.measure import percentile

Figures = dict[str, list[float]]


@dataclass(frozen=True)
class Sizes:
    reps: int = 3
    # Single-operation samples (one initial sync or one join each).
    samples: int = 5
    register_users: int = 50
    senders: int = 10
    messages_per_sender: int = 30
    send_sync_messages: int = 50
    idle_room_counts: tuple[int, ...] = (5, 100, 1000)
    initial_sync_rooms: int = 200
    idle_sync_samples: int = 20
    history_events: int = 10_000
    page_size: int = 100
    join_room_members: int = 1000
    stateres_members: int = 5000
    stateres_changes: int = 1000
    federation_pdus: int = 1000
    remote_room_members: int = 500


FULL = Sizes()
QUICK = Sizes(reps=1, samples=2, register_users=5, senders=4, messages_per_sender=3, send_sync_messages=5,
              idle_room_counts=(5, 10, 20), initial_sync_rooms=8, idle_sync_samples=3, history_events=150,
              page_size=50, join_room_members=15, stateres_members=60, stateres_changes=15,
              federation_pdus=100, remote_room_members=20)


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    higher_is_better: bool
    # The target as a Myelin/Synapse ratio: at least this (higher is
    # better) or at most this (lower is better); None: no target.
    target_ratio: float | None = None
    # The Myelin deployments the target is about; None: every deployment.
    # The issue asks for half of Synapse's memory of the single process only:
    # the split deployment's figure is the sum over its seven processes.
    judged: tuple[str, ...] | None = None


@dataclass
class WorkloadContext:
    http: httpx.AsyncClient
    sizes: Sizes
    cpu_seconds: Callable[[], float]
    progress: Callable[[str], None] = lambda _message: None
    # The server under test's name, whether it serves federation, and a
    # directory for what a workload writes (the fake remote's certificate).
    server_name: str = ""
    federation: bool = False
    workdir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    # Setup shared between workloads on the same server (the messaging room).
    shared: dict[str, Any] = field(default_factory=dict)
    # Figures a workload of several steps has measured so far: kept when a
    # later step fails (the runner resets it before each workload).
    partial: Figures = field(default_factory=dict)

    @property
    def reps(self) -> int:
        return self.sizes.reps


class CpuClock:
    """Server CPU seconds spent between ``start()`` and ``stop()``."""

    def __init__(self, ctx: WorkloadContext) -> None:
        self._read = ctx.cpu_seconds
        self._started = 0.0
        self.seconds = 0.0

    def __enter__(self) -> CpuClock:
        self._started = self._read()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.seconds = self._read() - self._started


def _ms(seconds: float) -> float:
    return seconds * 1000


# --- registration -----------------------------------------------------------

async def register(ctx: WorkloadContext) -> Figures:
    figures: Figures = {"register.per_s": [], "register.cpu_ms": []}
    count = ctx.sizes.register_users
    for _ in range(ctx.reps):
        names = [client.unique("reg") for _ in range(count)]
        with CpuClock(ctx) as cpu:
            started = time.perf_counter()
            await client.bounded(10, [lambda n=n: client.register(ctx.http, n) for n in names])  # type: ignore[misc]
            elapsed = time.perf_counter() - started
        figures["register.per_s"].append(count / elapsed)
        figures["register.cpu_ms"].append(_ms(cpu.seconds) / count)
    return figures


# --- messaging: concurrent sends, send -> /sync arrival ------------------------

async def _messaging_room(ctx: WorkloadContext) -> tuple[str, list[Account]]:
    cached = ctx.shared.get("messaging")
    if cached is None:
        accounts = await client.bounded(
            10, [lambda: client.register(ctx.http, client.unique("sender")) for _ in range(ctx.sizes.senders)])
        room_id = await client.create_room(ctx.http, accounts[0], preset="public_chat")
        for account in accounts[1:]:
            await client.join(ctx.http, account, room_id)
        cached = ctx.shared["messaging"] = (room_id, accounts)
    return cached  # type: ignore[no-any-return]


async def send(ctx: WorkloadContext) -> Figures:
    room_id, accounts = await _messaging_room(ctx)
    figures: Figures = {"send.per_s": [], "send.p50_ms": [], "send.p99_ms": [], "send.cpu_ms": []}
    each = ctx.sizes.messages_per_sender
    for rep in range(ctx.reps):
        latencies: list[float] = []

        async def sender(index: int, account: Account, rep: int = rep,
                         latencies: list[float] = latencies) -> None:
            for n in range(each):
                started = time.perf_counter()
                await client.send_text(ctx.http, account, room_id, f"r{rep}-u{index}-m{n}")
                latencies.append(time.perf_counter() - started)

        with CpuClock(ctx) as cpu:
            started = time.perf_counter()
            await asyncio.gather(*(sender(i, a) for i, a in enumerate(accounts)))
            elapsed = time.perf_counter() - started
        total = each * len(accounts)
        figures["send.per_s"].append(total / elapsed)
        figures["send.p50_ms"].append(_ms(percentile(latencies, 0.5)))
        figures["send.p99_ms"].append(_ms(percentile(latencies, 0.99)))
        figures["send.cpu_ms"].append(_ms(cpu.seconds) / total)
    return figures


async def send_to_sync(ctx: WorkloadContext) -> Figures:
    """One member sends, one at a time; another member's long-poll /sync
    stamps each message's arrival. Latency: from the start of the send
    request to the /sync response that carries it."""
    room_id, accounts = await _messaging_room(ctx)
    observer, sender = accounts[0], accounts[1]
    arrived: dict[str, asyncio.Future[float]] = {}
    since = (await client.sync(ctx.http, observer, timeout="0", filter=client.timeline_filter(1)))["next_batch"]
    stream_filter = client.timeline_filter(1000)

    async def observe() -> None:
        nonlocal since
        while True:
            body = await client.sync(ctx.http, observer, timeout="30000", since=since, filter=stream_filter)
            now = time.perf_counter()
            since = body["next_batch"]
            for joined in body.get("rooms", {}).get("join", {}).values():
                for event in joined.get("timeline", {}).get("events", []):
                    future = arrived.get(event.get("content", {}).get("body", ""))
                    if future is not None and not future.done():
                        future.set_result(now)

    figures: Figures = {"send_sync.p50_ms": [], "send_sync.p99_ms": [], "send_sync.cpu_ms": []}
    watcher = asyncio.create_task(observe())
    try:
        await asyncio.sleep(0.2)  # the first long poll is in flight
        for rep in range(ctx.reps):
            latencies: list[float] = []
            with CpuClock(ctx) as cpu:
                for n in range(ctx.sizes.send_sync_messages):
                    body = client.unique(f"latency-r{rep}-m{n}-")
                    future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
                    arrived[body] = future
                    started = time.perf_counter()
                    await client.send_text(ctx.http, sender, room_id, body)
                    waited: set[asyncio.Future[Any]] = {future, watcher}
                    done, _ = await asyncio.wait(waited, timeout=30,
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if watcher in done:
                        watcher.result()  # raises the observer's error
                    if future not in done:
                        raise RuntimeError("a message did not arrive in /sync within 30 s")
                    latencies.append(future.result() - started)
            figures["send_sync.p50_ms"].append(_ms(percentile(latencies, 0.5)))
            figures["send_sync.p99_ms"].append(_ms(percentile(latencies, 0.99)))
            figures["send_sync.cpu_ms"].append(_ms(cpu.seconds) / len(latencies))
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    return figures


# --- /sync: idle incremental at 5, 100, 1,000 rooms; initial in 200 -------------

async def sync(ctx: WorkloadContext) -> Figures:
    """One user's rooms grow from none to the largest idle size. The first
    ``initial_sync_rooms`` rooms each have a second member who sent a
    message (so lazy loading has members to leave out); the rest are bare.
    Every timed /sync comes from a new device: Synapse caches a /sync answer
    for a while, and a repeated identical request would time that cache."""
    sizes = ctx.sizes
    user = await client.register(ctx.http, client.unique("syncuser"))
    friend = await client.register(ctx.http, client.unique("friend"))
    rooms: list[str] = []
    figures = ctx.partial

    async def grow(to: int) -> None:
        async def one(index: int) -> None:
            with_friend = index < sizes.initial_sync_rooms
            room_id = await client.create_room(ctx.http, user, preset="public_chat" if with_friend else "private_chat",
                                               name=f"bench room {index}")
            if with_friend:
                await client.join(ctx.http, friend, room_id)
                await client.send_text(ctx.http, friend, room_id, f"hello {index}")
            rooms.append(room_id)

        await client.bounded(8, [lambda i=i: one(i) for i in range(len(rooms), to)])  # type: ignore[misc]

    async def quiet_since(count: int) -> str:
        since: str = (await client.settled_sync(ctx.http, user, count))["next_batch"]
        # Settled once incremental syncs have had nothing more to say for a
        # while (a split deployment's read model may trail by a moment).
        quiet = 0
        for _ in range(200):
            body = await client.sync(ctx.http, user, timeout="0", since=since,
                                     filter=client.timeline_filter(1, fresh=True))
            if body.get("rooms", {}).get("join"):
                quiet = 0
                since = body["next_batch"]
            else:
                quiet += 1
                if quiet == 3:
                    return since
            await asyncio.sleep(0.3)
        raise RuntimeError("the rooms never went quiet")

    async def devices(count: int) -> list[Account]:
        return await client.bounded(4, [lambda: client.login(ctx.http, user.user_id) for _ in range(count)])

    async def idle(count: int) -> None:
        since = await quiet_since(count)
        key = f"idle_sync_{count}"
        figures[f"{key}.p50_ms"], figures[f"{key}.cpu_ms"] = [], []
        for _ in range(ctx.reps):
            timings: list[float] = []
            accounts = await devices(sizes.idle_sync_samples)
            with CpuClock(ctx) as cpu:
                for account in accounts:
                    elapsed, body = await client.timed_sync(ctx.http, account, timeout="0", since=since)
                    if body.get("rooms", {}).get("join"):
                        room_id, room = next(iter(body["rooms"]["join"].items()))
                        raise RuntimeError(f"an idle incremental /sync returned rooms, e.g. {room_id}: "
                                           f"{json.dumps(room)[:300]}")
                    timings.append(elapsed)
            figures[f"{key}.p50_ms"].append(_ms(statistics.median(timings)))
            figures[f"{key}.cpu_ms"].append(_ms(cpu.seconds) / len(timings))

    async def initial(count: int) -> None:
        await quiet_since(count)
        figures["initial_sync.ms"] = []
        lazy = client.timeline_filter(10, lazy_members=True)
        accounts = await devices(max(ctx.reps, sizes.samples))
        # CPU over all samples together: the kernel counts it in 10 ms ticks.
        with CpuClock(ctx) as cpu:
            for account in accounts:
                elapsed, body = await client.timed_sync(ctx.http, account, timeout="0", filter=lazy)
                joined = len(body.get("rooms", {}).get("join", {}))
                if joined != count:
                    raise RuntimeError(f"initial /sync returned {joined} rooms, expected {count}")
                figures["initial_sync.ms"].append(_ms(elapsed))
        figures["initial_sync.cpu_ms"] = [_ms(cpu.seconds) / len(accounts)]

    steps: list[tuple[int, Callable[[int], Awaitable[None]]]] = [(n, idle) for n in sizes.idle_room_counts]
    steps.append((sizes.initial_sync_rooms, initial))
    for count, step in sorted(steps, key=lambda s: (s[0], s[1] is idle)):
        ctx.progress(f"  rooms: {count}")
        await grow(count)
        await step(count)
    return figures


# --- /messages back through a long history --------------------------------------

async def history(ctx: WorkloadContext) -> Figures:
    sizes = ctx.sizes
    user = await client.register(ctx.http, client.unique("historian"))
    room_id = await client.create_room(ctx.http, user, preset="private_chat")
    ctx.progress(f"  sending {sizes.history_events} events")
    await client.bounded(10, [lambda n=n: client.send_text(ctx.http, user, room_id, f"history {n}")  # type: ignore[misc]
                              for n in range(sizes.history_events)])
    marker = client.unique("last-")
    await client.send_text(ctx.http, user, room_id, marker)
    deadline = time.monotonic() + 300
    while True:
        body = await client.sync(ctx.http, user, timeout="0", filter=client.timeline_filter(1, fresh=True))
        timeline = body.get("rooms", {}).get("join", {}).get(room_id, {}).get("timeline", {})
        events = timeline.get("events", [])
        if events and events[-1].get("content", {}).get("body") == marker:
            from_token: str = timeline["prev_batch"]
            break
        if time.monotonic() > deadline:
            raise RuntimeError("the last message never reached /sync")
        await asyncio.sleep(0.2)

    figures: Figures = {"messages.total_ms": [], "messages.page_p50_ms": [], "messages.cpu_ms": []}
    for _ in range(ctx.reps):
        seen = 0
        pages: list[float] = []
        token = from_token
        with CpuClock(ctx) as cpu:
            while True:
                started = time.perf_counter()
                page = await client.messages(ctx.http, user, room_id, token, sizes.page_size)
                pages.append(time.perf_counter() - started)
                seen += sum(1 for event in page.get("chunk", []) if event.get("type") == "m.room.message")
                if not page.get("chunk") or "end" not in page:
                    break
                token = page["end"]
        if seen < sizes.history_events:
            raise RuntimeError(f"/messages went back through {seen} messages, expected {sizes.history_events}")
        figures["messages.total_ms"].append(_ms(sum(pages)))
        figures["messages.page_p50_ms"].append(_ms(percentile(pages, 0.5)))
        figures["messages.cpu_ms"].append(_ms(cpu.seconds) / len(pages))
    return figures


# --- a local join to a large room -------------------------------------------------

async def join(ctx: WorkloadContext) -> Figures:
    sizes = ctx.sizes
    owner = await client.register(ctx.http, client.unique("owner"))
    room_id = await client.create_room(ctx.http, owner, preset="public_chat")
    ctx.progress(f"  filling the room to {sizes.join_room_members} members")

    async def member() -> None:
        account = await client.register(ctx.http, client.unique("member"))
        await client.join(ctx.http, account, room_id)

    await client.bounded(10, [member for _ in range(sizes.join_room_members - 1)])
    figures: Figures = {"join.ms": []}
    joiners = [await client.register(ctx.http, client.unique("joiner")) for _ in range(max(ctx.reps, sizes.samples))]
    # CPU over all joins together: the kernel counts it in 10 ms ticks.
    with CpuClock(ctx) as cpu:
        for account in joiners:
            started = time.perf_counter()
            await client.join(ctx.http, account, room_id)
            figures["join.ms"].append(_ms(time.perf_counter() - started))
    figures["join.cpu_ms"] = [_ms(cpu.seconds) / len(joiners)]
    return figures


Workload = Callable[[WorkloadContext], Awaitable[Figures]]

# Name (for --only) -> workload, in the order they run.
HTTP_WORKLOADS: dict[str, Workload] = {
    "register": register,
    "send": send,
    "send-sync": send_to_sync,
    "sync": sync,
    "messages": history,
    "join": join,
}


def metrics(sizes: Sizes) -> list[Metric]:
    """Every row of the table, in order, with the issue's targets."""
    rows = [
        Metric("register.per_s", "registrations/s (10 at a time)", True),
        Metric("register.cpu_ms", "  server CPU ms per registration", False),
        Metric("send.per_s", f"send: events/s ({sizes.senders} users at once)", True, 3.0),
        Metric("send.p50_ms", "send: p50 ms", False),
        Metric("send.p99_ms", "send: p99 ms", False),
        Metric("send.cpu_ms", "  server CPU ms per event", False),
        Metric("send_sync.p50_ms", "send -> other member's /sync: p50 ms", False, 1 / 3),
        Metric("send_sync.p99_ms", "send -> other member's /sync: p99 ms", False),
        Metric("send_sync.cpu_ms", "  server CPU ms per message (send + sync)", False),
        Metric("initial_sync.ms", f"initial /sync, {sizes.initial_sync_rooms} rooms, lazy members: ms", False,
               0.25),
        Metric("initial_sync.cpu_ms", "  server CPU ms per initial sync (all samples)", False),
    ]
    for count in sizes.idle_room_counts:
        rows.append(Metric(f"idle_sync_{count}.p50_ms", f"idle incremental /sync, {count} rooms: p50 ms", False,
                           1.0 if count == max(sizes.idle_room_counts) else None))
        rows.append(Metric(f"idle_sync_{count}.cpu_ms", "  server CPU ms per idle sync", False))
    rows += [
        Metric("messages.total_ms", f"/messages back through {sizes.history_events} events "
               f"({sizes.page_size} a page): total ms", False),
        Metric("messages.page_p50_ms", "/messages: p50 ms a page", False),
        Metric("messages.cpu_ms", "  server CPU ms per page", False),
        Metric("join.ms", f"local join, room of {sizes.join_room_members} members: ms", False, 0.5),
        Metric("join.cpu_ms", "  server CPU ms per join (all samples)", False),
        Metric("fed_send.per_s", f"inbound federation /send: PDUs/s ({sizes.federation_pdus} in transactions "
               "of 50, to arrival in /sync)", True),
        Metric("fed_send.cpu_ms", "  server CPU ms per PDU sent to it", False),
        Metric("fed_send.delivered", f"  PDUs of the {sizes.federation_pdus} that reached /sync", True),
        Metric("fed_join.ms", f"join of a remote room of {sizes.remote_room_members} members (fake resident): ms",
               False),
        Metric("fed_join.cpu_ms", "  server CPU ms per join (all samples)", False),
        Metric("stateres.ms", f"state resolution of a fork ({sizes.stateres_members} members, "
               f"{sizes.stateres_changes} changes a side): ms", False),
        Metric("peak_rss_mb", "peak RSS of the server, MB (split: sum over processes)", False, 0.5,
               judged=("myelin",)),
    ]
    return rows
