"""The federation API: the server-server HTTP front.

So far: our signing keys and the notary API (``routing/keys.py``), the
version, the KeyRing that fetches and checks other servers' keys
(``keyring.py``), the outbound client (``client.py``) and the check that
authenticates every inbound ``/_matrix/federation/`` request (``auth.py``),
and, given a room server (and user API, public room directory), the
inbound reads: events, state, auth chains, backfill, missing events,
profile and alias queries, public rooms (``routing/events.py``,
``routing/query.py``, ``routing/public_rooms.py``); inbound ``/send``
transactions, their PDU checks, gap filling and EDUs (``routing/send.py``,
``internal/inbound/``, ``internal/edus.py``); backfill (``internal/backfill.py``).
Federation routes added to the blueprint ``make_blueprint`` builds are
authenticated; the origin is in ``request.ctx.origin``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sanic import Blueprint

from common.config import Config
from common.log import Log
from common.openid import OpenIDTokens
from common.storage import Database, database_url_for, open_database
from federationapi.auth import FederationAuthenticator, add_federation_auth
from federationapi.client import FederationClient
from federationapi.internal.api import FederationInternalAPIImpl
from federationapi.internal.context import FederationContext
from federationapi.internal.inbound.transaction import TransactionHandler
from federationapi.keyring import DirectKeyFetcher, KeyFetcher, KeyRing, NotaryKeyFetcher
from federationapi.routing.events import add_event_routes
from federationapi.routing.keys import add_key_routes
from federationapi.routing.media import add_media_routes
from federationapi.routing.membership import add_membership_routes
from federationapi.routing.openid import add_openid_routes
from federationapi.routing.public_rooms import PublicRoomDirectory, add_public_rooms_routes
from federationapi.routing.query import add_query_routes
from federationapi.routing.send import add_send_routes
from federationapi.routing.user_keys import add_user_keys_routes
from federationapi.routing.version import add_version_routes
from federationapi.sender.sender import FederationSender, build_sender
from federationapi.storage.database import FederationDatabase
from matrixlib.signing import SigningKey
from mediaapi.api import LocalMediaAPI
from roomserver.api import FederationRoomserverAPI
from userapi.api import UserAPI

COMPONENT = "federationapi"


@dataclass
class FederationAPI:
    config: Config
    database: FederationDatabase
    client: FederationClient
    keyring: KeyRing
    authenticator: FederationAuthenticator
    direct_fetcher: KeyFetcher
    # The read endpoints (events, state, queries, public rooms) are served
    # when their sources are given.
    roomserver: FederationRoomserverAPI | None = None
    userapi: UserAPI | None = None
    public_rooms: PublicRoomDirectory | None = None
    # What other components call (joins, invites, backfill, remote
    # queries); present when a room server is given.
    internal: FederationInternalAPIImpl | None = None
    # Inbound /send transactions; present with ``internal`` (shares its context).
    inbound: TransactionHandler | None = None
    # The outbound sender of PDUs and EDUs; present when a log and a room
    # server are given. ``run()`` runs it.
    sender: FederationSender | None = None
    # This server's media, served to other servers; set by the process wiring
    # (the media API is built after this component).
    media: LocalMediaAPI | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def make_blueprint(self, name: str = "federationapi") -> Blueprint:
        """The HTTP front; one per app it is mounted on (a blueprint is not
        shared between apps), all sharing this component's state."""
        blueprint = Blueprint(name)
        add_federation_auth(blueprint, self.authenticator)
        if self.sender is not None:
            self.sender.add_wake_on_inbound(blueprint)
        add_key_routes(blueprint, self.keyring, self.direct_fetcher)
        add_version_routes(blueprint)
        add_openid_routes(blueprint, OpenIDTokens(self.config.macaroon_secret))
        server_name = self.config.server_name
        if self.roomserver is not None:
            add_event_routes(blueprint, server_name, self.roomserver)
            add_membership_routes(blueprint, self.keyring, self.roomserver)
            if self.userapi is not None:
                add_query_routes(blueprint, server_name, self.roomserver, self.userapi)
        if self.userapi is not None:
            add_user_keys_routes(blueprint, server_name, self.userapi)
        if self.inbound is not None:
            add_send_routes(blueprint, self.inbound)
        if self.public_rooms is not None:
            add_public_rooms_routes(blueprint, self.public_rooms)
        if self.media is not None:
            add_media_routes(blueprint, self.media)
        return blueprint

    @property
    def blueprint(self) -> Blueprint:
        return self.make_blueprint()

    async def run(self) -> None:
        """Runs the federation sender until cancelled (``ready`` once it
        consumes); returns at once, ready, when there is none."""
        if self.sender is None:
            self.ready.set()
            return
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.sender.run(), name="federation-sender")
            await self.sender.ready.wait()
            self.ready.set()

    async def close(self) -> None:
        if self.sender is not None:
            await self.sender.close()
        await self.client.close()
        await self.database.close()


def build(config: Config, signing_key: SigningKey, database: Database, *,
          client: FederationClient | None = None, roomserver: FederationRoomserverAPI | None = None,
          userapi: UserAPI | None = None, public_rooms: PublicRoomDirectory | None = None,
          log: Log | None = None) -> FederationAPI:
    client = client or FederationClient.from_config(config, signing_key)
    direct = DirectKeyFetcher(client)
    fetchers: list[KeyFetcher] = [direct]
    fetchers += [NotaryKeyFetcher(client, notary) for notary in config.trusted_key_servers]
    storage = FederationDatabase(database)
    keyring = KeyRing(config.server_name, signing_key, storage, fetchers, old_keys=config.old_signing_keys)
    internal = None
    if roomserver is not None:
        internal = FederationInternalAPIImpl(FederationContext(
            config=config, signing_key=signing_key, client=client, keyring=keyring, database=storage,
            roomserver=roomserver, userapi=userapi, log=log))
    sender = None
    if log is not None and roomserver is not None and config.federation_sender_enabled:
        sender = build_sender(database, client, log, roomserver, config.server_name,
                              backoff_initial=config.federation_retry_initial_seconds,
                              backoff_max=config.federation_retry_max_seconds)
    return FederationAPI(config=config, database=storage, client=client, keyring=keyring,
                         authenticator=FederationAuthenticator(keyring), direct_fetcher=direct,
                         roomserver=roomserver, userapi=userapi, public_rooms=public_rooms, internal=internal,
                         inbound=TransactionHandler(internal.context) if internal is not None else None,
                         sender=sender)


async def open_federationapi(config: Config, signing_key: SigningKey, *,
                             client: FederationClient | None = None,
                             roomserver: FederationRoomserverAPI | None = None,
                             userapi: UserAPI | None = None,
                             public_rooms: PublicRoomDirectory | None = None,
                             log: Log | None = None) -> FederationAPI:
    """Opens (and migrates) the federation API's database and builds the
    component; ``close()`` closes the client and the database."""
    url = database_url_for(COMPONENT, postgres_url=config.postgres_url or None, data_dir=config.data_dir)
    return build(config, signing_key, await open_database(url, COMPONENT), client=client,
                 roomserver=roomserver, userapi=userapi, public_rooms=public_rooms, log=log)
