"""One process, every component: the embedded defaults.

Components get each other's implementations directly (the in-process
binding: no serialisation), share one log (embedded unless Kafka is
configured) and each opens its own database (SQLite files in the data
directory unless PostgreSQL is configured). Every consumer loop and server
runs in one TaskGroup owned here; cancelling it stops them all.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

from common.config import Config
from common.http import make_app, serve_app
from common.logs import open_log
from homeserver.startup_gc import freeze_startup_objects
from matrixlib.signing import read_signing_key_file

logger = logging.getLogger("myelin")


async def run_monolith(config: Config, *, started: asyncio.Event | None = None) -> None:
    from clientapi.component import open_clientapi
    from clientapi.routing.directory import PublishedRoomDirectory
    from federationapi.component import open_federationapi
    from mediaapi.component import open_mediaapi
    from roomserver.component import open_roomserver
    from syncapi.component import open_syncapi
    from userapi.component import open_userapi

    signing_key = read_signing_key_file(config.signing_key_path)
    async with AsyncExitStack() as stack:
        log = open_log(config.kafka_bootstrap or None, config.data_dir / "log", "myelin",
                       kafka_session_timeout_ms=config.kafka_session_timeout_ms)
        await log.start()
        stack.push_async_callback(log.close)

        roomserver = await open_roomserver(config, log, signing_key)
        stack.push_async_callback(roomserver.close)
        userapi = await open_userapi(config, log=log)
        stack.push_async_callback(userapi.close)
        clientapi = await open_clientapi(config, log, roomserver.api, userapi.api, signing_key)
        stack.push_async_callback(clientapi.close)
        syncapi = await open_syncapi(config, log, userapi.api, roomserver.api)
        stack.push_async_callback(syncapi.close)
        federationapi = await open_federationapi(
            config, signing_key, roomserver=roomserver.api, userapi=userapi.api,
            public_rooms=PublishedRoomDirectory(roomserver.api, clientapi.services.database), log=log)
        stack.push_async_callback(federationapi.close)
        # Built after the client API (its public room directory reads the
        # client API's table), so handed over here.
        clientapi.services.federation = federationapi.internal
        # /messages backfills from other servers when it reaches the start of local history.
        syncapi.room_reads.federation = federationapi.internal
        mediaapi = await open_mediaapi(config, userapi.api, federation=federationapi.internal)
        stack.push_async_callback(mediaapi.close)
        federationapi.media = mediaapi.local_media

        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(roomserver.run(), name="roomserver")
            tasks.create_task(syncapi.run(), name="syncapi")
            tasks.create_task(federationapi.run(), name="federationapi")
            await roomserver.ready.wait()
            await syncapi.ready.wait()
            await federationapi.ready.wait()
            app = make_app("myelin", [clientapi.blueprint, syncapi.blueprint, mediaapi.blueprint,
                                      federationapi.make_blueprint()])
            serving = await serve_app(app, config.client_listen)
            stack.push_async_callback(serving.stop)
            if config.federation_listen:
                from homeserver.tls import federation_ssl_context

                fed_app = make_app("myelin_federation", [federationapi.make_blueprint()])
                fed = await serve_app(fed_app, config.federation_listen,
                                      ssl=federation_ssl_context(config))
                stack.push_async_callback(fed.stop)
            freeze_startup_objects()
            logger.info("Myelin %s is serving clients on http://%s:%d", config.server_name,
                        serving.host, serving.port)
            if started is not None:
                started.set()
            await asyncio.Event().wait()
