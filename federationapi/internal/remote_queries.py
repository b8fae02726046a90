"""Remote profile, alias and public room directory lookups.

Spec: data/api/server-server/query.yaml (``/v1/query/profile``,
``/v1/query/directory``) and public_rooms.yaml (``/v1/publicRooms``). The
client API shows the answers to its clients, so what reaches them is in
the client-server API's terms: a remote 404, an answer that is not the
expected shape, or a server that cannot be reached are all 404 M_NOT_FOUND
for a profile or an alias (the only error statuses the client-server spec
gives those endpoints); a directory that cannot be read is 502.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from myelin.federationapi.v1 import federationapi_pb2 as pb

from common import errors
from common.room_directory import public_room_matches
from federationapi.client import FederationError, HttpResponseError
from federationapi.internal.context import FederationContext
from matrixlib.ids import InvalidIdentifierError, RoomAlias, UserID

logger = logging.getLogger(__name__)

V1 = "/_matrix/federation/v1"
PROFILE_FIELDS = ("displayname", "avatar_url")
# A remote directory page larger than this is cut (a hostile server could
# answer with anything).
MAX_PUBLIC_ROOMS = 1000


def _remote_domain_of_user(context: FederationContext, user_id: str) -> str:
    try:
        domain = UserID.parse(user_id).server_name
    except InvalidIdentifierError:
        raise errors.InvalidParam(f"{user_id!r} is not a valid user ID") from None
    if domain == context.server_name:
        raise errors.InvalidParam("The user is local: ask the user API")
    return domain


async def query_profile(context: FederationContext, req: pb.QueryProfileRequest) -> pb.QueryProfileResponse:
    """``GET /v1/query/profile`` of the user's server; the answer keeps only
    the string fields a profile has (all of them, or the one asked for)."""
    if req.field and req.field not in PROFILE_FIELDS:
        raise errors.NotFound(f"The profile field {req.field} does not exist")
    domain = _remote_domain_of_user(context, req.user_id)
    query = {"user_id": req.user_id}
    if req.field:
        query["field"] = req.field
    try:
        answer = await context.client.get_json(domain, f"{V1}/query/profile", query=query)
    except HttpResponseError as e:
        logger.info("profile of %s: %s answered %s", req.user_id, domain, e.status)
        raise errors.NotFound("Profile was not found") from None
    except FederationError as e:
        logger.info("profile of %s: %s cannot be reached: %s", req.user_id, domain, e)
        raise errors.NotFound("Profile was not found (its server cannot be reached)") from None
    if not isinstance(answer, dict):
        raise errors.NotFound("Profile was not found (the remote answer is not a profile)")
    wanted = (req.field,) if req.field else PROFILE_FIELDS
    profile = {k: answer[k] for k in wanted if isinstance(answer.get(k), str)}
    return pb.QueryProfileResponse(profile_json=json.dumps(profile).encode())


async def query_room_alias(context: FederationContext, req: pb.QueryRoomAliasRequest) -> pb.QueryRoomAliasResponse:
    """``GET /v1/query/directory`` of the alias's server."""
    try:
        domain = RoomAlias.parse(req.alias).server_name
    except InvalidIdentifierError:
        raise errors.InvalidParam(f"{req.alias!r} is not a valid room alias") from None
    if domain == context.server_name:
        raise errors.InvalidParam("The alias is local: ask the room server")
    try:
        answer = await context.client.get_json(domain, f"{V1}/query/directory", query={"room_alias": req.alias})
    except HttpResponseError as e:
        logger.info("alias %s: %s answered %s", req.alias, domain, e.status)
        raise errors.NotFound(f"Room alias {req.alias} not found") from None
    except FederationError as e:
        logger.info("alias %s: %s cannot be reached: %s", req.alias, domain, e)
        raise errors.NotFound(f"Room alias {req.alias} not found (its server cannot be reached)") from None
    room_id = answer.get("room_id") if isinstance(answer, dict) else None
    servers = answer.get("servers") if isinstance(answer, dict) else None
    if not isinstance(room_id, str) or not room_id.startswith("!"):
        raise errors.NotFound(f"Room alias {req.alias} not found (the remote answer has no room ID)")
    server_list = [s for s in servers if isinstance(s, str) and s] if isinstance(servers, list) else []
    if domain not in server_list:
        # The alias's own server knows the room, whatever it listed.
        server_list.append(domain)
    return pb.QueryRoomAliasResponse(room_id=room_id, servers=server_list)


def _fallback_query(body: dict[str, Any]) -> dict[str, Any]:
    query: dict[str, Any] = {}
    if isinstance(body.get("limit"), int):
        query["limit"] = str(body["limit"])
    if isinstance(body.get("since"), str):
        query["since"] = body["since"]
    if body.get("include_all_networks") is True:
        query["include_all_networks"] = "true"
    if isinstance(body.get("third_party_instance_id"), str):
        query["third_party_instance_id"] = body["third_party_instance_id"]
    return query


def _is_unsupported(e: HttpResponseError) -> bool:
    """Whether the remote does not know the POST form (Synapse's test:
    404/405, or 400 M_UNRECOGNIZED)."""
    if e.status in (404, 405):
        return True
    errcode = e.json.get("errcode") if isinstance(e.json, dict) else None
    return e.status == 400 and errcode == "M_UNRECOGNIZED"


async def query_public_rooms(context: FederationContext, req: pb.QueryPublicRoomsRequest
                             ) -> pb.QueryPublicRoomsResponse:
    """``POST /v1/publicRooms`` of the server (with the client's filter);
    when the server knows only the older ``GET`` form, that, with the search
    filter applied here."""
    if not req.server_name or req.server_name == context.server_name:
        raise errors.InvalidParam("The directory to read must be another server's")
    try:
        body = json.loads(req.request_json) if req.request_json else {}
    except ValueError:
        raise errors.BadJSON("request_json is not JSON") from None
    if not isinstance(body, dict):
        raise errors.BadJSON("request_json must be a JSON object")
    path = f"{V1}/publicRooms"
    filtered_here = False
    try:
        try:
            answer = await context.client.post_json(req.server_name, path, body)
        except HttpResponseError as e:
            if not _is_unsupported(e):
                raise
            answer = await context.client.get_json(req.server_name, path, query=_fallback_query(body))
            filtered_here = True
    except FederationError as e:
        logger.info("public rooms of %s cannot be read: %s", req.server_name, e)
        raise errors.MatrixError(f"Failed to fetch the room list of {req.server_name}", http_status=502) from None
    if not isinstance(answer, dict) or not isinstance(answer.get("chunk"), list):
        raise errors.MatrixError(f"{req.server_name} answered a room list without a chunk", http_status=502)
    chunk = [entry for entry in answer["chunk"][:MAX_PUBLIC_ROOMS]
             if isinstance(entry, dict) and isinstance(entry.get("room_id"), str)]
    if filtered_here:
        search_filter = body.get("filter")
        search: dict[str, Any] = search_filter if isinstance(search_filter, dict) else {}
        term = search.get("generic_search_term")
        room_types = search.get("room_types")
        chunk = [entry for entry in chunk
                 if public_room_matches(entry, term if isinstance(term, str) else None,
                                        room_types if isinstance(room_types, list) else None)]
    result: dict[str, Any] = {"chunk": chunk}
    for key in ("next_batch", "prev_batch"):
        if isinstance(answer.get(key), str):
            result[key] = answer[key]
    estimate = answer.get("total_room_count_estimate")
    if isinstance(estimate, int) and not isinstance(estimate, bool):
        result["total_room_count_estimate"] = estimate
    return pb.QueryPublicRoomsResponse(response_json=json.dumps(result).encode())
