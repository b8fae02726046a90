"""Benchmark: 10 users in one room, concurrent sends, and the time from a
send to its arrival in another user's long-poll /sync. Runs the same
workload against Myelin (single process, embedded defaults) and Synapse in
one run and prints both with their ratio.

    .venv/bin/python -m bench.messaging [--users 10] [--messages 30]

A benchmark, not a test: figures move with the machine's load; compare the
ratio within one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.synapse import start_synapse
from tests.e2e.harness import free_port, start_monolith

TIMELINE_FILTER = json.dumps({"room": {"timeline": {"limit": 1000}}})


@dataclass
class Figures:
    sends_per_second: float
    send_p50_ms: float
    send_p95_ms: float
    delivery_p50_ms: float
    delivery_p95_ms: float


async def _register(http: httpx.AsyncClient, name: str) -> tuple[str, str]:
    auth: dict[str, str] = {"type": "m.login.dummy"}
    body: dict[str, Any] = {"username": name, "password": "bench-password-123", "auth": auth}
    response = await http.post("/_matrix/client/v3/register", json=body)
    if response.status_code == 401:  # a server that insists on the two-step flow
        auth["session"] = response.json()["session"]
        response = await http.post("/_matrix/client/v3/register", json=body)
    response.raise_for_status()
    data = response.json()
    return data["user_id"], data["access_token"]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_workload(base_url: str, users: int, messages_each: int) -> Figures:
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as http:
        tag = uuid.uuid4().hex[:6]
        accounts = [await _register(http, f"bench{i}{tag}") for i in range(users)]
        auth = [{"Authorization": f"Bearer {token}"} for _, token in accounts]
        room = await http.post("/_matrix/client/v3/createRoom", json={"preset": "public_chat"},
                               headers=auth[0])
        room.raise_for_status()
        room_id = room.json()["room_id"]
        for headers in auth[1:]:
            (await http.post(f"/_matrix/client/v3/join/{room_id}", json={}, headers=headers)).raise_for_status()

        # The observer long-polls /sync and stamps when each body arrives.
        arrivals: dict[str, float] = {}
        first = await http.get("/_matrix/client/v3/sync", params={"timeout": "0"}, headers=auth[-1])
        since = first.json()["next_batch"]
        expected = (users - 1) * messages_each
        stop = asyncio.Event()

        async def observe() -> None:
            nonlocal since
            while not stop.is_set():
                # A timeline limit above the workload: a "limited" timeline
                # would drop messages from the count (the same for both servers).
                response = await http.get("/_matrix/client/v3/sync",
                                          params={"timeout": "10000", "since": since, "filter": TIMELINE_FILTER},
                                          headers=auth[-1])
                now = time.perf_counter()
                data: dict[str, Any] = response.json()
                since = data["next_batch"]
                for joined in data.get("rooms", {}).get("join", {}).values():
                    for event in joined.get("timeline", {}).get("events", []):
                        body = event.get("content", {}).get("body")
                        if body and body not in arrivals:
                            arrivals[body] = now
                if len(arrivals) >= expected:
                    stop.set()

        send_started: dict[str, float] = {}
        send_latency: list[float] = []

        async def sender(index: int) -> None:
            for n in range(messages_each):
                body = f"u{index}-m{n}"
                send_started[body] = time.perf_counter()
                response = await http.put(
                    f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{uuid.uuid4().hex}",
                    json={"msgtype": "m.text", "body": body}, headers=auth[index])
                response.raise_for_status()
                send_latency.append(time.perf_counter() - send_started[body])

        observer = asyncio.create_task(observe())
        started = time.perf_counter()
        await asyncio.gather(*(sender(i) for i in range(users - 1)))
        elapsed = time.perf_counter() - started
        try:
            await asyncio.wait_for(stop.wait(), timeout=60)
        finally:
            observer.cancel()
        delivery = [arrivals[b] - send_started[b] for b in send_started if b in arrivals]
        return Figures(
            sends_per_second=expected / elapsed,
            send_p50_ms=1000 * statistics.median(send_latency),
            send_p95_ms=1000 * _percentile(send_latency, 0.95),
            delivery_p50_ms=1000 * statistics.median(delivery),
            delivery_p95_ms=1000 * _percentile(delivery, 0.95),
        )


def _print_table(myelin: Figures, synapse: Figures) -> None:
    rows = [
        ("sends/s (higher is better)", myelin.sends_per_second, synapse.sends_per_second, True),
        ("send p50 ms", myelin.send_p50_ms, synapse.send_p50_ms, False),
        ("send p95 ms", myelin.send_p95_ms, synapse.send_p95_ms, False),
        ("send->sync p50 ms", myelin.delivery_p50_ms, synapse.delivery_p50_ms, False),
        ("send->sync p95 ms", myelin.delivery_p95_ms, synapse.delivery_p95_ms, False),
    ]
    print(f"{'metric':<28}{'myelin':>12}{'synapse':>12}{'myelin advantage':>18}")
    for name, m, s, higher_better in rows:
        advantage = (m / s) if higher_better else (s / m if m else float("inf"))
        print(f"{name:<28}{m:>12.1f}{s:>12.1f}{advantage:>17.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--messages", type=int, default=30, help="messages per sending user")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="myelin-bench-") as tmp:
        work = Path(tmp)
        myelin = start_monolith(work / "myelin")
        try:
            myelin_figures = asyncio.run(run_workload(myelin.base_url, args.users, args.messages))
        finally:
            myelin.stop()
        synapse = start_synapse(work / "synapse", free_port())
        try:
            synapse_figures = asyncio.run(run_workload(synapse.base_url, args.users, args.messages))
        finally:
            synapse.stop()
    print(f"\n{args.users} users in one room, {args.users - 1} sending {args.messages} messages each\n")
    _print_table(myelin_figures, synapse_figures)


if __name__ == "__main__":
    main()
