"""The room server: the one constructor ``build``, and ``open_roomserver``
for a process that opens its own database.

    roomserver = await open_roomserver(config, log, signing_key)
    tasks.create_task(roomserver.run())      # consumes roomserver.input until cancelled
    await roomserver.ready.wait()
    roomserver.api                           # the in-process RoomserverAPI
    await serve_grpc(roomserver.api, addr)   # roomserver.grpc.server, for other processes
    await roomserver.close()

Where things are: ``internal/input/inputer.py`` (the input call: append to
``roomserver.input`` and wait), ``internal/input/processor.py`` (auth,
state, storage, output), ``internal/input/consumer.py`` (the consumer
loop), ``internal/query/queries.py`` (every query), ``internal/state.py``
(state resolution on numeric state maps), ``storage/`` (tables and the
facade, with the state snapshot design in ``storage/tables/state.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from myelin.roomserver.v1 import roomserver_pb2 as pb

from common.config import Config
from common.log import Log, LogRecord
from common.logs.embedded import EmbeddedLog
from common.storage import Database, database_url_for, open_database
from matrixlib.signing import SigningKey
from roomserver.api import RoomserverAPI
from roomserver.internal.input.consumer import CONSUMER_GROUP, consume_input
from roomserver.internal.input.inputer import Inputer
from roomserver.internal.input.processor import InputProcessor
from roomserver.internal.perform_aliases import Aliases
from roomserver.internal.perform_send import LocalEventSender
from roomserver.internal.query.queries import Queries
from roomserver.storage.database import RoomserverDatabase
from roomserver.storage.writer_registration import WriterRegistration

logger = logging.getLogger(__name__)

# Rooms whose input is processed at once. SQLite has one writer: a second
# room can only use the time the first spends appending its output.
# PostgreSQL runs them in parallel, within the connection pool.
SQLITE_INPUT_CONCURRENCY = 2
POSTGRES_INPUT_CONCURRENCY = 8


class RoomserverImpl(Queries):
    """The in-process binding: implements ``roomserver.api.RoomserverAPI``."""

    def __init__(self, db: RoomserverDatabase, inputer: Inputer, server_name: str,
                 signing_key: SigningKey) -> None:
        super().__init__(db)
        self._inputer = inputer
        self._aliases = Aliases(db)
        self._sender = LocalEventSender(self, inputer, server_name, signing_key)

    async def input_room_events(self, req: pb.InputRoomEventsRequest) -> pb.InputRoomEventsResponse:
        return await self._inputer.input_room_events(req)

    async def perform_send_event(self, req: pb.PerformSendEventRequest) -> pb.PerformSendEventResponse:
        return await self._sender.perform_send_event(req)

    async def set_room_alias(self, req: pb.SetRoomAliasRequest) -> pb.SetRoomAliasResponse:
        return await self._aliases.set_room_alias(req)

    async def get_room_id_for_alias(self, req: pb.GetRoomIDForAliasRequest) -> pb.GetRoomIDForAliasResponse:
        return await self._aliases.get_room_id_for_alias(req)

    async def get_aliases_for_room(self, req: pb.GetAliasesForRoomRequest) -> pb.GetAliasesForRoomResponse:
        return await self._aliases.get_aliases_for_room(req)

    async def remove_room_alias(self, req: pb.RemoveRoomAliasRequest) -> pb.RemoveRoomAliasResponse:
        return await self._aliases.remove_room_alias(req)


class Roomserver:
    def __init__(self, config: Config, database: Database, log: Log, server_name: str,
                 signing_key: SigningKey) -> None:
        self.config = config
        self.server_name = server_name
        self.signing_key = signing_key
        self.database = database
        self.log = log
        self.storage = RoomserverDatabase(database)
        self.processor = InputProcessor(self.storage, log, server_name)
        self.inputer = Inputer(self.storage, log, config.input_timeout_seconds)
        self.api = RoomserverImpl(self.storage, self.inputer, server_name, signing_key)
        self.ready = asyncio.Event()
        # The input consumer group; every instance of the room server shares it.
        self.input_group = CONSUMER_GROUP

    async def run(self) -> None:
        """Consumes ``roomserver.input`` until cancelled. Output left unsent
        by a crash is sent first."""
        try:
            sent = await self.processor.send_pending()
        except Exception:
            logger.exception("could not read the output outbox; going on")
            sent = 0
        if sent:
            logger.info("sent %d output entries left over from before a restart", sent)
        if isinstance(self.log, EmbeddedLog):
            # Nothing outside this process consumes this input: the instance
            # that does is the only writer of its database, and may keep
            # rooms' rows in memory (see RoomserverDatabase).
            self.storage.become_sole_writer()
        elif self.database.dialect_name == "postgresql":
            # Other instances may share the input and the database.
            await self._consume_registered()
            return
        await self._consume()

    async def _consume(self) -> None:
        concurrency = SQLITE_INPUT_CONCURRENCY if self.database.dialect_name == "sqlite" \
            else POSTGRES_INPUT_CONCURRENCY
        await consume_input(self.log, self._handle_records, self._record_poison, self.ready,
                            group=self.input_group, concurrency=concurrency)

    async def _consume_registered(self) -> None:
        """Consumes as a registered writer of the database (see
        ``storage/writer_registration.py``), the only one while no other is."""
        registration = await WriterRegistration.register(
            self.database.engine.url, on_demoted=self.storage.stop_sole_writing)
        try:
            if registration.sole:
                self.storage.become_sole_writer()
            consumer = asyncio.ensure_future(self._consume())
            lost = asyncio.ensure_future(registration.lost.wait())
            try:
                done, _ = await asyncio.wait({consumer, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (consumer, lost):
                    task.cancel()
                await asyncio.wait({consumer, lost})
            if consumer in done:
                consumer.result()
                return
            # Another instance may now become the only writer and keep rows
            # this one would overwrite: stop (to be restarted).
            raise RuntimeError("the room server's writer registration ended (its PostgreSQL connection "
                               "closed): stopped consuming input")
        finally:
            await registration.close()

    async def _handle_records(self, records: Sequence[LogRecord]) -> None:
        """One room's queued input, in one transaction."""
        answers = await self.processor.process_records([record.value for record in records])
        for request_id, results in answers:
            if request_id:
                self.inputer.report(request_id, results)

    async def _record_poison(self, record: LogRecord, exc: Exception) -> None:
        """A record whose processing failed unexpectedly: recorded, skipped,
        and its waiting writer told so."""
        request_id, room_id, event_ids = self.processor.describe_record(record.value)
        reason = f"processing failed: {type(exc).__name__}: {exc}"
        await self.processor.record_failure(request_id, room_id, ",".join(event_ids), reason, record.value)
        if request_id:
            self.inputer.report(request_id, [
                pb.InputEventResult(event_id=e, outcome=pb.INPUT_OUTCOME_INVALID, reason=reason)
                for e in event_ids])

    async def close(self) -> None:
        try:
            await self.processor.close()
        except Exception:
            logger.warning("could not forget sent output before closing", exc_info=True)
        await self.storage.close()


def build(config: Config, database: Database, log: Log, server_name: str,
          signing_key: SigningKey) -> Roomserver:
    return Roomserver(config, database, log, server_name, signing_key)


async def open_roomserver(config: Config, log: Log, signing_key: SigningKey) -> Roomserver:
    url = database_url_for("roomserver", postgres_url=config.postgres_url or None, data_dir=config.data_dir)
    # Its statements are lookups by key (see GENERIC_PLANS).
    database = await open_database(url, "roomserver", generic_plans=True)
    return build(config, database, log, config.server_name, signing_key)


def _implements_the_contract(impl: RoomserverImpl) -> RoomserverAPI:
    """Never called: mypy checks here that the in-process binding satisfies
    the whole ``RoomserverAPI``."""
    return impl
