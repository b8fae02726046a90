"""Remote users' device keys, one-time keys and device lists
(server-server-api.md, "End-to-End Encryption" and "Device Management";
data/api/server-server/user_keys.yaml, user_devices.yaml).

Outbound: ``query_keys`` and ``claim_keys`` group the users by server and
ask each server once, concurrently, within the caller's timeout; a server
that fails is reported under ``failures`` and the others' answers are kept.
Only what a server says about its own users is kept.

Inbound EDUs (registered in ``edus.EDU_HANDLERS`` when this module is
imported): ``m.device_list_update`` is applied to the user API's cache of the
remote user's devices; when its ``prev_id`` shows a gap (or the user is new
to us) the whole list is fetched with ``GET /user/devices`` instead.
``m.signing_key_update`` replaces the user's cross-signing keys. The user API
publishes both on ``userapi.device_list_update``, so local users who share a
room see them in ``device_lists.changed``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from myelin.federationapi.v1 import federationapi_pb2 as pb
from myelin.userapi.v1 import device_list_log_pb2 as dl_pb
from myelin.userapi.v1 import userapi_pb2 as ua_pb

from common import errors
from federationapi.client import FederationError, HttpResponseError
from federationapi.internal.context import FederationContext
from federationapi.internal.edus import EDU_HANDLERS, EDURefused

logger = logging.getLogger(__name__)

V1 = "/_matrix/federation/v1"
DEFAULT_TIMEOUT_MS = 10_000
MAX_TIMEOUT_MS = 60_000
KEY_FIELDS = ("device_keys", "master_keys", "self_signing_keys")


def server_of(user_id: str) -> str:
    return user_id.partition(":")[2]


def _load_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data or b"{}")
    except ValueError:
        raise errors.NotJSON(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise errors.BadJSON(f"{what} must be an object")
    return value


def _by_server(context: FederationContext, users: dict[str, Any]) -> dict[str, dict[str, Any]]:
    grouped: dict[str, dict[str, Any]] = {}
    for user_id, value in users.items():
        server = server_of(user_id)
        if not user_id.startswith("@") or not server:
            raise errors.InvalidParam(f"{user_id!r} is not a user ID")
        if server == context.server_name:
            raise errors.InvalidParam(f"{user_id} is local: ask the user API")
        grouped.setdefault(server, {})[user_id] = value
    return grouped


def _failure(error: Exception) -> dict[str, Any]:
    if isinstance(error, HttpResponseError):
        return {"status": error.status, "message": str(error)}
    if isinstance(error, TimeoutError):
        return {"status": 504, "message": "Timed out"}
    return {"status": 503, "message": str(error) or type(error).__name__}


async def _ask_each(servers: dict[str, dict[str, Any]], timeout_ms: int,
                    ask: Callable[[str, dict[str, Any]], Awaitable[Any]]
                    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(server -> answer, server -> failure), every server asked at once."""
    timeout = min(timeout_ms or DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS) / 1000

    async def one(server: str, users: dict[str, Any]) -> Any:
        return await asyncio.wait_for(ask(server, users), timeout)

    names = list(servers)
    results = await asyncio.gather(*(one(s, servers[s]) for s in names), return_exceptions=True)
    answers: dict[str, Any] = {}
    failures: dict[str, dict[str, Any]] = {}
    for server, result in zip(names, results, strict=True):
        if isinstance(result, (FederationError, TimeoutError, OSError)):
            logger.info("keys from %s failed: %s", server, result)
            failures[server] = _failure(result)
        elif isinstance(result, BaseException):
            raise result
        elif not isinstance(result, dict):
            failures[server] = {"status": 502, "message": "The answer was not a JSON object"}
        else:
            answers[server] = result
    return answers, failures


def _own_users(server: str, found: Any) -> dict[str, Any]:
    """What a server said about its own users (anything else is dropped)."""
    if not isinstance(found, dict):
        return {}
    return {u: v for u, v in found.items() if isinstance(u, str) and server_of(u) == server and isinstance(v, dict)}


async def query_keys(context: FederationContext, req: pb.QueryKeysRequest) -> pb.QueryKeysResponse:
    wanted = _load_object(req.device_keys_json, "device_keys")
    servers = _by_server(context, wanted)

    async def ask(server: str, users: dict[str, Any]) -> Any:
        return await context.client.post_json(server, f"{V1}/user/keys/query", {"device_keys": users})

    answers, failures = await _ask_each(servers, req.timeout_ms, ask)
    result: dict[str, Any] = {field: {} for field in KEY_FIELDS}
    for server, answer in answers.items():
        for field in KEY_FIELDS:
            result[field].update(_own_users(server, answer.get(field)))
    result["failures"] = failures
    return pb.QueryKeysResponse(response_json=json.dumps(result).encode())


async def claim_keys(context: FederationContext, req: pb.ClaimKeysRequest) -> pb.ClaimKeysResponse:
    wanted = _load_object(req.one_time_keys_json, "one_time_keys")
    servers = _by_server(context, wanted)

    async def ask(server: str, users: dict[str, Any]) -> Any:
        return await context.client.post_json(server, f"{V1}/user/keys/claim", {"one_time_keys": users})

    answers, failures = await _ask_each(servers, req.timeout_ms, ask)
    one_time_keys: dict[str, Any] = {}
    for server, answer in answers.items():
        one_time_keys.update(_own_users(server, answer.get("one_time_keys")))
    return pb.ClaimKeysResponse(response_json=json.dumps(
        {"one_time_keys": one_time_keys, "failures": failures}).encode())


async def fetch_user_devices(context: FederationContext, user_id: str) -> dict[str, Any]:
    """``GET /user/devices/{userId}`` of the user's server, checked to be about that user."""
    server = server_of(user_id)
    if server == context.server_name or not user_id.startswith("@") or not server:
        raise errors.InvalidParam(f"{user_id!r} is not a remote user ID")
    try:
        answer = await context.client.get_json(server, f"{V1}/user/devices/{quote(user_id, safe='')}")
    except HttpResponseError as e:
        if e.status == 404:
            raise errors.NotFound(f"{server} does not know {user_id}") from None
        raise errors.Unavailable(f"{server} answered {e.status}") from None
    except FederationError as e:
        raise errors.Unavailable(f"{server} cannot be reached: {e}") from None
    if not isinstance(answer, dict) or answer.get("user_id") != user_id or not isinstance(
            answer.get("devices", []), list):
        raise errors.Unavailable(f"{server} answered /user/devices with something else")
    return answer


async def query_user_devices(context: FederationContext,
                             req: pb.QueryUserDevicesRequest) -> pb.QueryUserDevicesResponse:
    answer = await fetch_user_devices(context, req.user_id)
    return pb.QueryUserDevicesResponse(response_json=json.dumps(answer).encode())


# -- inbound EDUs ------------------------------------------------------------------------


def _user_of_origin(origin: str, content: dict[str, Any]) -> str:
    user_id = content.get("user_id")
    if not isinstance(user_id, str) or not user_id.startswith("@") or server_of(user_id) != origin:
        raise EDURefused(f"{user_id!r} does not belong to {origin}")
    return user_id


def _json_or_empty(value: Any) -> bytes:
    return json.dumps(value).encode() if isinstance(value, dict) else b""


async def resync_device_list(context: FederationContext, user_id: str) -> None:
    """Replaces the cached device list of a remote user by their server's."""
    if context.userapi is None:
        return
    answer = await fetch_user_devices(context, user_id)
    stream_id = answer.get("stream_id")
    await context.userapi.perform_remote_device_list_resync(ua_pb.UserDevices(
        user_id=user_id, stream_id=stream_id if isinstance(stream_id, int) and not isinstance(stream_id, bool) else 0,
        devices_json=json.dumps(answer.get("devices") or []).encode(),
        master_key_json=_json_or_empty(answer.get("master_key")),
        self_signing_key_json=_json_or_empty(answer.get("self_signing_key"))))


async def handle_device_list_update(context: FederationContext, origin: str, content: dict[str, Any]) -> None:
    user_id = _user_of_origin(origin, content)
    device_id = content.get("device_id")
    stream_id = content.get("stream_id")
    if not isinstance(device_id, str) or not device_id:
        raise EDURefused("device_id must be a non-empty string")
    if not isinstance(stream_id, int) or isinstance(stream_id, bool):
        raise EDURefused("stream_id must be an integer")
    prev_ids = content.get("prev_id") or []
    if not isinstance(prev_ids, list) or not all(isinstance(p, int) and not isinstance(p, bool) for p in prev_ids):
        raise EDURefused("prev_id must be a list of integers")
    name = content.get("device_display_name")
    if context.userapi is None:
        return
    answer = await context.userapi.perform_remote_device_list_update(dl_pb.DeviceListUpdate(
        user_id=user_id, kind=dl_pb.DeviceListUpdate.DEVICE, device_id=device_id, stream_id=stream_id,
        prev_ids=prev_ids, deleted=content.get("deleted") is True,
        device_display_name=name if isinstance(name, str) else "",
        device_keys_json=_json_or_empty(content.get("keys"))))
    if answer.needs_resync:
        try:
            await resync_device_list(context, user_id)
        except errors.MatrixError as e:
            # The next update will show the gap again and try again.
            logger.info("device list of %s not resynced: %s", user_id, e)


async def handle_signing_key_update(context: FederationContext, origin: str, content: dict[str, Any]) -> None:
    user_id = _user_of_origin(origin, content)
    if context.userapi is None:
        return
    try:
        await context.userapi.perform_remote_signing_key_update(ua_pb.PerformRemoteSigningKeyUpdateRequest(
            user_id=user_id, master_key_json=_json_or_empty(content.get("master_key")),
            self_signing_key_json=_json_or_empty(content.get("self_signing_key"))))
    except (errors.InvalidParam, errors.BadJSON, errors.Forbidden) as e:
        raise EDURefused(str(e)) from None


EDU_HANDLERS["m.device_list_update"] = handle_device_list_update
EDU_HANDLERS["m.signing_key_update"] = handle_signing_key_update
