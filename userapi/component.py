"""The user API component: accounts, devices and access tokens.

``build(config, database)`` is the one constructor; ``open_userapi(config)``
opens the component's own database first. ``component.api`` is the
in-process binding of ``userapi.api.UserAPI``; ``userapi.grpc.server``
exposes it over gRPC and ``userapi.grpc.client`` calls it from another
process.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from common.config import Config
from common.log import Log
from common.storage import Database, database_url_for, open_database
from userapi.api import UserAPI
from userapi.internal.passwords import DEFAULT_PARAMS, ScryptParams
from userapi.internal.userapi import UserAPIInternal
from userapi.producers import AccountDataProducer, DeviceListProducer
from userapi.storage.database import UserAPIDatabase

COMPONENT = "userapi"


@dataclass
class UserAPIComponent:
    api: UserAPI
    database: Database

    async def close(self) -> None:
        await self.database.close()


def build(config: Config, database: Database, *,
          password_params: ScryptParams = DEFAULT_PARAMS, log: Log | None = None) -> UserAPIComponent:
    """``password_params`` lets tests use a cheaper scrypt; servers keep the default.
    ``log``: where account data changes (``userapi.account_data``) and device
    list changes (``userapi.device_list_update``) are published; without one
    they are only stored."""
    producer = AccountDataProducer(log) if log is not None else None
    internal = UserAPIInternal(UserAPIDatabase(database), config.server_name, password_params,
                               account_data_producer=producer,
                               refreshable_token_lifetime_ms=config.refreshable_access_token_lifetime_ms,
                               nonrefreshable_token_lifetime_ms=config.nonrefreshable_access_token_lifetime_ms,
                               device_list_producer=DeviceListProducer(log) if log is not None else None)
    return UserAPIComponent(api=internal, database=database)


async def open_userapi(config: Config, *, password_params: ScryptParams | None = None,
                       log: Log | None = None) -> UserAPIComponent:
    """Opens (and migrates) the user API's database and builds the component;
    ``close()`` closes the database. Without ``password_params`` the scrypt
    cost is the config's ``password_scrypt_log2_n``."""
    if password_params is None:
        password_params = dataclasses.replace(DEFAULT_PARAMS, n=2**config.password_scrypt_log2_n)
    url = database_url_for(COMPONENT, postgres_url=config.postgres_url or None, data_dir=config.data_dir)
    database = await open_database(url, COMPONENT)
    return build(config, database, password_params=password_params, log=log)
