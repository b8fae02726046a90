"""Micro-benchmark: state resolution of a fork between two large state sets,
Myelin's matrixlib.state_res against Synapse's own state resolution code
(synapse.state.v2, imported in Synapse's virtualenv by
bench/stateres_synapse.py) on the same events.

The room (version 10, state resolution v2): a creator, power levels, public
join rules, then ``members`` users who join one after another. There the
room forks. On side A the creator promotes a member to moderator, then
``changes`` members change their display name and the creator sets as many
custom state events; on side B the creator gives another member a different
power level and the same ``changes`` members leave, and a member of side B
not on side A changes name too. The two state sets are the state at the tip
of each side: ``changes + 1`` keys conflict and every event of both sides is
in the auth difference.

Both resolvers get the same events, state sets and precomputed auth
difference (in a server both come from a database index), so what is timed
is the resolution itself. Their answers are compared: a difference is an
error, not a figure.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.synapse import ensure_synapse_installed
from matrixlib.builder import build_event
from matrixlib.events import Event, StateKey
from matrixlib.room_versions import KNOWN_ROOM_VERSIONS
from matrixlib.signing import generate_signing_key
from matrixlib.state_res import auth_chain_difference, resolve_state

ROOM_VERSION = "10"
SERVER = "bench.test"
DRIVER = Path(__file__).resolve().parent / "stateres_synapse.py"


class Fork:
    """The events of the forked room and the two state sets at its tips."""

    def __init__(self, members: int, changes: int) -> None:
        if changes >= members:
            raise ValueError("changes must be fewer than members")
        self.room_version = KNOWN_ROOM_VERSIONS[ROOM_VERSION]
        self._key = generate_signing_key("bench")
        self.room_id = f"!fork:{SERVER}"
        self.creator = f"@creator:{SERVER}"
        self.events: dict[str, Event] = {}
        self._ts = 1_700_000_000_000
        state: dict[StateKey, str] = {}
        tip: list[str] = []
        depth = 0

        def add(state: dict[StateKey, str], tip: list[str], depth: int, type: str, sender: str,
                state_key: str, content: dict[str, Any]) -> int:
            auth = self._auth_events(state, type, sender, state_key, content)
            self._ts += 1
            event = build_event(self.room_version, room_id=self.room_id, type=type, sender=sender,
                                content=content, state_key=state_key, prev_event_ids=list(tip),
                                auth_event_ids=auth, depth=depth + 1, origin_server_ts=self._ts,
                                server_name=SERVER, signing_key=self._key)
            self.events[event.event_id] = event
            state[(type, state_key)] = event.event_id
            tip[:] = [event.event_id]
            return depth + 1

        users = [f"@user{i}:{SERVER}" for i in range(members)]
        power = {"users": {self.creator: 100}, "users_default": 0, "events_default": 0, "state_default": 50,
                 "ban": 50, "kick": 50, "redact": 50, "invite": 0, "events": {}}
        depth = add(state, tip, depth, "m.room.create", self.creator, "", {"creator": self.creator,
                                                                           "room_version": ROOM_VERSION})
        depth = add(state, tip, depth, "m.room.member", self.creator, self.creator, {"membership": "join"})
        depth = add(state, tip, depth, "m.room.power_levels", self.creator, "", power)
        depth = add(state, tip, depth, "m.room.join_rules", self.creator, "", {"join_rule": "public"})
        for user in users:
            depth = add(state, tip, depth, "m.room.member", user, user, {"membership": "join"})

        state_a, tip_a, depth_a = dict(state), list(tip), depth
        state_b, tip_b, depth_b = dict(state), list(tip), depth
        power_a = {**power, "users": {self.creator: 100, users[0]: 50}}
        depth_a = add(state_a, tip_a, depth_a, "m.room.power_levels", self.creator, "", power_a)
        for i in range(changes):
            depth_a = add(state_a, tip_a, depth_a, "m.room.member", users[i], users[i],
                          {"membership": "join", "displayname": f"A{i}"})
            depth_a = add(state_a, tip_a, depth_a, "m.bench.note", self.creator, str(i), {"side": "a"})
        power_b = {**power, "users": {self.creator: 100, users[1]: 20}}
        depth_b = add(state_b, tip_b, depth_b, "m.room.power_levels", self.creator, "", power_b)
        for i in range(changes):
            depth_b = add(state_b, tip_b, depth_b, "m.room.member", users[i], users[i], {"membership": "leave"})
        depth_b = add(state_b, tip_b, depth_b, "m.room.member", users[-1], users[-1],
                      {"membership": "join", "displayname": "B"})
        self.state_sets = [state_a, state_b]
        self.auth_difference = auth_chain_difference(self.state_sets, self.events.get)

    def _auth_events(self, state: dict[StateKey, str], type: str, sender: str, state_key: str,
                     content: dict[str, Any]) -> list[str]:
        keys: list[StateKey] = [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", sender)]
        if type == "m.room.member":
            keys.append(("m.room.member", state_key))
            if content.get("membership") == "join":
                keys.append(("m.room.join_rules", ""))
        if type == "m.room.create":
            return []
        return list(dict.fromkeys(state[k] for k in keys if k in state))

    def to_json(self) -> dict[str, Any]:
        return {
            "room_version": ROOM_VERSION,
            "room_id": self.room_id,
            "events": [event.pdu for event in self.events.values()],
            "state_sets": [[[k[0], k[1], v] for k, v in s.items()] for s in self.state_sets],
            "auth_difference": sorted(self.auth_difference),
        }


def time_myelin(fork: Fork, reps: int) -> tuple[list[float], dict[StateKey, str]]:
    timings: list[float] = []
    resolved: dict[StateKey, str] = {}
    for _ in range(reps):
        started = time.perf_counter()
        resolved = resolve_state(fork.room_version, fork.state_sets, fork.events.get, set(fork.auth_difference))
        timings.append(time.perf_counter() - started)
    return timings, resolved


def time_synapse(fork: Fork, reps: int, workdir: Path) -> tuple[list[float], dict[StateKey, str]]:
    python = ensure_synapse_installed()
    workdir.mkdir(parents=True, exist_ok=True)
    fork_path = workdir / "fork.json"
    fork_path.write_text(json.dumps(fork.to_json()))
    # -I: the script's own directory (bench/, with its synapse.py) must not shadow Synapse.
    run = subprocess.run([str(python), "-I", str(DRIVER), str(fork_path), str(reps)], capture_output=True, text=True,
                         timeout=1800)
    if run.returncode != 0:
        raise RuntimeError(f"the Synapse driver failed: {run.stderr.strip()[-800:]}")
    answer = json.loads(run.stdout.strip().splitlines()[-1])
    resolved = {(t, k): v for t, k, v in answer["resolved"]}
    return [float(s) for s in answer["seconds"]], resolved


def run_stateres(members: int, changes: int, reps: int, workdir: Path) -> dict[str, list[float]]:
    """Per implementation ("myelin", "synapse"): the milliseconds of each repetition."""
    fork = Fork(members, changes)
    myelin_seconds, myelin_state = time_myelin(fork, reps)
    synapse_seconds, synapse_state = time_synapse(fork, reps, workdir)
    if myelin_state != synapse_state:
        differ = sorted(k for k in set(myelin_state) | set(synapse_state)
                        if myelin_state.get(k) != synapse_state.get(k))
        raise RuntimeError(f"Myelin and Synapse resolve the fork differently at {len(differ)} keys, "
                           f"e.g. {differ[:3]}")
    return {"myelin": [s * 1000 for s in myelin_seconds], "synapse": [s * 1000 for s in synapse_seconds]}


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        figures = run_stateres(1000, 300, 3, Path(tmp))
    for name, values in figures.items():
        print(f"{name}: median {statistics.median(values):.1f} ms  (min {min(values):.1f}, max {max(values):.1f})")
