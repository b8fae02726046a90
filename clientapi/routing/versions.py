"""GET /_matrix/client/versions and GET /.well-known/matrix/client."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal.services import Services
from common.http import json_response

# Spec versions whose client-server API this server follows for the
# endpoints it serves (v3 paths, with r0 aliases for old clients). v1.13
# and later are not claimed: clients would expect what they added.
SUPPORTED_VERSIONS = [f"v1.{minor}" for minor in range(1, 13)]


def add_routes(blueprint: Blueprint, services: Services) -> None:
    async def versions(request: Request) -> HTTPResponse:
        return json_response({"versions": SUPPORTED_VERSIONS, "unstable_features": {}})

    async def well_known_client(request: Request) -> HTTPResponse:
        return json_response({"m.homeserver": {"base_url": services.base_url}})

    blueprint.add_route(versions, "/_matrix/client/versions", methods=["GET"], name="versions")
    blueprint.add_route(well_known_client, "/.well-known/matrix/client", methods=["GET"],
                        name="well_known_client")
