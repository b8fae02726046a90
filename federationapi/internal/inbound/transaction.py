"""Inbound ``/send`` transactions (server-server-api "Transactions",
data/api/server-server/transactions.yaml).

A transaction of at most 50 PDUs and 100 EDUs is processed once per
(origin, transaction ID): its answer is stored and a retry gets it again
without anything being processed twice. One origin's transactions are
processed one at a time, as Synapse does.

PDUs are grouped by room. A room the room server does not know (or knows
only as a stub: we are not in it), or whose server ACL denies the origin,
gets an error for each of its PDUs. Otherwise each PDU is checked
(``checks.py``) and the room's PDUs go to the room server in the order
received (``room_input.py``); different rooms go in parallel. EDUs are
dispatched to ``edus.EDU_HANDLERS``.

A PDU that fails because of us (the room server unreachable, a bug) gets an
error too, and the answer is then not stored, so that the sender's retry
processes the transaction again (input is idempotent by event ID).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from myelin.roomserver.v1 import roomserver_pb2 as rs_pb

from common import errors
from federationapi.internal.access import RoomAccess
from federationapi.internal.context import FederationContext
from federationapi.internal.edus import handle_edu
from federationapi.internal.inbound.checks import (
    CheckedPDU,
    PDURejected,
    TransactionKeys,
    check_pdu,
    event_id_of,
)
from federationapi.internal.inbound.room_input import RoomInput
from matrixlib.room_versions import DEFAULT_ROOM_VERSION, UnknownRoomVersionError, get_room_version

logger = logging.getLogger(__name__)

MAX_PDUS = 50
MAX_EDUS = 100
# Answers are kept this long for retries (a sender retries for minutes, and
# a new transaction ID after a restart); older ones are deleted now and then.
KEEP_ANSWERS_MS = 24 * 3600 * 1000
PRUNE_INTERVAL_SECONDS = 3600.0


def validate_transaction(body: Any) -> tuple[list[Any], list[Any]]:
    """The PDUs and EDUs of a /send body; raises ``BadJSON`` for a malformed
    body or one over the limits (refused whole: nothing is processed)."""
    if not isinstance(body, dict):
        raise errors.BadJSON("The transaction must be a JSON object")
    pdus = body.get("pdus", [])
    edus = body.get("edus", [])
    if not isinstance(pdus, list):
        raise errors.BadJSON("pdus must be a list")
    if not isinstance(edus, list):
        raise errors.BadJSON("edus must be a list")
    if len(pdus) > MAX_PDUS:
        raise errors.BadJSON(f"A transaction carries at most {MAX_PDUS} PDUs ({len(pdus)} given)")
    if len(edus) > MAX_EDUS:
        raise errors.BadJSON(f"A transaction carries at most {MAX_EDUS} EDUs ({len(edus)} given)")
    for key in ("origin",):
        if key in body and not isinstance(body[key], str):
            raise errors.BadJSON(f"{key} must be a string")
    if "origin_server_ts" in body and (not isinstance(body["origin_server_ts"], int)
                                       or isinstance(body["origin_server_ts"], bool)):
        raise errors.BadJSON("origin_server_ts must be an integer")
    return pdus, edus


class _Outcome:
    """The per-PDU answers being collected, and whether all are final."""

    def __init__(self) -> None:
        self.pdus: dict[str, dict[str, Any]] = {}
        self.final = True

    def internal_failure(self, event_id: str, exc: BaseException) -> None:
        self.pdus[event_id] = {"error": f"internal error: {exc}"}
        self.final = False


class KeyedLocks:
    """One asyncio lock per key, forgotten when nobody holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class TransactionHandler:
    def __init__(self, context: FederationContext) -> None:
        self.context = context
        self._origin_locks = KeyedLocks()
        self._room_locks = KeyedLocks()
        self._last_prune = 0.0

    async def handle(self, origin: str, txn_id: str, body: Any) -> dict[str, Any]:
        """The answer to ``PUT /send/{txn_id}`` from ``origin``."""
        pdus, edus = validate_transaction(body)
        async with self._origin_locks.hold(origin):
            stored = await self.context.database.get_inbound_transaction(origin, txn_id)
            if stored is not None:
                answer: dict[str, Any] = json.loads(stored)
                return answer
            outcome = _Outcome()
            await asyncio.gather(self._process_pdus(origin, pdus, outcome), self._process_edus(origin, edus))
            answer = {"pdus": outcome.pdus}
            if outcome.final:
                await self.context.database.store_inbound_transaction(
                    origin, txn_id, json.dumps(answer), int(time.time() * 1000))
        await self._prune_answers()
        return answer

    async def _prune_answers(self) -> None:
        if time.monotonic() - self._last_prune < PRUNE_INTERVAL_SECONDS:
            return
        self._last_prune = time.monotonic()
        try:
            await self.context.database.delete_inbound_transactions_before(
                int(time.time() * 1000) - KEEP_ANSWERS_MS)
        except Exception:
            logger.warning("could not delete old inbound transaction answers", exc_info=True)

    async def _process_edus(self, origin: str, edus: list[Any]) -> None:
        for edu in edus:
            try:
                await handle_edu(self.context, origin, edu)
            except Exception:
                # Not the sender's fault; EDUs are best effort.
                logger.warning("an EDU from %s failed", origin, exc_info=True)

    async def _process_pdus(self, origin: str, pdus: list[Any], outcome: _Outcome) -> None:
        by_room: dict[str, list[Any]] = {}
        for pdu in pdus:
            room_id = pdu.get("room_id") if isinstance(pdu, dict) else None
            if not isinstance(room_id, str):
                event_id = event_id_of(pdu, get_room_version(DEFAULT_ROOM_VERSION))
                if event_id is not None:
                    outcome.pdus[event_id] = {"error": "the PDU has no room_id"}
                continue
            by_room.setdefault(room_id, []).append(pdu)
        await asyncio.gather(*(self._process_room(origin, room_id, room_pdus, outcome)
                               for room_id, room_pdus in by_room.items()))

    async def _process_room(self, origin: str, room_id: str, pdus: list[Any], outcome: _Outcome) -> None:
        try:
            info = await self.context.roomserver.query_room_info(rs_pb.QueryRoomInfoRequest(room_id=room_id))
        except Exception as exc:
            logger.warning("room info of %s failed", room_id, exc_info=True)
            for pdu in pdus:
                event_id = event_id_of(pdu, get_room_version(DEFAULT_ROOM_VERSION))
                if event_id is not None:
                    outcome.internal_failure(event_id, exc)
            return
        try:
            room_version = get_room_version(info.room_version) if info.room_exists else None
        except UnknownRoomVersionError:
            room_version = None
        if room_version is None or info.is_stub:
            # Without the room's version the ID is a guess: the one the PDU
            # carries (v1, v2), else what the v4+ rules give.
            for pdu in pdus:
                carried = pdu.get("event_id") if isinstance(pdu, dict) else None
                event_id = carried if isinstance(carried, str) else event_id_of(
                    pdu, room_version or get_room_version(DEFAULT_ROOM_VERSION))
                if event_id is not None:
                    outcome.pdus[event_id] = {"error": f"this server is not in room {room_id}"}
            return
        try:
            await RoomAccess(self.context.roomserver).check_acl(room_id, origin)
        except errors.Forbidden as exc:
            for pdu in pdus:
                event_id = event_id_of(pdu, room_version)
                if event_id is not None:
                    outcome.pdus[event_id] = {"error": str(exc)}
            return
        # One key look-up per server for the batch, then CPU work only.
        keys = TransactionKeys(self.context.keyring)
        results: list[CheckedPDU | BaseException] = []
        for pdu in pdus:
            try:
                results.append(await check_pdu(keys, pdu, room_version))
            except Exception as exc:
                results.append(exc)
        checked: list[CheckedPDU] = []
        for pdu, result in zip(pdus, results, strict=True):
            if isinstance(result, CheckedPDU):
                checked.append(result)
                continue
            event_id = event_id_of(pdu, room_version)
            if isinstance(result, PDURejected):
                logger.info("PDU %s from %s refused: %s", event_id, origin, result)
                if event_id is not None:
                    outcome.pdus[event_id] = {"error": str(result)}
            else:
                logger.warning("checking PDU %s from %s failed", event_id, origin, exc_info=result)
                if event_id is not None:
                    outcome.internal_failure(event_id, result)
        if not checked:
            return
        async with self._room_locks.hold(room_id):
            try:
                outcome.pdus.update(await RoomInput(self.context, origin, room_id, room_version).process(checked))
            except Exception as exc:
                logger.warning("input of %d PDUs of %s from %s failed", len(checked), room_id, origin, exc_info=True)
                for item in checked:
                    if item.event_id not in outcome.pdus:
                        outcome.internal_failure(item.event_id, exc)
