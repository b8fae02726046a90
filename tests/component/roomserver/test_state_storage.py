"""The state snapshot store: deltas against a parent, a full base after a
bounded number of deltas, never a full copy per event; and what a room's
history costs in snapshot rows."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from myelin.roomserver.v1 import roomserver_pb2 as pb
from sqlalchemy import func, select

from common.storage import database_url_for, open_database
from roomserver.api import RoomserverAPI
from roomserver.storage.database import RoomserverDatabase, StateMap, max_delta_depth
from roomserver.storage.tables.events import events as events_table
from roomserver.storage.tables.state import state_entries, state_snapshots
from tests.builders import TestRoom
from tests.component.roomserver.conftest import Running


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[RoomserverDatabase]:
    db = await open_database(database_url_for("roomserver", postgres_url=None, data_dir=tmp_path), "roomserver")
    store = RoomserverDatabase(db)
    try:
        yield store
    finally:
        await store.close()


async def test_snapshots_are_deltas_with_bounded_chains(storage: RoomserverDatabase) -> None:
    rng = random.Random(7)
    states: dict[int, StateMap] = {}
    state: StateMap = {}
    parent: int | None = None
    async with storage.transaction() as txn:
        room_nid = await storage.create_room(txn, "!r:test", "12")
        for step in range(200):
            state = dict(state)
            key = (rng.randint(1, 3), rng.randint(1, 60))
            if state and step % 7 == 0:
                del state[rng.choice(sorted(state))]  # a state reset removes a key
            else:
                state[key] = 1000 + step
            parent = await storage.save_state(txn, room_nid, state, parent)
            states[parent] = state
        # Nothing changed: the parent itself.
        assert await storage.save_state(txn, room_nid, dict(state), parent) == parent

    # A fresh store (empty caches) reads every snapshot back exactly.
    fresh = RoomserverDatabase(storage.db)
    async with fresh.reading() as txn:
        for nid, expected in states.items():
            assert await fresh.load_state(txn, nid) == expected
        depth = await txn.conn.scalar(select(func.max(state_snapshots.c.delta_depth)))
        rows = await txn.conn.scalar(select(func.count()).select_from(state_entries))
    assert depth is not None and depth <= max_delta_depth(max(len(s) for s in states.values()))
    full_copies = sum(len(s) for s in states.values())
    assert rows is not None and rows < full_copies / 5


async def test_room_history_does_not_copy_state_per_event(api: RoomserverAPI, running: Running) -> None:
    room = TestRoom("12", creator="@alice:test")
    for i in range(40):
        room.join(f"@user{i}:test")
        room.message(f"@user{i}:test", f"hello {i}")
    response = await api.input_room_events(room.input_request(room.events))
    assert {r.outcome for r in response.results} == {pb.INPUT_OUTCOME_ACCEPTED}

    storage = running.component.storage
    async with storage.reading() as txn:
        snapshots = await txn.conn.scalar(select(func.count()).select_from(state_snapshots))
        rows = await txn.conn.scalar(select(func.count()).select_from(state_entries))
        event_count = await txn.conn.scalar(select(func.count()).select_from(events_table))
    assert event_count == len(room.events)
    # Messages share their parent's snapshot: one per state event (plus the empty one).
    state_events = sum(1 for e in room.events if e.state_key is not None)
    assert snapshots is not None and snapshots <= state_events + 1
    full_copies = sum(range(1, state_events + 1))
    assert rows is not None and rows < full_copies / 4

    latest = await api.query_latest_events_and_state(pb.QueryLatestEventsAndStateRequest(room_id=room.room_id))
    assert len(latest.state_events) == len(room.state)
    info = await api.query_room_info(pb.QueryRoomInfoRequest(room_id=room.room_id))
    assert info.joined_member_count == 41


async def test_big_state_has_long_delta_chains(storage: RoomserverDatabase) -> None:
    """A 3,000-entry state changed 400 times: deltas only (no second full
    copy), each snapshot read back exactly by a store with empty caches."""
    state: StateMap = {(1, k): k for k in range(3000)}
    async with storage.transaction() as txn:
        room_nid = await storage.create_room(txn, "!big:test", "12")
        parent = await storage.save_state(txn, room_nid, state, None)
        saved = {parent: dict(state)}
        for step in range(400):
            state = dict(state)
            state[(2, step)] = 10_000 + step
            if step % 3 == 0:
                del state[(1, step)]
            parent = await storage.save_state(txn, room_nid, state, parent)
            saved[parent] = state
    fresh = RoomserverDatabase(storage.db)
    async with fresh.reading() as txn:
        for nid in [*sorted(saved)[::37], max(saved)]:
            assert await fresh.load_state(txn, nid) == saved[nid]
        bases = await txn.conn.scalar(select(func.count()).select_from(state_snapshots)
                                      .where(state_snapshots.c.delta_depth == 0))
        rows = await txn.conn.scalar(select(func.count()).select_from(state_entries))
    assert max_delta_depth(3000) >= 150
    assert bases is not None and 2 <= bases <= 3  # full copies about 200 changes apart
    assert rows is not None and rows < 3 * 3400 + 400 * 2


async def test_one_change_per_transaction_keeps_the_delta_depths(storage: RoomserverDatabase) -> None:
    """As joins write it: one state change per transaction, each delta's
    depth taken from the parent as kept in memory (or read, by a store that
    never saw it), so the chains stay bounded and read back exactly."""
    state: StateMap = {(1, k): k for k in range(40)}
    async with storage.transaction() as txn:
        room_nid = await storage.create_room(txn, "!joins:test", "12")
        parent = await storage.save_state(txn, room_nid, state, None)
    saved = {parent: dict(state)}
    stores = [storage, RoomserverDatabase(storage.db)]  # the second one's caches start empty
    for step in range(60):
        state = dict(state)
        state[(2, step)] = 1000 + step
        store = stores[step // 30]
        async with store.transaction() as txn:
            parent = await store.save_state(txn, room_nid, state, parent)
        saved[parent] = state
    fresh = RoomserverDatabase(storage.db)
    async with fresh.reading() as txn:
        for nid, expected in saved.items():
            assert await fresh.load_state(txn, nid) == expected
        rows = {row.snapshot_nid: (row.parent_nid, row.delta_depth)
                for row in await txn.conn.execute(select(state_snapshots))}
    for nid in saved:
        parent_nid, depth = rows[nid]
        assert depth == (0 if parent_nid is None else rows[parent_nid][1] + 1)
    assert max(depth for _, depth in rows.values()) == max_delta_depth(100)  # a new base when reached
