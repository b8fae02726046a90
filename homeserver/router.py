"""The split deployment's front door: one base URL for clients, each request
forwarded to the component that serves its path (``homeserver/routes.py``).

It holds no state, so several can run behind a load balancer. Bodies are
forwarded as they are; long-polls (``/sync?timeout=``) are held open for as
long as the component takes.
"""

from __future__ import annotations

import logging

import httpx
from sanic import Request, Sanic
from sanic.response import HTTPResponse

from common import errors
from common.config import Config
from common.http import error_response, serve_until_cancelled
from homeserver.routes import component_for_path

logger = logging.getLogger(__name__)

# Hop-by-hop headers are for one connection only and must not be forwarded.
_HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
    "transfer-encoding", "upgrade", "content-length", "host", "content-encoding",
}


def make_router_app(config: Config) -> Sanic:  # type: ignore[type-arg]
    upstreams = {
        name: f"http://{config.address_of(name).http}"
        for name in ("clientapi", "syncapi", "federationapi", "mediaapi")
        if config.address_of(name).http
    }
    app: Sanic = Sanic("myelin_router", configure_logging=False)  # type: ignore[type-arg]
    app.config.REQUEST_MAX_SIZE = 100 * 1024 * 1024
    app.config.REQUEST_TIMEOUT = 600
    app.config.RESPONSE_TIMEOUT = 600
    app.config.KEEP_ALIVE_TIMEOUT = 75
    client = httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=5.0),
                               limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200))

    async def forward(request: Request, path: str = "") -> HTTPResponse:
        component = component_for_path(request.path)
        upstream = upstreams.get(component)
        if upstream is None:
            return error_response(errors.Unrecognized(f"no {component} in this deployment"))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["x-forwarded-for"] = request.ip
        url = upstream + request.path + (f"?{request.query_string}" if request.query_string else "")
        try:
            response = await client.request(request.method, url, headers=headers, content=request.body)
        except httpx.HTTPError as e:
            logger.warning("forwarding %s to %s failed: %s", request.path, component, e)
            return error_response(errors.Unavailable(f"{component} is unavailable"))
        out_headers = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP}
        return HTTPResponse(body=response.content, status=response.status_code, headers=out_headers)

    app.add_route(forward, "/", methods=["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"],
                  name="root")
    app.add_route(forward, "/<path:path>", methods=["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"],
                  name="forward")

    @app.after_server_stop
    async def close_client(app: Sanic, _: object) -> None:  # type: ignore[type-arg]
        await client.aclose()

    return app


async def run_router(config: Config) -> None:
    await serve_until_cancelled(make_router_app(config), config.client_listen)
