"""One component per process: a split deployment.

Each personality opens its own database and the shared log (Kafka when
configured), serves its API over gRPC (room server, user API) or HTTP
(client API, sync API, federation API), and reaches the components it
depends on through their gRPC clients, at the addresses in the config's
``components`` section. The router gives clients one base URL.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

import grpc

from common.config import Config
from common.grpc_binding import insecure_channel
from common.http import make_app, serve_app
from common.log import Log
from common.logs import KafkaLog, open_log
from common.logs.relay import add_log_relay, follow_relay
from common.topics import ROOMSERVER_OUTPUT
from homeserver.startup_gc import freeze_startup_objects
from matrixlib.signing import read_signing_key_file

logger = logging.getLogger("myelin")

def _optional_channel(config: Config, component: str) -> grpc.aio.Channel | None:
    """A channel to a component the deployment may run without."""
    address = config.address_of(component).grpc
    return insecure_channel(address) if address else None


def _channel(config: Config, component: str) -> grpc.aio.Channel:
    address = config.address_of(component).grpc
    if not address:
        raise SystemExit(f"config has no components.{component}.grpc address")
    return insecure_channel(address)


async def _open_log(config: Config, name: str, stack: AsyncExitStack) -> Log:
    if not config.kafka_bootstrap:
        # The embedded log lives inside one process; separate processes
        # share their logs through Kafka.
        raise SystemExit(f"{name} in its own process needs kafka_bootstrap in the config")
    log = open_log(config.kafka_bootstrap, config.data_dir / f"log-{name}", f"myelin-{name}",
                   kafka_session_timeout_ms=config.kafka_session_timeout_ms)
    await log.start()
    stack.push_async_callback(log.close)
    return log


async def run_personality(config: Config, name: str) -> None:
    if name == "router":
        from homeserver.router import run_router

        await run_router(config)
        return
    signing_key = read_signing_key_file(config.signing_key_path)
    async with AsyncExitStack() as stack, asyncio.TaskGroup() as tasks:
        if name == "roomserver":
            from roomserver.component import open_roomserver
            from roomserver.grpc.server import serve_grpc as serve_roomserver

            log = await _open_log(config, name, stack)
            roomserver = await open_roomserver(config, log, signing_key)
            stack.push_async_callback(roomserver.close)
            tasks.create_task(roomserver.run(), name="roomserver")
            await roomserver.ready.wait()
            # The log relay: the sync API takes the room server's output
            # as it is appended instead of waiting for a fetch.
            kafka_log = log if isinstance(log, KafkaLog) else None
            relay = [lambda server: add_log_relay(server, kafka_log)] if kafka_log is not None else []
            server, port = await serve_roomserver(roomserver.api, config.address_of(name).grpc, also=relay)
            stack.push_async_callback(server.stop, 5)
        elif name == "userapi":
            from userapi.component import open_userapi
            from userapi.grpc.server import serve_grpc as serve_userapi

            log = await _open_log(config, name, stack)
            userapi = await open_userapi(config, log=log)
            stack.push_async_callback(userapi.close)
            server, port = await serve_userapi(userapi.api, config.address_of(name).grpc)
            stack.push_async_callback(server.stop, 5)
        elif name == "clientapi":
            from clientapi.component import open_clientapi
            from federationapi.grpc.client import GrpcFederationAPIClient
            from roomserver.grpc.client import GrpcRoomserverClient
            from userapi.grpc.client import GrpcUserAPIClient

            log = await _open_log(config, name, stack)
            clientapi = await open_clientapi(
                config, log, GrpcRoomserverClient(_channel(config, "roomserver")),
                GrpcUserAPIClient(_channel(config, "userapi")), signing_key)
            stack.push_async_callback(clientapi.close)
            federation_channel = _optional_channel(config, "federationapi")
            if federation_channel is not None:
                clientapi.services.federation = GrpcFederationAPIClient(federation_channel)
            serving = await serve_app(make_app("myelin_clientapi", [clientapi.blueprint]),
                                      config.address_of(name).http)
            stack.push_async_callback(serving.stop)
            port = serving.port
        elif name == "syncapi":
            from federationapi.grpc.client import GrpcFederationAPIClient
            from roomserver.grpc.client import GrpcRoomserverClient
            from syncapi.component import open_syncapi
            from userapi.grpc.client import GrpcUserAPIClient

            log = await _open_log(config, name, stack)
            # Queries and the log relay's stream share one connection.
            roomserver_channel = _channel(config, "roomserver")
            stack.push_async_callback(roomserver_channel.close)  # after the sync API's close
            syncapi = await open_syncapi(config, log, GrpcUserAPIClient(_channel(config, "userapi")),
                                         GrpcRoomserverClient(roomserver_channel))
            stack.push_async_callback(syncapi.close)
            sync_federation_channel = _optional_channel(config, "federationapi")
            if sync_federation_channel is not None:
                # /messages backfills through the federation API.
                syncapi.room_reads.federation = GrpcFederationAPIClient(sync_federation_channel)
            tasks.create_task(syncapi.run(), name="syncapi")
            if isinstance(log, KafkaLog):
                tasks.create_task(follow_relay(log, roomserver_channel, [ROOMSERVER_OUTPUT.name]),
                                  name="log relay")
            await syncapi.ready.wait()
            serving = await serve_app(make_app("myelin_syncapi", [syncapi.blueprint]),
                                      config.address_of(name).http)
            stack.push_async_callback(serving.stop)
            port = serving.port
        elif name == "federationapi":
            from federationapi.component import open_federationapi
            from federationapi.grpc.server import serve_grpc as serve_federationapi
            from federationapi.internal.public_rooms import ClientAPIPublicRooms
            from roomserver.grpc.client import GrpcRoomserverClient
            from userapi.grpc.client import GrpcUserAPIClient

            log = await _open_log(config, name, stack)
            public_rooms = ClientAPIPublicRooms(config.address_of("clientapi").http)
            stack.push_async_callback(public_rooms.close)
            federationapi = await open_federationapi(
                config, signing_key, roomserver=GrpcRoomserverClient(_channel(config, "roomserver")),
                userapi=GrpcUserAPIClient(_channel(config, "userapi")), public_rooms=public_rooms, log=log)
            stack.push_async_callback(federationapi.close)
            media_address = config.address_of("mediaapi").http
            if media_address:
                from mediaapi.client import HttpLocalMedia

                local_media = HttpLocalMedia(media_address, config.server_name)
                stack.push_async_callback(local_media.close)
                federationapi.media = local_media
            # The federation sender.
            tasks.create_task(federationapi.run(), name="federationapi")
            await federationapi.ready.wait()
            grpc_address = config.address_of(name).grpc
            if grpc_address and federationapi.internal is not None:
                grpc_server, _ = await serve_federationapi(federationapi.internal, grpc_address)
                stack.push_async_callback(grpc_server.stop, 5)
            serving = await serve_app(make_app("myelin_federationapi", [federationapi.make_blueprint()]),
                                      config.address_of(name).http)
            stack.push_async_callback(serving.stop)
            port = serving.port
            if config.federation_listen:
                # Other servers reach federation over TLS on its own port.
                from homeserver.tls import federation_ssl_context

                fed = await serve_app(make_app("myelin_federation", [federationapi.make_blueprint()]),
                                      config.federation_listen, ssl=federation_ssl_context(config))
                stack.push_async_callback(fed.stop)
        elif name == "mediaapi":
            from federationapi.grpc.client import GrpcFederationAPIClient
            from mediaapi.component import open_mediaapi
            from userapi.grpc.client import GrpcUserAPIClient

            media_federation_channel = _optional_channel(config, "federationapi")
            mediaapi = await open_mediaapi(
                config, GrpcUserAPIClient(_channel(config, "userapi")),
                federation=GrpcFederationAPIClient(media_federation_channel) if media_federation_channel else None)
            stack.push_async_callback(mediaapi.close)
            serving = await serve_app(make_app("myelin_mediaapi", [mediaapi.blueprint]), config.address_of(name).http)
            stack.push_async_callback(serving.stop)
            port = serving.port
        else:
            raise SystemExit(f"unknown component {name!r}")
        freeze_startup_objects()
        logger.info("%s of %s is ready on port %d", name, config.server_name, port)
        await asyncio.Event().wait()
