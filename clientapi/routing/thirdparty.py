"""GET /thirdparty/protocols, /thirdparty/protocol/{protocol},
/thirdparty/location[/{protocol}] and /thirdparty/user[/{protocol}].

Spec: data/api/client-server/third_party_lookup.yaml. Third-party networks
are bridged by application services, and this server has none, so it
knows no protocol: the list is empty, a named protocol is 404 M_NOT_FOUND,
and lookups find nothing (as Synapse answers without application services).
"""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal.services import Services
from clientapi.routing import client_route
from common import errors
from common.http import json_response


def add_routes(blueprint: Blueprint, services: Services) -> None:
    async def protocols(request: Request) -> HTTPResponse:
        await services.device_for(request)
        return json_response({})

    async def protocol(request: Request, protocol: str) -> HTTPResponse:
        await services.device_for(request)
        raise errors.NotFound(f"Unknown protocol {protocol}")

    async def lookup_by_protocol(request: Request, protocol: str) -> HTTPResponse:
        await services.device_for(request)
        return json_response([])

    async def lookup(request: Request) -> HTTPResponse:
        await services.device_for(request)
        return json_response([])

    client_route(blueprint, "/thirdparty/protocols", protocols, ["GET"], name="thirdparty_protocols")
    client_route(blueprint, "/thirdparty/protocol/<protocol>", protocol, ["GET"], name="thirdparty_protocol")
    for kind in ("location", "user"):
        client_route(blueprint, f"/thirdparty/{kind}/<protocol>", lookup_by_protocol, ["GET"],
                     name=f"thirdparty_{kind}_protocol")
        client_route(blueprint, f"/thirdparty/{kind}", lookup, ["GET"], name=f"thirdparty_{kind}")
