"""The client API component: the client-server HTTP front for writes.

``build(config, database, log, roomserver, userapi, signing_key)`` is the
one constructor. ``component.blueprint`` is a Sanic ``Blueprint`` that the
process wiring mounts with ``common.http.make_app``. ``open_clientapi(config,
log, roomserver, userapi, signing_key)`` opens the component's own database
(transaction IDs) first and closes it in ``close()``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sanic import Blueprint

from clientapi.internal.ratelimit import TokenBucketLimiter
from clientapi.internal.services import Services
from clientapi.internal.uia import SessionSigner
from clientapi.routing import (
    account,
    account_data,
    aliases,
    createroom,
    devices,
    directory,
    keys,
    keys_backup,
    login,
    membership,
    openid,
    profile,
    pushrules,
    receipts,
    register,
    report,
    send,
    send_to_device,
    spaces,
    state,
    thirdparty,
    threepid,
    typing,
    upgrade,
    users,
    versions,
    voip,
)
from clientapi.storage.database import ClientAPIDatabase
from common.config import Config
from common.log import Log
from common.storage import Database, database_url_for, open_database
from matrixlib.signing import SigningKey
from roomserver.api import ClientRoomserverAPI
from userapi.api import UserAPI

COMPONENT = "clientapi"


@dataclass
class ClientAPI:
    blueprint: Blueprint
    services: Services
    # Set when this component opened its database (open_clientapi).
    owned_database: Database | None = None

    async def close(self) -> None:
        await self.services.close()
        if self.owned_database is not None:
            await self.owned_database.close()


def build(config: Config, database: Database, log: Log | None, roomserver: ClientRoomserverAPI,
          userapi: UserAPI, signing_key: SigningKey, *, blueprint_name: str = "clientapi") -> ClientAPI:
    limits = config.rate_limits
    services = Services(
        config=config, roomserver=roomserver, userapi=userapi, signing_key=signing_key,
        database=ClientAPIDatabase(database), log=log,
        send_limiter=TokenBucketLimiter(limits.send_per_user, enabled=limits.enabled),
        login_limiter=TokenBucketLimiter(limits.login_per_ip, enabled=limits.enabled),
        register_limiter=TokenBucketLimiter(limits.register_per_ip, enabled=limits.enabled),
        sessions=SessionSigner(config.macaroon_secret),
    )
    blueprint = Blueprint(blueprint_name)
    for module in (versions, register, login, account, devices, profile, createroom, membership, send, state,
                   directory, keys, keys_backup, account_data, pushrules, aliases, typing, receipts, send_to_device, report,
                   threepid, upgrade, spaces, thirdparty, openid, users, voip):
        module.add_routes(blueprint, services)
    return ClientAPI(blueprint=blueprint, services=services)


async def open_clientapi_database(config: Config) -> Database:
    url = database_url_for(COMPONENT, postgres_url=config.postgres_url or None, data_dir=config.data_dir)
    return await open_database(url, COMPONENT)


async def open_clientapi(config: Config, log: Log | None, roomserver: ClientRoomserverAPI, userapi: UserAPI,
                         signing_key: SigningKey) -> ClientAPI:
    database = await open_clientapi_database(config)
    component = build(config, database, log, roomserver, userapi, signing_key)
    component.owned_database = database
    return component
