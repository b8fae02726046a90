"""GET /_matrix/federation/v1/version."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common.http import json_response

SERVER_VERSION = "0.1.0"


def add_version_routes(blueprint: Blueprint) -> None:
    async def get_version(request: Request) -> HTTPResponse:
        return json_response({"server": {"name": "Myelin", "version": SERVER_VERSION}})

    blueprint.add_route(get_version, "/_matrix/federation/v1/version", methods=["GET"], name="version")
