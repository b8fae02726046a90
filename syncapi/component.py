"""The sync API component: the read model built from ``roomserver.output`` and
the client endpoints that read it (/sync, /messages, /context, /members,
/joined_members, filters).

    syncapi = await open_syncapi(config, log, userapi, roomserver)
    app = make_app("myelin", [clientapi.blueprint, syncapi.blueprint])
    task_group.create_task(syncapi.run())      # the consumer; sets syncapi.ready
    ...
    await syncapi.close()

Several instances may share one database (each consuming some partitions of
the output log in the "syncapi" group): long polls learn of the others'
writes through a periodic read of the database's stream position, so a
user's news reaches them within ``position_poll_interval`` wherever it was
written.
"""

from __future__ import annotations

import asyncio
import logging

from sanic import Blueprint

from common.config import Config
from common.log import Log
from common.storage import Database, database_url_for, open_database
from roomserver.api import SyncRoomserverAPI
from syncapi.consumers.clientapi import ClientAPIConsumer
from syncapi.consumers.roomserver import RoomserverOutputConsumer
from syncapi.consumers.userapi import UserAPIConsumer
from syncapi.internal.presence import PresenceWriter
from syncapi.internal.push import PushEvaluator
from syncapi.internal.pushers import PusherAPI, PusherDelivery
from syncapi.internal.relations import RelationReads
from syncapi.internal.rooms import RoomReads
from syncapi.internal.search import SearchHandler
from syncapi.internal.sync import SyncHandler
from syncapi.internal.typing import TypingCache, now_ms
from syncapi.notifier import Notifier
from syncapi.routing import event_stream as event_stream_routes
from syncapi.routing import filter as filter_routes
from syncapi.routing import forget as forget_routes
from syncapi.routing import initial_sync as initial_sync_routes
from syncapi.routing import keys_changes as keys_changes_routes
from syncapi.routing import notifications as notification_routes
from syncapi.routing import presence as presence_routes
from syncapi.routing import relations as relation_routes
from syncapi.routing import rooms as room_routes
from syncapi.routing import search as search_routes
from syncapi.routing import single_event as single_event_routes
from syncapi.routing import sync as sync_routes
from syncapi.storage.database import SyncDatabase
from userapi.api import AccountDataQueryAPI, AuthenticationAPI

COMPONENT = "syncapi"
POSITION_POLL_INTERVAL = 1.0
# Longest wait between two looks for expired typing notifications (seconds).
TYPING_SWEEP_INTERVAL = 1.0

logger = logging.getLogger(__name__)


class SyncAPI:
    def __init__(self, config: Config, database: SyncDatabase, log: Log, userapi: AuthenticationAPI,
                 roomserver: SyncRoomserverAPI, blueprint_name: str = COMPONENT) -> None:
        self.config = config
        self.database = database
        self.log = log
        self.notifier = Notifier(config.server_name)
        database.on_positions_taken = self.notifier.positions_taken
        database.on_stream_positions_taken = self.notifier.positions_taken
        database.on_memberships_changing, self.notifier.tracks_memberships = self.notifier.memberships_changing, True
        self.consumer = RoomserverOutputConsumer(database, roomserver, self.notifier, config.server_name)
        self.push_evaluator = PushEvaluator(database, config.server_name)
        self.pushers = PusherDelivery(database, userapi if isinstance(userapi, PusherAPI) else None)
        self.consumer.push_evaluator = self.push_evaluator
        self.consumer.on_notifications = self.pushers.enqueue
        self.typing = TypingCache()
        self.edu_consumer = ClientAPIConsumer(database, self.notifier, self.typing, config.server_name)
        self.presence = PresenceWriter(self.edu_consumer, log)
        self.account_data_consumer = UserAPIConsumer(
            database, self.notifier, config.server_name,
            userapi if isinstance(userapi, AccountDataQueryAPI) else None)
        self.account_data_consumer.push_evaluator = self.push_evaluator
        self.sync_handler = SyncHandler(database, self.notifier, self.typing)
        self.room_reads = RoomReads(database, roomserver=roomserver)
        self.relation_reads = RelationReads(database, roomserver=roomserver)
        self.ready = asyncio.Event()
        # Seconds between reads of the database's position (see Notifier.note_database_position).
        self.position_poll_interval = POSITION_POLL_INTERVAL
        self.blueprint = Blueprint(blueprint_name)
        sync_routes.register(self.blueprint, database, userapi, self.sync_handler, self.presence)
        presence_routes.register(self.blueprint, database, userapi, self.presence)
        room_routes.register(self.blueprint, self.room_reads, userapi)
        initial_sync_routes.register(self.blueprint, database, self.room_reads, userapi)
        single_event_routes.register(self.blueprint, database, self.relation_reads, userapi)
        event_stream_routes.register(self.blueprint, database, self.sync_handler, self.notifier, self.room_reads,
                                     userapi)
        relation_routes.register(self.blueprint, self.relation_reads, userapi)
        filter_routes.register(self.blueprint, database, userapi)
        notification_routes.register(self.blueprint, database, userapi)
        forget_routes.register(self.blueprint, database, roomserver, userapi)
        keys_changes_routes.register(self.blueprint, database, userapi)
        self.search_handler = SearchHandler(database)
        search_routes.register(self.blueprint, database, self.search_handler, userapi)

    async def run(self) -> None:
        """Consumes the room server's output, the client API's EDUs and the
        user API's account data until cancelled (and delivers notifications
        to pushers); ``ready`` once consuming all. Also follows the database's
        positions, for writes by other instances, expires typing and times out
        the presence of users who stopped syncing."""
        await self.sync_handler.ensure_started()
        rooms_ready = asyncio.Event()
        edus_ready = asyncio.Event()
        account_data_ready = asyncio.Event()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._follow_database_position())
            tasks.create_task(self._expire_typing())
            tasks.create_task(self.presence.expire_idle())
            tasks.create_task(self.edu_consumer.run(self.log, edus_ready))
            tasks.create_task(self.consumer.run(self.log, rooms_ready))
            tasks.create_task(self.account_data_consumer.run(self.log, account_data_ready))
            tasks.create_task(self.pushers.run())
            await rooms_ready.wait()
            await edus_ready.wait()
            await account_data_ready.wait()
            self.ready.set()

    async def _follow_database_position(self) -> None:
        while True:
            await asyncio.sleep(self.position_poll_interval)
            try:
                positions = await self.database.settled_positions()
                if positions is not None:
                    self.notifier.note_database_positions(positions)
            except Exception:
                logger.warning("could not read the stream positions", exc_info=True)

    async def _expire_typing(self) -> None:
        """Tells the rooms' members when a typer's timeout passes."""
        while True:
            next_expiry = self.typing.next_expiry()
            delay = TYPING_SWEEP_INTERVAL
            if next_expiry is not None:
                delay = min(delay, max(0.0, (next_expiry - now_ms()) / 1000))
            await asyncio.sleep(delay)
            for room_id, position in self.typing.expire():
                try:
                    await self.edu_consumer.notify_typing(room_id, position)
                except Exception:
                    logger.warning("could not tell %s of expired typing", room_id, exc_info=True)

    async def close(self) -> None:
        await self.database.close()


def build(config: Config, database: Database, log: Log, userapi: AuthenticationAPI,
          roomserver: SyncRoomserverAPI) -> SyncAPI:
    return SyncAPI(config, SyncDatabase(database), log, userapi, roomserver)


async def open_syncapi(config: Config, log: Log, userapi: AuthenticationAPI,
                       roomserver: SyncRoomserverAPI) -> SyncAPI:
    """Opens (and migrates) the sync API's database and builds the component."""
    url = database_url_for(COMPONENT, postgres_url=config.postgres_url or None, data_dir=config.data_dir)
    database = await open_database(url, COMPONENT)
    return build(config, database, log, userapi, roomserver)
