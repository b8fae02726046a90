"""Migration syncapi_0006 fills the search index and the user directory from
what a database at 0005 already stores, on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import text

from common.storage import open_database
from syncapi.storage.database import SyncDatabase
from tests.builders import TestRoom
from tests.component.syncapi.conftest import ALICE, BOB


def _migrations_up_to_0005(old_root: Path) -> Path:
    (old_root / "syncapi" / "versions").mkdir(parents=True)
    source = Path(__file__).resolve().parents[3] / "migrations" / "syncapi"
    for name in ("env.py", "script.py.mako"):
        shutil.copy(source / name, old_root / "syncapi" / name)
    for revision in sorted((source / "versions").glob("000[1-5]_*.py")):
        shutil.copy(revision, old_root / "syncapi" / "versions" / revision.name)
    return old_root


async def test_migration_fills_search_and_directory(database_url: str, tmp_path: Path) -> None:
    old_root = _migrations_up_to_0005(tmp_path / "migrations")
    room = TestRoom()
    room.build("m.room.member", {"membership": "join", "displayname": "Bob"}, sender=BOB,
                          state_key=BOB)
    room.message(ALICE, "a stored needle")
    room.set_state("m.room.topic", {"topic": "haystack topic"})
    room.message(BOB, "")  # nothing to index
    old = await open_database(database_url, "syncapi", migrations_root=old_root)
    try:
        async with old.transaction() as conn:
            for position, event in enumerate(room.events, start=1):
                await conn.execute(text(
                    "INSERT INTO syncapi_events (stream_pos, room_id, event_id, type, sender, state_key, depth, "
                    "room_version, event_json, history_visibility, historical, state_only, contains_url) "
                    "VALUES (:pos, :room, :id, :type, :sender, :state_key, :depth, :version, :json, 'shared', "
                    ":false, :false, :false)"),
                    {"pos": position, "room": event.room_id, "id": event.event_id, "type": event.type,
                     "sender": event.sender, "state_key": event.state_key, "depth": event.depth,
                     "version": room.version.identifier, "json": event.to_json().decode(), "false": False})
            for position, event in enumerate(room.events, start=1):
                if event.state_key is None or room.state.get(event.state_tuple) is not event:
                    continue
                membership = event.content.get("membership") if event.type == "m.room.member" else None
                await conn.execute(text(
                    "INSERT INTO syncapi_current_room_state (room_id, type, state_key, event_id, membership, "
                    "added_pos) VALUES (:room, :type, :key, :id, :membership, :pos)"),
                    {"room": event.room_id, "type": event.type, "key": event.state_key, "id": event.event_id,
                     "membership": membership, "pos": position})
    finally:
        await old.close()

    upgraded = await open_database(database_url, "syncapi")
    try:
        async with SyncDatabase(upgraded).read() as reader:
            keys = ("content.body", "content.name", "content.topic")
            hits = await reader.search_events("needle", room_ids=[room.room_id], keys=keys, order_by_rank=False,
                                              limit=10)
            stored = await reader.events_at_positions([h.stream_pos for h in hits])
            assert [stored[h.stream_pos].event_id for h in hits] == [room.events[-3].event_id]
            assert len(await reader.search_events("haystack", room_ids=[room.room_id], keys=keys,
                                                  order_by_rank=True, limit=10)) == 1
            assert await reader.search_count("needle haystack", room_ids=[room.room_id], keys=keys) == 0
            # Both joined users are in the directory; the room's join rule is public.
            found = await reader.search_user_directory(ALICE, ["test"], 10)
            assert {(entry.user_id, entry.display_name) for entry in found} == {(ALICE, None), (BOB, "Bob")}
    finally:
        await upgraded.close()
