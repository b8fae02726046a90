"""Fetching a room's events from another server, checked like received PDUs
(server-server-api "Retrieving events", "Backfilling and retrieving missing
events"): ``/get_missing_events``, ``/state_ids``, ``/state``, ``/event``,
``/event_auth`` and ``/backfill``.

Every event fetched goes through ``checks.check_pdu``; events that fail it,
or that are not of the room asked about, are dropped (logged), never input.
A server that cannot be reached or answers nonsense raises ``FetchError``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote

from federationapi.client import FederationError
from federationapi.internal.context import FederationContext
from federationapi.internal.inbound.checks import CheckedPDU, PDURejected, TransactionKeys, check_pdu
from matrixlib.room_versions import RoomVersion

logger = logging.getLogger(__name__)

V1 = "/_matrix/federation/v1"
# Missing state fetched one /event at a time up to this many; more, one /state.
MAX_SINGLE_EVENT_FETCHES = 10


class FetchError(Exception):
    """The remote server could not give what was asked."""


def _q(value: str) -> str:
    return quote(value, safe="")


def _list_field(body: Any, name: str) -> list[Any]:
    if not isinstance(body, dict) or not isinstance(body.get(name), list):
        raise FetchError(f"the answer has no list {name!r}")
    items: list[Any] = body[name]
    return items


class RemoteRoom:
    """One room's events as one remote server has them."""

    def __init__(self, context: FederationContext, server: str, room_id: str, room_version: RoomVersion) -> None:
        self.context = context
        self.server = server
        self.room_id = room_id
        self.room_version = room_version

    async def _call(self, method: str, path: str, query: dict[str, Any] | None = None,
                    content: Any = None) -> Any:
        try:
            return await self.context.client.request_json(method, self.server, path, query=query, content=content)
        except FederationError as exc:
            raise FetchError(f"{method} {path.split('/')[4]} on {self.server}: {exc}") from None

    async def check_all(self, pdus: Iterable[Any]) -> list[CheckedPDU]:
        """The PDUs that pass the checks and are of this room."""
        checked: list[CheckedPDU] = []
        keys = TransactionKeys(self.context.keyring)
        for pdu in pdus:
            try:
                result = await check_pdu(keys, pdu, self.room_version)
            except PDURejected as exc:
                logger.info("dropping an event fetched from %s for %s: %s", self.server, self.room_id, exc)
                continue
            if result.event.room_id != self.room_id:
                logger.info("dropping %s fetched from %s: it is of room %s, not %s", result.event_id,
                            self.server, result.event.room_id, self.room_id)
                continue
            checked.append(result)
        return checked

    async def missing_events(self, earliest: Sequence[str], latest: Sequence[str], limit: int,
                             min_depth: int = 0) -> list[CheckedPDU]:
        body = await self._call("POST", f"{V1}/get_missing_events/{_q(self.room_id)}", content={
            "earliest_events": list(earliest), "latest_events": list(latest), "limit": limit,
            "min_depth": min_depth})
        return await self.check_all(_list_field(body, "events"))

    async def state_ids(self, event_id: str) -> tuple[list[str], list[str]]:
        """The IDs of the state before the event and of its auth chain."""
        body = await self._call("GET", f"{V1}/state_ids/{_q(self.room_id)}", query={"event_id": event_id})
        pdu_ids = _list_field(body, "pdu_ids")
        auth_ids = _list_field(body, "auth_chain_ids")
        if not all(isinstance(e, str) for e in [*pdu_ids, *auth_ids]):
            raise FetchError("state_ids answered something that is not an event ID")
        return pdu_ids, auth_ids

    async def state(self, event_id: str) -> list[CheckedPDU]:
        """The state before the event and its auth chain, as events."""
        body = await self._call("GET", f"{V1}/state/{_q(self.room_id)}", query={"event_id": event_id})
        return await self.check_all([*_list_field(body, "pdus"), *_list_field(body, "auth_chain")])

    async def event(self, event_id: str) -> CheckedPDU | None:
        body = await self._call("GET", f"{V1}/event/{_q(event_id)}")
        for checked in await self.check_all(_list_field(body, "pdus")):
            if checked.event_id == event_id:
                return checked
        return None

    async def events(self, event_ids: Sequence[str]) -> list[CheckedPDU]:
        """The events asked for that the server has and that pass the checks,
        fetched one by one (an event the server lacks is left out)."""
        found: list[CheckedPDU] = []
        for event_id in event_ids:
            try:
                checked = await self.event(event_id)
            except FetchError as exc:
                logger.info("could not fetch %s from %s: %s", event_id, self.server, exc)
                continue
            if checked is not None:
                found.append(checked)
        return found

    async def event_auth(self, event_id: str) -> list[CheckedPDU]:
        """The event's whole auth chain."""
        body = await self._call("GET", f"{V1}/event_auth/{_q(self.room_id)}/{_q(event_id)}")
        return await self.check_all(_list_field(body, "auth_chain"))

    async def backfill(self, event_ids: Sequence[str], limit: int) -> list[CheckedPDU]:
        body = await self._call("GET", f"{V1}/backfill/{_q(self.room_id)}",
                                query={"v": list(event_ids), "limit": limit})
        return await self.check_all(_list_field(body, "pdus"))
