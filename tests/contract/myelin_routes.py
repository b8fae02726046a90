"""The routes Myelin serves, read from the single process's own app.

``capture_monolith_app`` runs ``homeserver.monolith.run_monolith`` in this
process on a throwaway data directory up to the moment it would start
listening, and keeps the Sanic app it built: every blueprint the wiring
mounts (client API, sync API, federation API, and whatever is added later)
is in its router, so no list of endpoints is kept by hand.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest.mock import patch

from sanic import Sanic
from sanic.exceptions import MethodNotAllowed, NotFound

import homeserver.monolith as monolith
from common.http import App
from homeserver.cli import generate_config


class _Captured(Exception):
    """Raised in place of serving, to stop the monolith once its app exists."""


@dataclass(frozen=True)
class MyelinRoute:
    method: str     # "PUT"
    path: str       # "/_matrix/client/v3/rooms/<room_id:str>/send/<event_type:str>/<txn_id:str>"

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


async def _capture(captured: list[App], app: App, address: str, **kwargs: Any) -> Any:
    captured.append(app)
    raise _Captured


async def capture_monolith_app(workdir: Path) -> App:
    """The app ``run_monolith`` would serve, with its router finalised."""
    config = generate_config(server_name="localhost", data_dir=workdir / "data",
                             output=workdir / "myelin.yaml", client_port=0)
    captured: list[App] = []
    # The wiring calls serve_app once it has built the app: take the app there.
    with patch.object(monolith, "serve_app", functools.partial(_capture, captured)):
        try:
            await monolith.run_monolith(config)
        except* _Captured:
            pass
    app = captured[0]
    # The name is free again for other apps made in this process (Sanic keeps a registry).
    Sanic.unregister_app(app)
    app.router.finalize()
    return app


def monolith_app(workdir: Path) -> App:
    return asyncio.run(capture_monolith_app(workdir))


def routes_of(app: App) -> list[MyelinRoute]:
    found = {MyelinRoute(method, "/" + route.path)
             for route in app.router.routes for method in route.methods
             if method not in ("OPTIONS", "HEAD")}
    return sorted(found, key=lambda r: (r.path, r.method))


def route_for(app: App, method: str, path: str) -> MyelinRoute | None:
    """The route that serves ``method path`` (a concrete, quoted path), if any."""
    try:
        route, _handler, _params = app.router.get(path, method, None)
    except (NotFound, MethodNotAllowed):
        return None
    return MyelinRoute(method, "/" + route.path)
