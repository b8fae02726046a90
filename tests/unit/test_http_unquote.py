"""common.http.make_app: every route's path parameters are percent-decoded,
whatever the order sanic-routing happens to build its tree in (a route that
did not ask for decoding used to turn it off for routes sharing its prefix,
depending on the process's hash seed)."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common.http import json_response, make_app


async def handler(request: Request, **params: str) -> HTTPResponse:
    return json_response(params)


def test_path_parameters_are_decoded_next_to_a_route_that_did_not_ask() -> None:
    blueprint = Blueprint("unquote_test")
    # The deeper route is put in the tree first and creates the shared
    # "_matrix" prefix without decoding.
    blueprint.add_route(handler, "/_matrix/a/b/c/<media_id>/<width>", methods=["GET"], name="deep")
    blueprint.add_route(handler, "/_matrix/rooms/<room_id>", methods=["PUT"], name="room", unquote=True)
    app = make_app("unquote_test", [blueprint])
    app.router.finalize()
    _, _, params = app.router.get("/_matrix/rooms/%21abc%3Aexample.org", "PUT", None)
    assert params == {"room_id": "!abc:example.org"}
    _, _, params = app.router.get("/_matrix/a/b/c/%24x/10", "GET", None)
    assert params == {"media_id": "$x", "width": "10"}
