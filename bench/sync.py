"""Benchmark: /sync for a user in many rooms. One user in 200 rooms: the
time of an initial /sync; the same user in 1,000 rooms: the time of an idle
incremental /sync (timeout=0, nothing new). Runs the same workload against
Myelin (single process, embedded defaults) and Synapse in one run and
prints both with their ratio.

    .venv/bin/python -m bench.sync [--rooms 200] [--many-rooms 1000] [--samples 50]

The rooms are created concurrently (``--concurrency`` at a time). Every
timed request comes from its own device (a fresh login): Synapse caches a
/sync answer for a while after answering it, and a repeated identical
request would measure that cache rather than the sync.

A benchmark, not a test: figures move with the machine's load; compare the
ratio within one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.messaging import _percentile, _register
from bench.synapse import start_synapse
from tests.e2e.harness import free_port, start_monolith

PASSWORD = "bench-password-123"


@dataclass
class Figures:
    create_rooms_per_second: float
    initial_sync_p50_ms: float
    initial_sync_max_ms: float
    incremental_sync_p50_ms: float
    incremental_sync_p95_ms: float


async def _login(http: httpx.AsyncClient, user_id: str) -> dict[str, str]:
    response = await http.post("/_matrix/client/v3/login", json={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id}, "password": PASSWORD})
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def _create_rooms(http: httpx.AsyncClient, headers: dict[str, str], count: int, concurrency: int) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def create(index: int) -> None:
        async with gate:
            response = await http.post("/_matrix/client/v3/createRoom",
                                       json={"preset": "private_chat", "name": f"bench room {index}"},
                                       headers=headers)
            response.raise_for_status()

    await asyncio.gather(*(create(i) for i in range(count)))


async def _timed_sync(http: httpx.AsyncClient, headers: dict[str, str], params: dict[str, str]) -> tuple[float, Any]:
    started = time.perf_counter()
    response = await http.get("/_matrix/client/v3/sync", params=params, headers=headers, timeout=300)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed, response.json()


async def _settled_sync(http: httpx.AsyncClient, headers: dict[str, str], rooms: int) -> Any:
    """An initial sync once it shows all ``rooms`` (the read model may trail
    the writes by a moment)."""
    deadline = time.monotonic() + 120
    while True:
        _, body = await _timed_sync(http, headers, {"timeout": "0"})
        joined = len(body.get("rooms", {}).get("join", {}))
        if joined == rooms:
            return body
        if time.monotonic() > deadline:
            raise RuntimeError(f"sync shows {joined} rooms, expected {rooms}")
        await asyncio.sleep(0.5)


async def _devices(http: httpx.AsyncClient, user_id: str, count: int) -> list[dict[str, str]]:
    gate = asyncio.Semaphore(4)

    async def one() -> dict[str, str]:
        async with gate:
            return await _login(http, user_id)

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def run_workload(base_url: str, rooms: int, many_rooms: int, samples: int, initial_samples: int,
                       concurrency: int) -> Figures:
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as http:
        user_id, token = await _register(http, f"syncbench{uuid.uuid4().hex[:6]}")
        headers = {"Authorization": f"Bearer {token}"}

        started = time.perf_counter()
        await _create_rooms(http, headers, rooms, concurrency)
        create_elapsed = time.perf_counter() - started
        await _settled_sync(http, headers, rooms)
        initial: list[float] = []
        for device in await _devices(http, user_id, initial_samples):
            elapsed, body = await _timed_sync(http, device, {"timeout": "0"})
            joined = len(body.get("rooms", {}).get("join", {}))
            if joined != rooms:
                raise RuntimeError(f"initial sync returned {joined} rooms, expected {rooms}")
            initial.append(elapsed)

        started = time.perf_counter()
        await _create_rooms(http, headers, many_rooms - rooms, concurrency)
        create_elapsed += time.perf_counter() - started
        # Nothing happens in the rooms from here on: every sync below is idle.
        since = (await _settled_sync(http, headers, many_rooms))["next_batch"]
        incremental: list[float] = []
        for device in await _devices(http, user_id, samples):
            elapsed, body = await _timed_sync(http, device, {"timeout": "0", "since": since})
            if body.get("rooms", {}).get("join"):
                raise RuntimeError("an idle incremental sync returned rooms")
            incremental.append(elapsed)
        return Figures(
            create_rooms_per_second=many_rooms / create_elapsed,
            initial_sync_p50_ms=1000 * statistics.median(initial),
            initial_sync_max_ms=1000 * max(initial),
            incremental_sync_p50_ms=1000 * statistics.median(incremental),
            incremental_sync_p95_ms=1000 * _percentile(incremental, 0.95),
        )


def _print_table(myelin: Figures, synapse: Figures, rooms: int, many_rooms: int) -> None:
    rows = [
        ("createRoom/s (higher is better)", myelin.create_rooms_per_second, synapse.create_rooms_per_second, True),
        (f"initial sync, {rooms} rooms, p50 ms", myelin.initial_sync_p50_ms, synapse.initial_sync_p50_ms, False),
        (f"initial sync, {rooms} rooms, max ms", myelin.initial_sync_max_ms, synapse.initial_sync_max_ms, False),
        (f"idle sync, {many_rooms} rooms, p50 ms", myelin.incremental_sync_p50_ms,
         synapse.incremental_sync_p50_ms, False),
        (f"idle sync, {many_rooms} rooms, p95 ms", myelin.incremental_sync_p95_ms,
         synapse.incremental_sync_p95_ms, False),
    ]
    print(f"{'metric':<36}{'myelin':>12}{'synapse':>12}{'myelin advantage':>18}")
    for name, m, s, higher_better in rows:
        advantage = (m / s) if higher_better else (s / m if m else float("inf"))
        print(f"{name:<36}{m:>12.1f}{s:>12.1f}{advantage:>17.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=200, help="rooms for the initial sync")
    parser.add_argument("--many-rooms", type=int, default=1000, help="rooms for the idle incremental sync")
    parser.add_argument("--samples", type=int, default=50, help="idle incremental syncs timed")
    parser.add_argument("--initial-samples", type=int, default=5, help="initial syncs timed")
    parser.add_argument("--concurrency", type=int, default=8, help="rooms created at a time")
    args = parser.parse_args()
    if args.many_rooms < args.rooms:
        parser.error("--many-rooms must be at least --rooms")
    workload = (args.rooms, args.many_rooms, args.samples, args.initial_samples, args.concurrency)
    with tempfile.TemporaryDirectory(prefix="myelin-bench-") as tmp:
        work = Path(tmp)
        myelin = start_monolith(work / "myelin")
        try:
            myelin_figures = asyncio.run(run_workload(myelin.base_url, *workload))
        finally:
            myelin.stop()
        synapse = start_synapse(work / "synapse", free_port())
        try:
            synapse_figures = asyncio.run(run_workload(synapse.base_url, *workload))
        finally:
            synapse.stop()
    print(f"\none user in {args.rooms} rooms (initial /sync, {args.initial_samples} devices) and in "
          f"{args.many_rooms} rooms (idle /sync?timeout=0, {args.samples} devices)\n")
    _print_table(myelin_figures, synapse_figures, args.rooms, args.many_rooms)


if __name__ == "__main__":
    main()
