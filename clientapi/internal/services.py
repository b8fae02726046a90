"""What the client API's routes share: its neighbours, its storage, the
server's identity and the rate limiters."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import OrderedDict
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from myelin.roomserver.v1 import events_pb2, input_log_pb2
from myelin.roomserver.v1 import roomserver_pb2 as rs_pb
from myelin.userapi.v1 import userapi_pb2 as ua_pb
from sanic import Request

from clientapi.internal.ratelimit import TokenBucketLimiter
from clientapi.internal.uia import SessionSigner
from clientapi.storage.database import ClientAPIDatabase
from common import errors
from common.built_events import note_built
from common.config import Config
from common.guest_access import check_guest_request
from common.http import access_token
from common.keyed_locks import KeyedLocks
from common.log import Log
from federationapi.api import FederationInternalAPI
from matrixlib.events import Event
from matrixlib.signing import SigningKey
from roomserver.api import ClientRoomserverAPI
from userapi.api import UserAPI

logger = logging.getLogger(__name__)

RECENT_TRANSACTIONS = 10_000


def _is_internal(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private


@dataclass
class Services:
    config: Config
    roomserver: ClientRoomserverAPI
    userapi: UserAPI
    signing_key: SigningKey
    database: ClientAPIDatabase
    log: Log | None
    send_limiter: TokenBucketLimiter
    login_limiter: TokenBucketLimiter
    register_limiter: TokenBucketLimiter
    sessions: SessionSigner
    # Reaches other servers (remote joins, invites, profiles, keys). None
    # when the deployment has no federation API.
    federation: FederationInternalAPI | None = None
    # The timestamp of the last room this process created (createroom.py
    # keeps room version 12 room IDs, which are hashes, distinct).
    last_room_creation_ts: int = 0
    # key -> [lock, how many requests hold or await it]
    _txn_locks: KeyedLocks[tuple[str, ...]] = field(default_factory=KeyedLocks)
    # Transactions this process completed lately: a quick retry is answered
    # without the database. Bounded; the database remains the record.
    completed_transactions: OrderedDict[tuple[str, ...], str] = field(default_factory=OrderedDict)
    _background: set[asyncio.Task[None]] = field(default_factory=set)
    # Built from config.rate_limits (the three above come from the component).
    login_account_limiter: TokenBucketLimiter = field(init=False)
    failed_login_limiter: TokenBucketLimiter = field(init=False)
    join_limiter: TokenBucketLimiter = field(init=False)
    invite_limiter: TokenBucketLimiter = field(init=False)
    room_creation_limiter: TokenBucketLimiter = field(init=False)

    def __post_init__(self) -> None:
        limits = self.config.rate_limits
        self.login_account_limiter = TokenBucketLimiter(limits.login_per_account, enabled=limits.enabled)
        self.failed_login_limiter = TokenBucketLimiter(limits.failed_login_per_account, enabled=limits.enabled)
        self.join_limiter = TokenBucketLimiter(limits.join_per_user, enabled=limits.enabled)
        self.invite_limiter = TokenBucketLimiter(limits.invite_per_user, enabled=limits.enabled)
        self.room_creation_limiter = TokenBucketLimiter(limits.room_creation_per_user, enabled=limits.enabled)

    @property
    def server_name(self) -> str:
        return self.config.server_name

    @property
    def base_url(self) -> str:
        """The URL clients reach this server at (well-known, login)."""
        return self.config.public_baseurl or f"https://{self.config.server_name}/"

    # -- callers --------------------------------------------------------------

    async def device_for(self, request: Request, *, allow_expired: bool = False) -> ua_pb.Device:
        """The caller's device; M_MISSING_TOKEN / M_UNKNOWN_TOKEN otherwise
        (``allow_expired``: an expired access token is still the device's);
        403 M_GUEST_ACCESS_FORBIDDEN for a guest on an endpoint not open to guests."""
        token = access_token(request)
        try:
            device = await self.userapi.query_access_token(
                ua_pb.QueryAccessTokenRequest(access_token=token, allow_expired=allow_expired))
        except errors.UnknownToken as e:
            e.extra.setdefault("soft_logout", False)
            raise
        check_guest_request(device.is_guest, request)
        return device

    @staticmethod
    def client_ip(request: Request) -> str:
        """The client's address, for per-IP rate limits. Behind the split
        deployment's router (or nginx) every request comes from the proxy,
        so a proxy's X-Forwarded-For is believed when the direct peer is on
        loopback or a private network; the last entry is the one the
        nearest proxy added."""
        peer = str(request.ip or "")
        forwarded = request.headers.get("x-forwarded-for", "")
        if forwarded and _is_internal(peer):
            last = forwarded.split(",")[-1].strip()
            if last:
                return last
        return peer

    def transaction_lock(self, *key: str) -> AbstractAsyncContextManager[None]:
        """Serialises requests that reuse one transaction ID, so a retry that
        races the original waits for it instead of sending twice."""
        return self._txn_locks.hold(key)

    def transaction_done(self, key: tuple[str, str, str, str], event_id: str) -> None:
        """Remembers the answer, so a retry to this process is answered at once."""
        self.completed_transactions[key] = event_id
        while len(self.completed_transactions) > RECENT_TRANSACTIONS:
            self.completed_transactions.popitem(last=False)

    async def close(self) -> None:
        """Waits for the background writes."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # -- writing events -------------------------------------------------------

    async def input_events(self, events: list[Event], *,
                           txn: events_pb2.TransactionID | None = None) -> None:
        """Inputs the events in one call and waits for the room server's
        verdict: REJECTED (or soft-failed) is 403 M_FORBIDDEN, INVALID 400."""
        for event in events:
            # A room server in this process takes the event back instead of
            # parsing its JSON again (common/built_events.py).
            note_built(event)
        request = rs_pb.InputRoomEventsRequest(wait=True, events=[
            input_log_pb2.InputRoomEvent(
                kind=input_log_pb2.INPUT_KIND_NEW,
                event=events_pb2.Event(event_id=event.event_id, room_version=event.room_version.identifier,
                                       pdu_json=event.to_json()),
                transaction_id=txn)
            for event in events
        ])
        answer = await self.roomserver.input_room_events(request)
        for result in answer.results:
            check_input_outcome(result.outcome, result.reason, result.event_id)


def check_input_outcome(outcome: int, reason: str, event_id: str) -> None:
    """The room server's verdict on an event as the client's error: REJECTED
    (or soft-failed) is 403 M_FORBIDDEN, INVALID 400 M_BAD_JSON."""
    if outcome in (rs_pb.INPUT_OUTCOME_ACCEPTED, rs_pb.INPUT_OUTCOME_DUPLICATE):
        return
    if outcome in (rs_pb.INPUT_OUTCOME_REJECTED, rs_pb.INPUT_OUTCOME_SOFT_FAILED):
        raise errors.Forbidden(reason or "The event was not allowed")
    if outcome == rs_pb.INPUT_OUTCOME_INVALID:
        raise errors.BadJSON(reason or "The event was invalid")
    raise errors.MatrixError(f"the room server gave no outcome for {event_id}")
