"""Delivers notifications to the users' HTTP pushers
(data/api/push-gateway/push_notifier.yaml; content/push-gateway-api.md and
push.md, "Push notifications").

For each stored notification, each of the user's pushers of kind ``http``
is sent ``POST {data.url}`` with the notification (its event's fields,
unless the pusher's ``format`` is ``event_id_only``), the user's unread count
and the device (app ID, pushkey, the pusher's data without ``url``, the
rule's tweaks). A pushkey the gateway names in ``rejected`` is deleted from
the user API.

Delivery failures (no answer, 5xx, 429) are retried with exponential
backoff. The queue and the pending retries are IN MEMORY only: a restart
loses what was not delivered yet (a durable queue would replay them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import httpx
from myelin.userapi.v1 import userapi_pb2 as ua_pb

from syncapi.internal.push import unread_counts
from syncapi.storage.database import SyncDatabase
from syncapi.storage.tables.notifications import StoredNotification

logger = logging.getLogger(__name__)

# Deliveries under way at once.
WORKERS = 4
# Seconds for one POST to a gateway.
REQUEST_TIMEOUT = 10.0
# Backoff: the first retry after INITIAL_BACKOFF seconds, doubling up to MAX_BACKOFF,
# given up after MAX_ATTEMPTS tries.
INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 600.0
MAX_ATTEMPTS = 10
# Seconds a user's pushers are remembered: most notified users have none, and
# asking the user API for every notification would cost a call each. A pusher
# set or deleted takes up to this long to be seen.
PUSHERS_TTL = 10.0


@runtime_checkable
class PusherAPI(Protocol):
    """What delivery asks of the user API."""

    async def query_pushers(self, req: ua_pb.QueryPushersRequest) -> ua_pb.QueryPushersResponse: ...

    async def perform_pusher_set(self, req: ua_pb.PerformPusherSetRequest) -> ua_pb.PerformPusherSetResponse: ...


@dataclass(frozen=True)
class _Delivery:
    notification: StoredNotification
    pusher: ua_pb.Pusher
    attempt: int = 1


class _Retry(Exception):
    """The gateway did not take the notification; try again later."""


def gateway_request(notification: StoredNotification, event: Mapping[str, Any] | None, pusher: ua_pb.Pusher,
                    pusher_data: Mapping[str, Any], unread: int) -> dict[str, Any]:
    """The body of ``POST /_matrix/push/v1/notify`` for one pusher."""
    actions = json.loads(notification.actions_json)
    tweaks = {a["set_tweak"]: a.get("value", True) for a in actions
              if isinstance(a, dict) and isinstance(a.get("set_tweak"), str)}
    data = {k: v for k, v in pusher_data.items() if k != "url"}
    device: dict[str, Any] = {"app_id": pusher.app_id, "pushkey": pusher.pushkey, "data": data}
    if pusher.pushkey_ts:
        device["pushkey_ts"] = pusher.pushkey_ts
    if tweaks:
        device["tweaks"] = tweaks
    body: dict[str, Any] = {
        "event_id": notification.event_id, "room_id": notification.room_id,
        "counts": {"unread": unread}, "devices": [device],
        "prio": "high" if notification.highlight or "sound" in tweaks else "low",
    }
    if data.get("format") != "event_id_only" and event is not None:
        body["type"] = event.get("type")
        body["sender"] = event.get("sender")
        body["content"] = event.get("content", {})
        if event.get("state_key") is not None:
            body["user_is_target"] = event.get("state_key") == notification.user_id
    return {"notification": body}


class PusherDelivery:
    def __init__(self, database: SyncDatabase, userapi: PusherAPI | None) -> None:
        self._db = database
        # None: no pushers are known (a deployment without a user API binding that has them).
        self.userapi = userapi
        self._queue: asyncio.Queue[_Delivery | StoredNotification] = asyncio.Queue()
        self._retries: set[asyncio.Task[None]] = set()
        self.initial_backoff = INITIAL_BACKOFF
        self.request_timeout = REQUEST_TIMEOUT
        self.pushers_ttl = PUSHERS_TTL
        # user ID -> (when fetched, by the loop's clock; their pushers)
        self._pushers: dict[str, tuple[float, list[ua_pb.Pusher]]] = {}

    def enqueue(self, notifications: Sequence[StoredNotification]) -> None:
        if self.userapi is None:
            return
        now = asyncio.get_running_loop().time()
        for notification in notifications:
            cached = self._pushers.get(notification.user_id)
            if cached is not None and now - cached[0] < self.pushers_ttl and not any(
                    pusher.kind == "http" for pusher in cached[1]):
                # Known to have no pusher to deliver to (most users): what
                # a worker would decide, without waking one per notification
                # (a message in a room of ten notifies nine).
                continue
            self._queue.put_nowait(notification)

    async def run(self) -> None:
        """Delivers until cancelled (WORKERS at once)."""
        async with httpx.AsyncClient(timeout=self.request_timeout) as client:
            workers = [asyncio.create_task(self._work(client)) for _ in range(WORKERS)]
            try:
                await asyncio.gather(*workers)
            finally:
                for task in [*workers, *self._retries]:
                    task.cancel()
                for task in [*workers, *self._retries]:
                    with contextlib.suppress(BaseException):
                        await task

    async def _work(self, client: httpx.AsyncClient) -> None:
        while True:
            item = await self._queue.get()
            try:
                if isinstance(item, _Delivery):
                    await self._deliver(client, item)
                else:
                    await self._fan_out(client, item)
            except Exception:
                logger.warning("push delivery failed", exc_info=True)

    async def _fan_out(self, client: httpx.AsyncClient, notification: StoredNotification) -> None:
        for pusher in await self._pushers_of(notification.user_id):
            if pusher.kind == "http":
                await self._deliver(client, _Delivery(notification, pusher))

    async def _pushers_of(self, user_id: str) -> list[ua_pb.Pusher]:
        assert self.userapi is not None
        now = asyncio.get_running_loop().time()
        cached = self._pushers.get(user_id)
        if cached is not None and now - cached[0] < self.pushers_ttl:
            return cached[1]
        answer = await self.userapi.query_pushers(ua_pb.QueryPushersRequest(user_id=user_id))
        if len(self._pushers) > 10_000:
            self._pushers = {u: c for u, c in self._pushers.items() if now - c[0] < self.pushers_ttl}
        self._pushers[user_id] = (now, list(answer.pushers))
        return self._pushers[user_id][1]

    async def _deliver(self, client: httpx.AsyncClient, delivery: _Delivery) -> None:
        try:
            await self._post(client, delivery)
        except _Retry as e:
            if delivery.attempt >= MAX_ATTEMPTS:
                logger.warning("giving up pushing %s to %s: %s", delivery.notification.event_id,
                               delivery.pusher.app_id, e)
                return
            delay = min(MAX_BACKOFF, self.initial_backoff * 2 ** (delivery.attempt - 1))
            logger.info("push to %s failed (%s); retry %d in %.1fs", delivery.pusher.app_id, e,
                        delivery.attempt, delay)
            task = asyncio.create_task(self._retry_later(
                _Delivery(delivery.notification, delivery.pusher, delivery.attempt + 1), delay))
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)

    async def _retry_later(self, delivery: _Delivery, delay: float) -> None:
        await asyncio.sleep(delay)
        self._queue.put_nowait(delivery)

    async def _post(self, client: httpx.AsyncClient, delivery: _Delivery) -> None:
        notification, pusher = delivery.notification, delivery.pusher
        try:
            data = json.loads(pusher.data_json or b"{}")
        except ValueError:
            data = {}
        url = data.get("url") if isinstance(data, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            logger.warning("pusher %s of %s has no usable url", pusher.app_id, notification.user_id)
            return
        async with self._db.read() as reader:
            found = await reader.events_by_ids([notification.event_id])
            joined = [m.room_id for m in await reader.user_memberships(notification.user_id, ["join"])]
            counts = await unread_counts(reader, notification.user_id, joined)
        stored = found.get(notification.event_id)
        event = json.loads(stored.event_json) if stored is not None else None
        unread = sum(c.main[0] + sum(t[0] for t in (c.threads or {}).values()) for c in counts.values())
        body = gateway_request(notification, event, pusher, data, unread)
        try:
            response = await client.post(url, json=body)
        except httpx.HTTPError as e:
            raise _Retry(str(e) or type(e).__name__) from None
        if response.status_code >= 500 or response.status_code == 429:
            raise _Retry(f"HTTP {response.status_code}")
        if response.status_code >= 300:
            logger.warning("push gateway %s refused a notification: HTTP %d", url, response.status_code)
            return
        try:
            rejected = response.json().get("rejected", [])
        except (ValueError, AttributeError):
            rejected = []
        if isinstance(rejected, list) and pusher.pushkey in rejected:
            await self._drop(notification.user_id, pusher)

    async def _drop(self, user_id: str, pusher: ua_pb.Pusher) -> None:
        """The gateway says the pushkey is no longer valid: the pusher goes."""
        assert self.userapi is not None
        self._pushers.pop(user_id, None)
        logger.info("push gateway rejected %s's pushkey for %s: deleting the pusher", user_id, pusher.app_id)
        await self.userapi.perform_pusher_set(ua_pb.PerformPusherSetRequest(
            user_id=user_id, pusher=ua_pb.Pusher(app_id=pusher.app_id, pushkey=pusher.pushkey, kind="")))
