"""What every outbound federation verb needs, in one object: who we are,
how we reach other servers, and the components we hand results to."""

from __future__ import annotations

from dataclasses import dataclass

from common.config import Config
from common.log import Log
from federationapi.client import FederationClient
from federationapi.keyring import KeyRing
from federationapi.storage.database import FederationDatabase
from matrixlib.signing import SigningKey
from roomserver.api import FederationRoomserverAPI
from userapi.api import UserAPI


@dataclass
class FederationContext:
    config: Config
    signing_key: SigningKey
    client: FederationClient
    keyring: KeyRing
    database: FederationDatabase
    roomserver: FederationRoomserverAPI
    # Absent in tests that need only the room parts.
    userapi: UserAPI | None = None
    # For the EDU topics the federation API writes (inbound typing,
    # receipts, presence, to-device, device lists).
    log: Log | None = None

    @property
    def server_name(self) -> str:
        return self.config.server_name
