"""GET /_matrix/client/v3/sync (data/api/client-server/sync.yaml)."""

from __future__ import annotations

import asyncio

from myelin.userapi.v1 import userapi_pb2 as ua_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common import errors, json_codec
from common.http import CORS_HEADERS, query_int
from syncapi.internal.device_lists import KeyCountsAPI, add_e2ee_fields, forget_key_counts, start_key_counts
from syncapi.internal.presence import PresenceWriter
from syncapi.internal.sync import SyncHandler, SyncRequest
from syncapi.routing.auth import CLIENT_PREFIXES, authenticate
from syncapi.routing.filter import load_filter
from syncapi.storage.database import SyncDatabase
from syncapi.tokens import StreamToken
from userapi.api import AuthenticationAPI

# Long polls are capped so that a client's timeout cannot hold a request forever.
MAX_TIMEOUT_MS = 5 * 60 * 1000
PRESENCE_STATES = ("online", "offline", "unavailable")
# Key counts asked for this long before the answer is built are asked for
# again: the news that started them was not the answer's.
KEY_COUNTS_FRESH_S = 0.1


def parse_bool(request: Request, name: str) -> bool:
    value = request.args.get(name)
    if value is None:
        return False
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise errors.InvalidParam(f"{name} must be true or false")


def register(blueprint: Blueprint, database: SyncDatabase, userapi: AuthenticationAPI,
             handler: SyncHandler, presence: PresenceWriter | None = None) -> None:
    # Checked once: a runtime Protocol check walks the protocol's members.
    key_counts = userapi if isinstance(userapi, KeyCountsAPI) else None

    async def sync(request: Request) -> HTTPResponse:
        requester = await authenticate(userapi, request)
        since_text = request.args.get("since")
        since = StreamToken.parse(since_text) if since_text else None
        timeout_ms = query_int(request, "timeout", 0, minimum=0, maximum=MAX_TIMEOUT_MS) or 0
        full_state = parse_bool(request, "full_state")
        set_presence = request.args.get("set_presence")
        if set_presence is not None and set_presence not in PRESENCE_STATES:
            raise errors.InvalidParam("set_presence must be online, offline or unavailable")
        sync_filter = await load_filter(database, requester.user_id, request.args.get("filter"))
        asked: list[asyncio.Task[ua_pb.OneTimeKeyCounts]] = []
        asked_at = 0.0

        def ask_key_counts() -> None:
            # Asked for as the answer is built, not after it, or as the news
            # that wakes a long poll is written (in the split deployment a
            # call to the user API: its time then overlaps the answer's reads
            # and writes instead of adding to them). Counts asked for longer
            # ago (news that turned out to be none of this user's) are asked
            # for again.
            nonlocal asked_at
            if key_counts is None or not requester.device_id:
                return
            now = asyncio.get_running_loop().time()
            if asked:
                if now - asked_at <= KEY_COUNTS_FRESH_S:
                    return
                forget_key_counts(asked.pop())
            asked.append(start_key_counts(key_counts, requester))
            asked_at = now

        sync_request = SyncRequest(requester=requester, since=since, full_state=full_state, filter=sync_filter,
                                   timeout_ms=timeout_ms, use_state_after=parse_bool(request, "use_state_after"),
                                   # An incremental answer's member events are read
                                   # again below (device_lists): kept as dicts.
                                   serialised_events=since is None, on_building=ask_key_counts,
                                   on_news_coming=ask_key_counts)
        try:
            if presence is None:
                body = await handler.sync(sync_request)
            else:
                async with presence.syncing(requester.user_id):
                    # Before the response is built, so its token covers the change.
                    await presence.on_sync(requester.user_id, set_presence)
                    body = await handler.sync(sync_request)
        except BaseException:
            forget_key_counts(asked[0] if asked else None)
            raise
        await add_e2ee_fields(body, database, key_counts, requester, since, asked=asked[0] if asked else None)
        # A large body (an initial sync) is serialised by orjson: several
        # times faster than json_response's encoder, same JSON.
        return HTTPResponse(json_codec.dumps(body), headers=CORS_HEADERS, content_type="application/json")

    for prefix in CLIENT_PREFIXES:
        blueprint.add_route(sync, f"{prefix}/sync", methods=["GET"],
                            name=f"sync{prefix.replace('/', '_')}")
