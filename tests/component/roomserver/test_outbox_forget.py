"""Output appended after an input transaction is forgotten (outbox rows
deleted, events marked sent) by one transaction of its own a moment later,
for everything appended meanwhile, not by each input batch."""

from __future__ import annotations

import asyncio

import pytest
from myelin.roomserver.v1 import roomserver_pb2 as pb
from sqlalchemy import event, func, select

from roomserver.internal.input import processor
from roomserver.storage.tables.events import events as events_table
from roomserver.storage.tables.outbox import output_outbox
from tests.builders import TestRoom, input_event
from tests.component.roomserver.conftest import Running

ALICE = "@alice:test"


async def test_sent_output_is_forgotten_together_later(running: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    # Long enough that the inputs below are surely done before it ends.
    monkeypatch.setattr(processor, "FORGET_SENT_DELAY_SECONDS", 3.0)
    component = running.component
    room = TestRoom("12", creator=ALICE)
    messages = [room.message(ALICE, f"m{i}") for i in range(3)]
    deletes: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *rest: object) -> None:
        if statement.startswith("DELETE FROM roomserver_output_outbox"):
            deletes.append(statement)

    event.listen(component.database.engine.sync_engine, "before_cursor_execute", seen)
    try:
        for events in (room.events[:-3], *([m] for m in messages)):
            response = await component.api.input_room_events(pb.InputRoomEventsRequest(
                events=[input_event(e) for e in events], wait=True))
            assert {r.outcome for r in response.results} == {pb.INPUT_OUTCOME_ACCEPTED}
        assert deletes == []  # no input batch forgot anything
        async with component.storage.reading() as txn:
            waiting = await txn.conn.scalar(select(func.count()).select_from(output_outbox))
        assert waiting == len(room.events)

        for _ in range(100):
            if deletes:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.2)
        assert len(deletes) == 1
        async with component.storage.reading() as txn:
            assert await txn.conn.scalar(select(func.count()).select_from(output_outbox)) == 0
            unsent = await txn.conn.scalar(select(func.count()).select_from(events_table).where(
                events_table.c.sent_to_output.is_(False)))
            assert unsent == 0
    finally:
        event.remove(component.database.engine.sync_engine, "before_cursor_execute", seen)
