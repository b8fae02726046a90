"""The client API's HTTP routes, one module per area. Each module's
``add_routes(blueprint, services)`` registers its handlers."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from sanic import Blueprint
from sanic.response import HTTPResponse

# The spec's current prefix and the older one some clients still use.
CLIENT_PREFIXES = ("/_matrix/client/v3", "/_matrix/client/r0")

Handler = Callable[..., Coroutine[Any, Any, HTTPResponse]]


def client_route(blueprint: Blueprint, path: str, handler: Handler, methods: Sequence[str],
                 *, name: str, prefixes: Sequence[str] = CLIENT_PREFIXES) -> None:
    """Serves ``handler`` at ``path`` under every client prefix."""
    for index, prefix in enumerate(prefixes):
        kwargs: dict[str, Any] = {"methods": list(methods), "name": f"{name}_{index}",
                                  "strict_slashes": False, "unquote": True}
        if "DELETE" in methods:
            # Sanic skips DELETE bodies unless told; the spec puts UIA in them.
            kwargs["ignore_body"] = False
        blueprint.add_route(handler, prefix + path, **kwargs)
