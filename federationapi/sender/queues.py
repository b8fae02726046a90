"""One worker per destination, sending its queue as transactions
(server-server-api "Transactions", data/api/server-server/transactions.yaml).

A worker takes the destination's oldest queued entries (at most 50 PDUs and
100 EDUs), gives them a transaction ID that is stored with them, and PUTs
``/_matrix/federation/v1/send/{txnId}`` until the destination answers 200;
only then are the entries deleted and the next transaction built. A retry,
also after a restart, sends the same entries under the same ID, so the
receiver (idempotent by origin and transaction ID) never applies one twice.

A destination that cannot be reached is retried after a delay that doubles
from ``backoff_initial`` up to ``backoff_max`` (with some jitter); its
queue keeps growing meanwhile and is delivered in order once it answers.
Every destination has its own task, so a slow or dead one never holds up
another. A transaction the destination refuses as a whole for good (400,
403, 413) is not retried as it is: its entries go out again one per
transaction, and an entry refused alone is dropped (logged), so one poison
PDU never blocks a queue. Per-PDU errors in a 200 answer are the receiver's
verdicts on events, logged and not retried.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from federationapi.client import HttpResponseError
from federationapi.sender.storage import PendingTransaction, SenderDatabase
from federationapi.storage.tables.queue import PDU

logger = logging.getLogger(__name__)

MAX_PDUS_PER_TRANSACTION = 50
MAX_EDUS_PER_TRANSACTION = 100
# Statuses by which a destination refuses the transaction itself, for good.
DEFINITIVE_REFUSALS = frozenset({400, 403, 413})
DIRECT_TO_DEVICE = "m.direct_to_device"
PRESENCE = "m.presence"
# Presence EDUs are queued with when the user was last active; the age is
# worked out when the transaction is built.
LAST_ACTIVE_TS = "last_active_ts"
CURRENTLY_ACTIVE_MS = 5 * 60 * 1000


class TransactionSender(Protocol):
    """What the queues need of the FederationClient."""

    async def put_json(self, destination: str, path: str, content: Any,
                       query: Any = None) -> Any: ...


def _now_ms() -> int:
    return int(time.time() * 1000)


def build_edus(items_json: Iterable[str], now_ms: int) -> list[dict[str, Any]]:
    """The EDUs of a transaction from their queued JSON: to-device messages
    with the same sender, type and message ID (one queued per target
    device) become one ``m.direct_to_device`` EDU; presence gets its
    ``last_active_ago``."""
    edus: list[dict[str, Any]] = []
    to_device: dict[tuple[str, str, str], dict[str, Any]] = {}
    for text in items_json:
        edu = json.loads(text)
        content = edu.get("content", {})
        if edu.get("edu_type") == DIRECT_TO_DEVICE:
            key = (content["sender"], content["type"], content["message_id"])
            merged = to_device.get(key)
            if merged is None:
                to_device[key] = edu
                edus.append(edu)
                continue
            for user_id, by_device in content["messages"].items():
                merged["content"]["messages"].setdefault(user_id, {}).update(by_device)
            continue
        if edu.get("edu_type") == PRESENCE:
            for item in content.get("push", []):
                if LAST_ACTIVE_TS in item:
                    ago = max(0, now_ms - int(item.pop(LAST_ACTIVE_TS)))
                    item["last_active_ago"] = ago
                    item["currently_active"] = item.get("presence") == "online" and ago < CURRENTLY_ACTIVE_MS
        edus.append(edu)
    return edus


class DestinationQueues:
    def __init__(self, database: SenderDatabase, client: TransactionSender, origin: str, *,
                 backoff_initial: float = 1.0, backoff_max: float = 3600.0,
                 clock: Callable[[], int] = _now_ms) -> None:
        self._db = database
        self._client = client
        self._origin = origin
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._clock = clock
        self._workers: dict[str, asyncio.Task[None]] = {}
        # Destinations with entries queued since their worker last looked.
        self._dirty: set[str] = set()
        self._backoff: dict[str, float] = {}
        self._retry_now: dict[str, asyncio.Event] = {}
        # After a definitive refusal: how many more transactions go out one entry each.
        self._single: dict[str, int] = {}
        self._closed = False
        # Every transaction a destination accepted, for tests and metrics.
        self.sent_transactions = 0

    def wake(self, destinations: Iterable[str]) -> None:
        """New entries were queued (and committed) for ``destinations``."""
        for destination in destinations:
            if self._closed or destination == self._origin:
                continue
            self._dirty.add(destination)
            if destination not in self._workers:
                task = asyncio.create_task(self._run(destination), name=f"federation-sender:{destination}")
                self._workers[destination] = task

    def retry_now(self, destination: str) -> None:
        """The destination is known to be up again (it just sent us a
        request): end its backoff and send its queue at once."""
        self._backoff.pop(destination, None)
        event = self._retry_now.get(destination)
        if event is not None:
            event.set()

    def is_backing_off(self, destination: str) -> bool:
        return destination in self._backoff

    async def resume(self) -> None:
        """Starts a worker for every destination with queued entries (at start)."""
        self.wake(await self._db.destinations_with_queue())

    async def drained(self, destination: str) -> None:
        """Returns once the destination's worker has found its queue empty
        (at once when it has none)."""
        while (task := self._workers.get(destination)) is not None:
            await asyncio.wait([task])

    async def close(self) -> None:
        self._closed = True
        workers = list(self._workers.values())
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        self._workers.clear()

    async def _run(self, destination: str) -> None:
        try:
            while True:
                self._dirty.discard(destination)
                try:
                    txn = await self._db.next_transaction(
                        destination, self._clock(), max_pdus=MAX_PDUS_PER_TRANSACTION,
                        max_edus=MAX_EDUS_PER_TRANSACTION, new_txn_id=self._new_txn_id(),
                        single=self._single.get(destination, 0) > 0)
                except Exception:
                    logger.exception("federation sender: reading %s's queue failed", destination)
                    await self._wait_backoff(destination)
                    continue
                if txn is None:
                    if destination in self._dirty:
                        continue
                    # No await between the check above and this: a wake()
                    # from now on starts a new worker.
                    del self._workers[destination]
                    return
                try:
                    await self._send(destination, txn)
                except Exception:
                    # The worker must outlive anything unexpected, or the
                    # destination would never be woken again.
                    logger.exception("federation sender: sending transaction %s to %s failed", txn.txn_id,
                                     destination)
                    await self._wait_backoff(destination)
        except asyncio.CancelledError:
            self._workers.pop(destination, None)
            raise

    def _new_txn_id(self) -> str:
        return f"{self._clock()}.{secrets.token_hex(6)}"

    async def _send(self, destination: str, txn: PendingTransaction) -> None:
        now = self._clock()
        pdus = [json.loads(item.json_text) for item in txn.items if item.kind == PDU]
        edus = build_edus((item.json_text for item in txn.items if item.kind != PDU), now)
        body: dict[str, Any] = {"origin": self._origin, "origin_server_ts": now, "pdus": pdus}
        if edus:
            body["edus"] = edus
        try:
            answer = await self._client.put_json(destination, f"/_matrix/federation/v1/send/{txn.txn_id}", body)
        except HttpResponseError as e:
            if e.status in DEFINITIVE_REFUSALS:
                await self._refused(destination, txn, e)
                return
            logger.info("federation sender: transaction %s to %s failed: %s", txn.txn_id, destination, e)
            await self._wait_backoff(destination)
            return
        except Exception as e:
            logger.info("federation sender: transaction %s to %s failed: %s", txn.txn_id, destination, e)
            await self._wait_backoff(destination)
            return
        self._log_pdu_results(destination, txn.txn_id, answer)
        await self._complete(destination, txn)
        self.sent_transactions += 1
        self._backoff.pop(destination, None)

    async def _complete(self, destination: str, txn: PendingTransaction) -> None:
        while True:
            try:
                await self._db.complete_transaction(destination, txn.positions)
            except Exception:
                # Sent but not recorded: retrying it later (same ID) is safe;
                # building a new transaction from the same entries is not.
                logger.exception("federation sender: recording transaction %s to %s failed", txn.txn_id,
                                 destination)
                await asyncio.sleep(1.0)
                continue
            break
        if self._single.get(destination, 0) > 0:
            self._single[destination] -= 1

    async def _refused(self, destination: str, txn: PendingTransaction, error: HttpResponseError) -> None:
        if len(txn.items) > 1:
            logger.warning("federation sender: %s refused transaction %s of %d entries (%s); sending them "
                           "one by one", destination, txn.txn_id, len(txn.items), error)
            await self._db.release_transaction(txn.positions)
            self._single[destination] = len(txn.items)
            return
        item = txn.items[0]
        logger.warning("federation sender: %s refused %s %s for good (%s); dropping it", destination, item.kind,
                       item.event_id or "", error)
        await self._complete(destination, txn)

    def _log_pdu_results(self, destination: str, txn_id: str, answer: Any) -> None:
        results = answer.get("pdus") if isinstance(answer, dict) else None
        if not isinstance(results, dict):
            return
        for event_id, result in results.items():
            if isinstance(result, dict) and result.get("error"):
                logger.info("federation sender: %s did not accept %s (transaction %s): %s", destination,
                            event_id, txn_id, result["error"])

    async def _wait_backoff(self, destination: str) -> None:
        delay = self._backoff.get(destination)
        delay = self._backoff_initial if delay is None else min(delay * 2, self._backoff_max)
        self._backoff[destination] = delay
        event = self._retry_now.setdefault(destination, asyncio.Event())
        event.clear()
        jittered = delay * random.uniform(0.8, 1.2)
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a
        # cancellation that lands as the event is set, and stopping the
        # sender would wait for a queue that goes on.
        try:
            async with asyncio.timeout(jittered):
                await event.wait()
        except TimeoutError:
            pass
