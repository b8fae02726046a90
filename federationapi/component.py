"""The federation API: the server-server HTTP front.

So far it publishes the server's signing keys and its version; the inbound
and outbound federation come with the federation issue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sanic import Blueprint

from common.config import Config
from federationapi.routing.keys import add_key_routes
from federationapi.routing.version import add_version_routes


@dataclass
class FederationAPI:
    blueprint: Blueprint

    async def close(self) -> None:
        return None


def build(config: Config, signing_key: Any) -> FederationAPI:
    blueprint = Blueprint("federationapi")
    add_key_routes(blueprint, config.server_name, signing_key)
    add_version_routes(blueprint)
    return FederationAPI(blueprint=blueprint)
