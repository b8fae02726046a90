"""Room server instances sharing a PostgreSQL database
(roomserver/storage/writer_registration.py): one alone is the only writer
and may keep rooms' rows in memory; a second one starting makes the first
stop keeping them before it writes anything; an instance whose registration
connection ends is told to stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import URL, make_url

from roomserver.storage.writer_registration import WriterRegistration, asyncpg_dsn

pytestmark = pytest.mark.postgres


class Instance:
    """What a room server does with its registration, recorded."""

    def __init__(self, name: str, events: list[str]) -> None:
        self.name = name
        self.events = events
        self.registration: WriterRegistration | None = None

    def demoted(self) -> None:
        self.events.append(f"{self.name} demoted")

    async def register(self, url: URL) -> WriterRegistration:
        self.registration = await WriterRegistration.register(url, on_demoted=self.demoted)
        self.events.append(f"{self.name} registered {'sole' if self.registration.sole else 'shared'}")
        return self.registration


@pytest.fixture
def url(fresh_postgres_database: str) -> URL:
    return make_url(fresh_postgres_database).set(drivername="postgresql+asyncpg")


@pytest.fixture
async def events() -> AsyncIterator[list[str]]:
    yield []


async def close_all(*instances: Instance) -> None:
    for instance in instances:
        if instance.registration is not None:
            await instance.registration.close()


async def test_an_instance_alone_is_the_only_writer(url: URL, events: list[str]) -> None:
    first = Instance("first", events)
    try:
        registration = await first.register(url)
        assert registration.sole
    finally:
        await close_all(first)
    # Its locks went with its connection: the next instance alone is the only writer too.
    again = Instance("again", events)
    try:
        assert (await again.register(url)).sole
    finally:
        await close_all(again)


async def test_a_second_instance_waits_until_the_first_stopped_keeping_rows(url: URL,
                                                                             events: list[str]) -> None:
    first, second, third = Instance("first", events), Instance("second", events), Instance("third", events)
    try:
        one = await first.register(url)
        two = await asyncio.wait_for(second.register(url), 10)
        # The first stopped keeping rows before the second could write.
        assert events == ["first registered sole", "first demoted", "second registered shared"]
        assert not one.sole and not two.sole
        # Neither becomes the only writer again while the other is registered.
        await one.close()
        first.registration = None
        three = await asyncio.wait_for(third.register(url), 10)
        assert not three.sole
    finally:
        await close_all(first, second, third)


async def test_two_instances_starting_together_end_with_at_most_one_sole(url: URL, events: list[str]) -> None:
    instances = [Instance(f"i{n}", events) for n in range(3)]
    try:
        registrations = await asyncio.wait_for(
            asyncio.gather(*(instance.register(url) for instance in instances)), 15)
        # Every request to share is heard: once all are registered none is
        # the only writer (each other instance writes too).
        await asyncio.sleep(0.2)
        assert [r.sole for r in registrations] == [False, False, False]
    finally:
        await close_all(*instances)


async def test_a_lost_registration_connection_demotes_and_tells(url: URL, events: list[str]) -> None:
    first = Instance("first", events)
    try:
        registration = await first.register(url)
        assert registration.sole
        admin = await asyncpg.connect(asyncpg_dsn(url))
        try:
            pids = await admin.fetch(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()")
            assert pids
            for row in {row["pid"] for row in pids}:
                await admin.execute("SELECT pg_terminate_backend($1)", row)
        finally:
            await admin.close()
        await asyncio.wait_for(registration.lost.wait(), 10)
        assert not registration.sole and "first demoted" in events
        # Nothing holds the locks now: a new instance is the only writer.
        second = Instance("second", events)
        try:
            assert (await second.register(url)).sole
        finally:
            await close_all(second)
    finally:
        await close_all(first)
