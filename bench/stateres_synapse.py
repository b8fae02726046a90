"""Runs in Synapse's virtualenv (not Myelin's): resolves the fork that
bench/stateres.py wrote, with Synapse's own state resolution v2
(synapse.state.v2.resolve_events_with_store), and prints one JSON line with
the seconds of each repetition and the resolved state.

    bench/.work/synapse-venv/bin/python -I bench/stateres_synapse.py FORK.json REPS

The store answers from memory: the events, and the auth difference the fork
file carries (in Synapse it comes from the database's chain cover index),
so only the resolution is timed, as on Myelin's side.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Collection
from typing import Any

# synapse.event_auth first: importing synapse.state first runs into a circular import.
import synapse.event_auth  # type: ignore[import-not-found]  # noqa: F401
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS  # type: ignore[import-not-found]
from synapse.events import make_event_from_dict  # type: ignore[import-not-found]
from synapse.state.v2 import resolve_events_with_store  # type: ignore[import-not-found]
from synapse.storage.databases.main.event_federation import StateDifference  # type: ignore[import-not-found]


class _Clock:
    async def sleep(self, duration: object) -> None:
        await asyncio.sleep(0)


class _Store:
    def __init__(self, events: dict[str, Any], auth_difference: set[str]) -> None:
        self._events = events
        self._auth_difference = auth_difference

    async def get_events(self, event_ids: Collection[str], allow_rejected: bool = False) -> dict[str, Any]:
        return {e: self._events[e] for e in event_ids if e in self._events}

    async def get_auth_chain_difference(self, room_id: str, state_sets: list[set[str]],
                                        conflicted_state: set[str] | None = None,
                                        additional_backwards_reachable_conflicted_events: set[str] | None = None,
                                        ) -> Any:
        return StateDifference(auth_difference=set(self._auth_difference), conflicted_subgraph=None)


async def _main(fork: dict[str, Any], reps: int) -> None:
    room_version = KNOWN_ROOM_VERSIONS[fork["room_version"]]
    events = {}
    for pdu in fork["events"]:
        event = make_event_from_dict(pdu, room_version)
        events[event.event_id] = event
    state_sets = [{(t, k): v for t, k, v in state_set} for state_set in fork["state_sets"]]
    store = _Store(events, set(fork["auth_difference"]))
    seconds: list[float] = []
    resolved: Any = {}
    for _ in range(reps):
        started = time.perf_counter()
        resolved = await resolve_events_with_store(_Clock(), fork["room_id"], room_version, state_sets, {}, store)
        seconds.append(time.perf_counter() - started)
    print(json.dumps({"seconds": seconds, "resolved": [[t, k, v] for (t, k), v in dict(resolved).items()]}))


if __name__ == "__main__":
    with open(sys.argv[1]) as fork_file:
        fork_json = json.load(fork_file)
    asyncio.run(_main(fork_json, int(sys.argv[2])))
