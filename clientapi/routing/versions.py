"""GET /_matrix/client/versions, GET /.well-known/matrix/client,
GET /.well-known/matrix/support, GET /capabilities and GET /v1/auth_metadata.

The support information is the config's ``well_known_support`` (404, as
the spec says, when there is none). This server has no OAuth 2.0 API:
auth_metadata answers the spec's 404 M_UNRECOGNIZED, so clients use the
Matrix login API."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal.services import Services
from clientapi.routing import client_route
from common import errors
from common.http import json_response
from matrixlib.room_versions import KNOWN_ROOM_VERSIONS

# Spec versions whose client-server API this server follows for the
# endpoints it serves (v3 paths, with r0 aliases for old clients). v1.13
# and later are not claimed: clients would expect what they added.
SUPPORTED_VERSIONS = [f"v1.{minor}" for minor in range(1, 13)]


def add_routes(blueprint: Blueprint, services: Services) -> None:
    async def versions(request: Request) -> HTTPResponse:
        return json_response({"versions": SUPPORTED_VERSIONS, "unstable_features": {}})

    async def well_known_client(request: Request) -> HTTPResponse:
        return json_response({"m.homeserver": {"base_url": services.base_url}})

    async def capabilities(request: Request) -> HTTPResponse:
        await services.device_for(request)
        return json_response({"capabilities": {
            "m.room_versions": {
                "default": services.config.default_room_version,
                "available": {version: "stable" for version in KNOWN_ROOM_VERSIONS},
            },
            "m.change_password": {"enabled": True},
            "m.set_displayname": {"enabled": True},
            "m.set_avatar_url": {"enabled": True},
            # Not served: say so, so clients hide the option.
            "m.3pid_changes": {"enabled": False},
            "m.get_login_token": {"enabled": True},
            "m.profile_fields": {"enabled": True, "allowed": ["displayname", "avatar_url"]},
        }})

    async def well_known_support(request: Request) -> HTTPResponse:
        support = services.config.well_known_support
        if not support:
            raise errors.NotFound("No server support information available")
        return json_response(support)

    async def auth_metadata(request: Request) -> HTTPResponse:
        raise errors.Unrecognized("This server does not support the OAuth 2.0 API")

    client_route(blueprint, "/capabilities", capabilities, ["GET"], name="capabilities")
    blueprint.add_route(versions, "/_matrix/client/versions", methods=["GET"], name="versions")
    blueprint.add_route(well_known_client, "/.well-known/matrix/client", methods=["GET"],
                        name="well_known_client")
    blueprint.add_route(well_known_support, "/.well-known/matrix/support", methods=["GET"],
                        name="well_known_support")
    client_route(blueprint, "/auth_metadata", auth_metadata, ["GET"], name="auth_metadata",
                 prefixes=("/_matrix/client/v1",))
