"""HTTP plumbing shared by the fronts (client API, sync API, federation API).

Each front exposes its routes as a Sanic ``Blueprint``; the process wiring
(``homeserver/``) mounts one or several blueprints on one app with
``make_app``. This module owns what every route needs the same way: the
spec's error JSON for every failure, JSON bodies, access tokens, CORS, and
serving an app inside the caller's asyncio loop next to other tasks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from sanic import Blueprint, Request, Sanic
from sanic.exceptions import MethodNotAllowed, NotFound, SanicException
from sanic.response import HTTPResponse
from sanic.response import json as sanic_json
from sanic.signals import SignalRouter

from common import errors

logger = logging.getLogger(__name__)

App = Sanic[Any, Any]

# The spec's limit on a whole event; bodies are allowed a little more for
# the request envelope around the content.
MAX_EVENT_BYTES = 65536
MAX_REQUEST_BYTES = 1024 * 1024 * 100

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization, Date",
}


def json_response(body: Any, status: int = 200) -> HTTPResponse:
    return sanic_json(body, status=status, headers=CORS_HEADERS, dumps=_dumps)


def _dumps(value: Any) -> bytes:
    # orjson: several times faster than json.dumps for a response body, the
    # same JSON (compact, UTF-8); json.dumps for what orjson refuses
    # (integers beyond 64 bits).
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def error_response(error: errors.MatrixError) -> HTTPResponse:
    return json_response(error.to_json(), status=error.status)


def parse_json_body(request: Request, *, allow_empty: bool = False) -> dict[str, Any]:
    """The request body as a JSON object: M_NOT_JSON when it is not JSON,
    M_BAD_JSON when it is JSON but not an object."""
    raw = request.body
    if not raw:
        if allow_empty:
            return {}
        raise errors.NotJSON("Content not JSON.")
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError):
        raise errors.NotJSON("Content not JSON.") from None
    if not isinstance(body, dict):
        raise errors.BadJSON("Content must be a JSON object.")
    return body


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def access_token(request: Request) -> str:
    """The access token from the Authorization header or, as the spec still
    allows, the ``access_token`` query parameter."""
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise errors.MissingToken("Invalid Authorization header.")
        return token.strip()
    token = request.args.get("access_token")
    if token:
        return str(token)
    raise errors.MissingToken("Missing access token.")


def query_int(request: Request, name: str, default: int | None = None, *,
              minimum: int | None = None, maximum: int | None = None) -> int | None:
    value = request.args.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise errors.InvalidParam(f"{name} must be an integer") from None
    if minimum is not None and number < minimum:
        raise errors.InvalidParam(f"{name} must be at least {minimum}")
    if maximum is not None and number > maximum:
        number = maximum
    return number


class _HttpSignalRouter(SignalRouter):
    """Sanic's signal router, answering at once the request-lifecycle signals
    (``http.*``) when the app has no handler for any of them.

    Sanic dispatches a dozen such signals per request (read_head, request,
    handle, routing.before/after, handler.before/after, middleware, response,
    send, complete). With no handler each is a route lookup that raises and
    catches two exceptions, about 0.1 ms of CPU a request. Sanic's touch-up,
    which removes those calls from its code, is off (see ``make_app``), so the
    router skips them: an unhandled built-in signal answers None either way
    (``allow_fail_builtin`` is off when touch-up is)."""

    def __init__(self) -> None:
        super().__init__()
        # Whether some http.* signal has a handler; known once the router is
        # finalised (at startup), None before.
        self._handles_http: bool | None = None

    async def dispatch(self, event: Any, *, context: dict[str, Any] | None = None,
                       condition: dict[str, str] | None = None, fail_not_found: bool = True,
                       inline: bool = False, reverse: bool = False) -> Any:
        if inline and isinstance(event, str) and event.startswith("http.") and not self._http_handled():
            return None
        return await super().dispatch(event, context=context, condition=condition,
                                      fail_not_found=fail_not_found, inline=inline, reverse=reverse)

    def _http_handled(self) -> bool:
        if not self.finalized or self.allow_fail_builtin:
            # Before startup, or where a missing built-in signal is an error:
            # the full dispatch decides.
            return True
        if self._handles_http is None:
            self._handles_http = any(str(route.path).lstrip(".").startswith("http.") for route in self.routes)
        return self._handles_http

    def reset(self) -> None:
        super().reset()  # type: ignore[no-untyped-call]
        self._handles_http = None


def make_app(name: str, blueprints: Iterable[Blueprint]) -> App:
    """An app serving the given blueprints, answering every error and every
    unknown path with the spec's JSON."""
    app = Sanic(name, configure_logging=False, signal_router=_HttpSignalRouter())
    app.config.REQUEST_MAX_SIZE = MAX_REQUEST_BYTES
    app.config.KEEP_ALIVE_TIMEOUT = 75
    app.config.REQUEST_TIMEOUT = 300
    app.config.RESPONSE_TIMEOUT = 300
    app.config.NOISY_EXCEPTIONS = False
    app.config.AUTO_EXTEND = False
    # Touch-up rewrites Sanic's own classes once per process; a second app (tests, or two
    # listeners in one process) would fail to start (KeyError in TouchUp.run).
    app.config.TOUCHUP = False
    for blueprint in blueprints:
        app.blueprint(blueprint)
    # Every path parameter of the Matrix APIs is percent-encoded by its
    # sender. sanic-routing decides unquoting per shared path prefix, from
    # whichever route (blueprints keep routes in a set: hash order) creates
    # the prefix first, so one route without ``unquote`` could turn it off
    # for its neighbours in some processes and not others: unquote them all.
    for group in app.router.groups.values():
        group.unquote = True
        for route in group.routes:
            route.unquote = True

    @app.exception(errors.MatrixError)
    async def on_matrix_error(request: Request, exc: errors.MatrixError) -> HTTPResponse:
        return error_response(exc)

    @app.exception(NotFound)
    async def on_not_found(request: Request, exc: Exception) -> HTTPResponse:
        return error_response(errors.Unrecognized("Unrecognized request"))

    @app.exception(MethodNotAllowed)
    async def on_bad_method(request: Request, exc: Exception) -> HTTPResponse:
        return error_response(errors.Unrecognized("Unrecognized request", http_status=405))

    @app.exception(SanicException)
    async def on_sanic_error(request: Request, exc: SanicException) -> HTTPResponse:
        status = int(getattr(exc, "status_code", 500) or 500)
        if status == 413:
            return error_response(errors.TooLarge("Request too large"))
        if status == 400:
            return error_response(errors.BadJSON(str(exc)))
        return error_response(errors.MatrixError(str(exc), http_status=status))

    @app.exception(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> HTTPResponse:
        logger.exception("unhandled error serving %s %s", request.method, request.path)
        return error_response(errors.MatrixError("Internal server error"))

    @app.on_request
    async def cors_preflight(request: Request) -> HTTPResponse | None:
        # Browsers ask before every cross-origin call; every path allows it.
        if request.method == "OPTIONS":
            return json_response({})
        return None

    return app


@dataclass
class ServingApp:
    app: App
    host: str
    port: int
    _server: Any

    async def stop(self) -> None:
        await self._server.before_stop()
        self._server.close()
        await self._server.wait_closed()
        await self._server.after_stop()


def split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


async def serve_app(app: App, address: str, *, ssl: Any = None) -> ServingApp:
    """Starts serving ``app`` on ``address`` ("host:port"; port 0 picks a
    free one) in the running loop, and answers once it accepts connections.
    The caller owns the returned handle and stops it."""
    host, port = split_host_port(address)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    server: Any = await app.create_server(sock=sock, ssl=ssl, return_asyncio_server=True,
                                          access_log=False)
    if server is None:
        raise RuntimeError("sanic did not create a server")
    await server.startup()
    await server.before_start()
    await server.after_start()
    await server.start_serving()
    return ServingApp(app=app, host=host, port=sock.getsockname()[1], _server=server)


async def serve_until_cancelled(app: App, address: str, *, ssl: Any = None,
                                started: asyncio.Event | None = None) -> None:
    serving = await serve_app(app, address, ssl=ssl)
    if started is not None:
        started.set()
    try:
        await asyncio.Event().wait()
    finally:
        await serving.stop()
