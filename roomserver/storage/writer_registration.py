"""Which room server instances write a PostgreSQL database, and whether one
of them is the only one.

A room server that is its database's only writer keeps the rooms' rows in
memory as it commits them (``RoomserverDatabase.sole_writer``): building an
event then reads nothing, and an input batch reads one statement less. With
the embedded log that is always so. With Kafka, several instances may share
the input topic's consumer group and the database, and a cached row that
another instance has since rewritten would be written back over its change;
so each instance registers here, on a connection of its own that it holds
for its life, with two PostgreSQL advisory locks (scoped to the database):

- every writer holds ``WRITERS`` shared;
- the sole writer also holds ``SOLE``, taken only while nobody else holds
  ``WRITERS`` (its exclusive form is tried and dropped at once);
- an instance that finds ``SOLE`` held asks its holder to give it up
  (``NOTIFY`` on ``CHANNEL``, repeated while it waits), and registers once
  it could take ``SOLE`` itself, so it writes only after the sole writer has
  stopped keeping rows (``on_demoted`` runs before the lock is let go);
- PostgreSQL lets an instance's locks go when its connection ends; an
  instance whose registration connection ends is told (``lost``) and must
  stop writing, since another may take ``SOLE`` next.

An instance that has been demoted stays a shared writer until it restarts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy.engine import URL

logger = logging.getLogger(__name__)

# Advisory lock keys (bigints): "myelin" and a number.
SOLE = 0x6D79656C696E0001
WRITERS = 0x6D79656C696E0002
CHANNEL = "myelin_roomserver_writer_joining"
# How often a waiting instance asks the sole writer again.
ASK_AGAIN_SECONDS = 0.5
WARN_EVERY_SECONDS = 10.0


def asyncpg_dsn(url: URL) -> str:
    """The libpq form of a SQLAlchemy PostgreSQL URL, for asyncpg.connect."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class WriterRegistration:
    """This instance's registration as a writer; ``sole`` says whether it is
    (still) the only one."""

    def __init__(self, conn: Any, *, sole: bool, on_demoted: Callable[[], None]) -> None:
        self._conn = conn
        self.sole = sole
        self._on_demoted = on_demoted
        self._closing = False
        self._releasing: asyncio.Task[None] | None = None
        self.lost = asyncio.Event()

    @classmethod
    async def register(cls, url: URL, *, on_demoted: Callable[[], None]) -> WriterRegistration:
        """Registers this instance as a writer (waiting while a sole writer
        gives ``SOLE`` up). ``on_demoted`` runs when this instance stops being
        the sole writer, before any other may write; ``lost`` is set when the
        registration's connection ends (this instance must stop writing)."""
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            registration = cls(conn, sole=False, on_demoted=on_demoted)
            # Listening before SOLE is taken: a request made as it is taken is heard.
            await conn.add_listener(CHANNEL, registration._asked_to_share)
            await registration._take_sole()
            if await conn.fetchval("SELECT pg_try_advisory_lock($1)", WRITERS):
                # Nobody else writes: the only writer.
                await conn.execute("SELECT pg_advisory_unlock($1)", WRITERS)
                await conn.execute("SELECT pg_advisory_lock_shared($1)", WRITERS)
                registration.sole = True
            else:
                await conn.execute("SELECT pg_advisory_lock_shared($1)", WRITERS)
                await conn.execute("SELECT pg_advisory_unlock($1)", SOLE)
            conn.add_termination_listener(registration._connection_ended)
        except BaseException:
            await conn.close()
            raise
        logger.info("room server registered as %s writer of its database",
                    "the only" if registration.sole else "one")
        return registration

    async def _take_sole(self) -> None:
        loop = asyncio.get_running_loop()
        warn_at = loop.time() + WARN_EVERY_SECONDS
        while not await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", SOLE):
            await self._conn.execute(f"NOTIFY {CHANNEL}")
            if loop.time() >= warn_at:
                logger.warning("waiting for the room server instance that is the only writer of the "
                               "database to share it")
                warn_at = loop.time() + WARN_EVERY_SECONDS
            await asyncio.sleep(ASK_AGAIN_SECONDS)

    def _asked_to_share(self, _conn: Any, _pid: int, _channel: str, _payload: str) -> None:
        if not self.sole or self._releasing is not None:
            return
        logger.info("another room server instance is starting: no longer the only writer")
        self.sole = False
        self._on_demoted()
        self._releasing = asyncio.get_running_loop().create_task(self._release_sole())

    async def _release_sole(self) -> None:
        try:
            await self._conn.execute("SELECT pg_advisory_unlock($1)", SOLE)
        except Exception:
            # The connection is gone, and with it the lock (see _connection_ended).
            logger.warning("could not let the sole writer lock go", exc_info=True)

    def _connection_ended(self, _conn: Any) -> None:
        if self._closing:
            return
        logger.error("the room server's writer registration connection ended")
        if self.sole:
            self.sole = False
            self._on_demoted()
        self.lost.set()

    async def close(self) -> None:
        self._closing = True
        if self._releasing is not None:
            await asyncio.wait({self._releasing})
        await self._conn.close()
