"""Who is calling: every sync API route authenticates with the user API."""

from __future__ import annotations

from myelin.userapi.v1 import userapi_pb2
from sanic import Request

from common.guest_access import check_guest_request
from common.http import access_token
from syncapi.internal.client_events import Requester
from userapi.api import AuthenticationAPI

# The client-server API versions the routes answer under.
CLIENT_PREFIXES = ("/_matrix/client/v3", "/_matrix/client/r0")


async def authenticate(userapi: AuthenticationAPI, request: Request) -> Requester:
    """The requester; MissingToken / UnknownToken (401) propagate to the error
    handler, and a guest on an endpoint not open to guests is 403."""
    device = await userapi.query_access_token(
        userapi_pb2.QueryAccessTokenRequest(access_token=access_token(request)))
    check_guest_request(device.is_guest, request)
    return Requester(user_id=device.user_id, device_id=device.device_id)
