"""The KeyRing: other servers' signing keys, fetched, checked and cached.

Spec: server-server-api "Retrieving server keys" and room versions'
"Signing key validity period" (v5+: a key signs an event only if it was
valid at the event's ``origin_server_ts``; the validity is the lesser of
``valid_until_ts`` and 7 days after fetching). Keys come from the server
itself (``GET /_matrix/key/v2/server``) and, failing that, from the
configured notaries (``POST /_matrix/key/v2/query``); every response must be
signed by the server with each of its ``verify_keys`` (and a notary's
answer also by the notary). What is fetched is stored
(``federationapi_server_keys``) with the signed response it came in, which
the notary API serves again.

    keyring = KeyRing(server_name, signing_key, database, [DirectKeyFetcher(client)])
    await keyring.verify_json_for_server("other.example", signed_obj, at_ts=now_ms)
    await keyring.verify_event_signatures(event)
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import nacl.signing

from common.config import OldVerifyKey, TrustedKeyServer
from federationapi.client import FederationClient, FederationError
from federationapi.storage.database import FederationDatabase, ServerKeyRow
from matrixlib.events import Event
from matrixlib.signing import (
    SignatureError,
    SigningKey,
    decode_verify_key,
    encode_verify_key,
    is_supported_key_id,
    servers_that_must_sign,
    sign_json,
    signature_key_ids,
    verify_event_signatures,
    verify_json,
)

logger = logging.getLogger(__name__)

# Servers MUST use the lesser of valid_until_ts and 7 days into the future.
MAX_KEY_VALIDITY_MS = 7 * 24 * 3600 * 1000
# How long our own /_matrix/key/v2/server answer says it is valid.
OWN_KEY_VALIDITY_MS = 7 * 24 * 3600 * 1000
# A server whose keys were just fetched is not asked again for this long,
# so that requests naming unknown key IDs cannot make us hammer it.
DEFAULT_REFETCH_INTERVAL_MS = 30_000
# Stored keys are kept decoded in memory for this long before they are read
# again: a remote join checks a thousand events signed with the same few keys,
# and each read was a database round trip (and on SQLite, often a connection
# opened for it). Bounded, so that a key another process retired is believed
# at most this long.
KEY_CACHE_MS = 60_000
KEY_CACHE_SIZE = 10_000


class KeyResponseError(ValueError):
    """A key response is malformed or not properly signed."""


def now_ms() -> int:
    return int(time.time() * 1000)


# -- responses ----------------------------------------------------------------------


def own_key_response(server_name: str, signing_key: SigningKey, old_keys: Mapping[str, OldVerifyKey],
                     now: int) -> dict[str, Any]:
    """Our ``/_matrix/key/v2/server`` answer, signed."""
    body = {
        "server_name": server_name,
        "valid_until_ts": now + OWN_KEY_VALIDITY_MS,
        "verify_keys": {signing_key.key_id: {"key": encode_verify_key(signing_key.verify_key)}},
        "old_verify_keys": {key_id: {"key": old.key, "expired_ts": old.expired_ts}
                            for key_id, old in old_keys.items()},
    }
    return sign_json(body, server_name, signing_key)


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise KeyResponseError(f"{what} is not an integer")
    return value


def parse_key_response(server_name: str, response: Any, fetched_ts: int) -> list[ServerKeyRow]:
    """Checks a server's key response (name, shape, self-signature with every
    verify key) and answers its keys as rows to store."""
    if not isinstance(response, dict):
        raise KeyResponseError("key response is not an object")
    if response.get("server_name") != server_name:
        raise KeyResponseError(f"key response is for {response.get('server_name')!r}, not {server_name!r}")
    valid_until_ts = _int(response.get("valid_until_ts"), "valid_until_ts")
    verify_keys = response.get("verify_keys")
    old_verify_keys = response.get("old_verify_keys") or {}
    if not isinstance(verify_keys, dict) or not isinstance(old_verify_keys, dict):
        raise KeyResponseError("verify_keys / old_verify_keys are not objects")
    decoded: dict[str, nacl.signing.VerifyKey] = {}
    for key_id, entry in verify_keys.items():
        if not is_supported_key_id(key_id):
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
            raise KeyResponseError(f"verify key {key_id} has no key")
        try:
            decoded[key_id] = decode_verify_key(entry["key"])
        except SignatureError as e:
            raise KeyResponseError(f"verify key {key_id}: {e}") from None
    if not decoded:
        raise KeyResponseError("key response has no usable verify key")
    # Only the server's own signatures are kept (a notary's are checked by
    # the notary fetcher and stripped): we serve this again, signed by us.
    signatures = response.get("signatures")
    own_signatures = signatures.get(server_name) if isinstance(signatures, dict) else None
    if not isinstance(own_signatures, dict):
        raise KeyResponseError("key response is not signed by its server")
    stripped = dict(response)
    stripped["signatures"] = {server_name: own_signatures}
    for key_id, verify_key in decoded.items():
        try:
            verify_json(stripped, server_name, key_id, verify_key)
        except ValueError as e:  # SignatureError, or a value canonical JSON cannot encode
            raise KeyResponseError(f"key response self-signature: {e}") from None
    response_json = json.dumps(stripped, separators=(",", ":"), ensure_ascii=False)
    valid_until = min(valid_until_ts, fetched_ts + MAX_KEY_VALIDITY_MS)
    rows = [ServerKeyRow(server_name, key_id, encode_verify_key(key), valid_until, None, fetched_ts, response_json)
            for key_id, key in decoded.items()]
    for key_id, entry in old_verify_keys.items():
        if not is_supported_key_id(key_id) or key_id in decoded:
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
            raise KeyResponseError(f"old verify key {key_id} has no key")
        expired_ts = _int(entry.get("expired_ts"), f"old verify key {key_id} expired_ts")
        try:
            old_key = decode_verify_key(entry["key"])
        except SignatureError as e:
            raise KeyResponseError(f"old verify key {key_id}: {e}") from None
        rows.append(ServerKeyRow(server_name, key_id, encode_verify_key(old_key), expired_ts, expired_ts,
                                 fetched_ts, response_json))
    return rows


# -- fetchers -----------------------------------------------------------------------


class KeyFetcher(Protocol):
    """Answers key responses claimed to be ``server_name``'s (the KeyRing
    checks each with ``parse_key_response``)."""

    async def fetch_key_responses(self, server_name: str, key_ids: Sequence[str],
                                  minimum_valid_until_ts: int) -> list[Any]: ...


class DirectKeyFetcher:
    """``GET /_matrix/key/v2/server`` from the server itself."""

    def __init__(self, client: FederationClient) -> None:
        self._client = client

    async def fetch_key_responses(self, server_name: str, key_ids: Sequence[str],
                                  minimum_valid_until_ts: int) -> list[Any]:
        return [await self._client.get_json(server_name, "/_matrix/key/v2/server")]


class NotaryKeyFetcher:
    """``POST /_matrix/key/v2/query`` to a trusted notary, whose signature
    (with a configured key) every answered response must carry."""

    def __init__(self, client: FederationClient, notary: TrustedKeyServer) -> None:
        self._client = client
        self.notary = notary.server_name
        self._keys = {key_id: decode_verify_key(key) for key_id, key in notary.verify_keys.items()}
        if not self._keys:
            raise ValueError(f"trusted key server {notary.server_name} needs verify_keys")

    async def fetch_key_responses(self, server_name: str, key_ids: Sequence[str],
                                  minimum_valid_until_ts: int) -> list[Any]:
        criteria = {key_id: {"minimum_valid_until_ts": minimum_valid_until_ts} for key_id in key_ids}
        answer = await self._client.post_json(self.notary, "/_matrix/key/v2/query",
                                              {"server_keys": {server_name: criteria}})
        responses = answer.get("server_keys") if isinstance(answer, dict) else None
        if not isinstance(responses, list):
            raise KeyResponseError(f"notary {self.notary} answered no server_keys list")
        checked = []
        for response in responses:
            if not isinstance(response, dict) or response.get("server_name") != server_name:
                continue
            try:
                self._check_notary_signature(response)
            except SignatureError as e:
                logger.warning("notary %s: %s", self.notary, e)
                continue
            checked.append(response)
        return checked

    def _check_notary_signature(self, response: Mapping[str, Any]) -> None:
        signed_with = [k for k in signature_key_ids(response, self.notary) if k in self._keys]
        if not signed_with:
            raise SignatureError(f"response not signed by {self.notary} with a configured key")
        for key_id in signed_with:
            verify_json(response, self.notary, key_id, self._keys[key_id])


# -- the KeyRing --------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyKey:
    key_id: str
    key: nacl.signing.VerifyKey
    valid_until_ts: int
    expired_ts: int | None


class KeyRing:
    def __init__(self, server_name: str, signing_key: SigningKey, database: FederationDatabase,
                 fetchers: Sequence[KeyFetcher], *, old_keys: Mapping[str, OldVerifyKey] | None = None,
                 clock: Callable[[], int] = now_ms,
                 refetch_interval_ms: int = DEFAULT_REFETCH_INTERVAL_MS) -> None:
        self.server_name = server_name
        self.signing_key = signing_key
        self.old_keys = dict(old_keys or {})
        self._database = database
        self._fetchers = list(fetchers)
        self._clock = clock
        self._refetch_interval_ms = refetch_interval_ms
        self._last_fetch: dict[str, int] = {}
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._in_flight_key_ids: dict[str, frozenset[str]] = {}
        # (server, key ID) -> the stored key and when it was read (our clock).
        self._cached: dict[tuple[str, str], tuple[VerifyKey, int]] = {}

    def now(self) -> int:
        return self._clock()

    def own_key_response(self) -> dict[str, Any]:
        return own_key_response(self.server_name, self.signing_key, self.old_keys, self._clock())

    # -- lookups --------------------------------------------------------------------

    async def get_verify_keys(self, server_name: str, key_ids: Sequence[str], at_ts: int) -> dict[str, VerifyKey]:
        """Those of ``key_ids`` that ``server_name`` had valid at ``at_ts``
        (ms; 0 for "any key we know", as room versions 1-4 allow), fetching
        missing or too-short-lived ones. Keys not found are left out."""
        wanted = [k for k in dict.fromkeys(key_ids) if is_supported_key_id(k)]
        if not wanted:
            return {}
        cached = self.cached_verify_keys(server_name, wanted, at_ts)
        if cached is not None:
            return cached
        found = await self._stored_keys(server_name, wanted, at_ts)
        missing = [k for k in wanted if k not in found]
        if missing:
            await self._fetch(server_name, missing, at_ts)
            found = await self._stored_keys(server_name, wanted, at_ts)
        return found

    def _own_keys(self) -> dict[str, VerifyKey]:
        keys = {self.signing_key.key_id: VerifyKey(self.signing_key.key_id, self.signing_key.verify_key,
                                                   2**62, None)}
        for key_id, old in self.old_keys.items():
            keys[key_id] = VerifyKey(key_id, decode_verify_key(old.key), old.expired_ts, old.expired_ts)
        return keys

    def cached_verify_keys(self, server_name: str, key_ids: Sequence[str], at_ts: int
                           ) -> dict[str, VerifyKey] | None:
        """``get_verify_keys`` from memory alone (``key_ids`` all supported):
        None unless every key is held, read lately and valid at ``at_ts``."""
        if not key_ids:
            return None
        if server_name == self.server_name:
            return {k: v for k, v in self._own_keys().items() if k in key_ids and v.valid_until_ts >= at_ts}
        oldest = self._clock() - KEY_CACHE_MS
        found: dict[str, VerifyKey] = {}
        for key_id in key_ids:
            held = self._cached.get((server_name, key_id))
            if held is None or held[1] < oldest or held[0].valid_until_ts < at_ts:
                return None
            found[key_id] = held[0]
        return found

    async def _stored_keys(self, server_name: str, key_ids: Sequence[str], at_ts: int) -> dict[str, VerifyKey]:
        rows = await self._database.get_server_keys(server_name, key_ids)
        now = self._clock()
        keys = [VerifyKey(row.key_id, decode_verify_key(row.verify_key), row.valid_until_ts, row.expired_ts)
                for row in rows]
        for key in keys:
            if len(self._cached) >= KEY_CACHE_SIZE:
                self._cached.pop(next(iter(self._cached)))
            self._cached[(server_name, key.key_id)] = (key, now)
        return {key.key_id: key for key in keys if key.valid_until_ts >= at_ts}

    async def _fetch(self, server_name: str, key_ids: Sequence[str], at_ts: int) -> None:
        # One fetch per server at a time. A caller arriving meanwhile shares it
        # when it asks for no key that fetch does not; otherwise it waits for it
        # and then fetches its own (the rate limit below still applies).
        while True:
            running = self._in_flight.get(server_name)
            # A fetch that ended is forgotten by its done callback, which may not have run yet.
            if running is None or running.done():
                break
            covered = set(key_ids) <= self._in_flight_key_ids.get(server_name, frozenset())
            await asyncio.shield(running)
            if covered:
                return
        last = self._last_fetch.get(server_name)
        if last is not None and self._clock() - last < self._refetch_interval_ms:
            return
        task = asyncio.get_running_loop().create_task(self._fetch_from_sources(server_name, key_ids, at_ts))
        self._in_flight[server_name] = task
        self._in_flight_key_ids[server_name] = frozenset(key_ids)

        def forget(done: asyncio.Task[None]) -> None:
            # Forgotten when it ends, also when every caller waiting on it was
            # cancelled; a later fetch that replaced it is not forgotten with it.
            if self._in_flight.get(server_name) is done:
                del self._in_flight[server_name]
                self._in_flight_key_ids.pop(server_name, None)

        task.add_done_callback(forget)
        await asyncio.shield(task)

    async def _fetch_from_sources(self, server_name: str, key_ids: Sequence[str], at_ts: int) -> None:
        self._last_fetch[server_name] = self._clock()
        minimum_valid_until_ts = max(at_ts, self._clock())
        for fetcher in self._fetchers:
            try:
                responses = await fetcher.fetch_key_responses(server_name, key_ids, minimum_valid_until_ts)
            except (FederationError, KeyResponseError, OSError) as e:
                logger.info("fetching keys of %s with %s failed: %s", server_name, type(fetcher).__name__, e)
                continue
            except Exception:
                # Whatever a remote server or its DNS does must not break
                # the caller: no keys is the answer.
                logger.exception("fetching keys of %s with %s failed", server_name, type(fetcher).__name__)
                continue
            await self.store_key_responses(server_name, responses)
            if not [k for k in key_ids if k not in await self._stored_keys(server_name, key_ids, at_ts)]:
                return

    async def store_key_responses(self, server_name: str, responses: Sequence[Any]) -> int:
        """Checks and stores key responses claimed to be ``server_name``'s;
        answers how many were good. Bad ones are logged and skipped."""
        good = 0
        for response in responses:
            try:
                rows = parse_key_response(server_name, response, self._clock())
            except KeyResponseError as e:
                logger.warning("refusing a key response of %s: %s", server_name, e)
                continue
            await self._database.store_server_keys(rows)
            # What is stored now is read again (a stale answer may not replace a fresher one).
            for row in rows:
                self._cached.pop((server_name, row.key_id), None)
            good += 1
        return good

    async def refresh_server_keys(self, server_name: str, fetcher: KeyFetcher) -> bool:
        """Asks ``fetcher`` for the server's keys now (the notary API does,
        with the direct fetcher); False when that failed."""
        try:
            responses = await fetcher.fetch_key_responses(server_name, [], self._clock())
        except (FederationError, KeyResponseError, OSError) as e:
            logger.info("refreshing keys of %s failed: %s", server_name, e)
            return False
        except Exception:
            logger.exception("refreshing keys of %s failed", server_name)
            return False
        return await self.store_key_responses(server_name, responses) > 0

    async def stored_key_responses(self, server_name: str, key_ids: Sequence[str] | None = None) -> list[Any]:
        """The distinct signed responses stored for the server (those holding
        ``key_ids`` when given), as the server signed them."""
        rows = await self._database.get_server_keys(server_name, key_ids or None)
        texts = list(dict.fromkeys(row.response_json for row in rows))
        return [json.loads(text) for text in texts]

    # -- verification -----------------------------------------------------------------

    async def verify_json_for_server(self, server_name: str, obj: Mapping[str, Any], at_ts: int) -> None:
        """Checks that ``server_name`` signed ``obj`` with a key valid at
        ``at_ts``: at least one such signature, and every signature made
        with a key we have valid at ``at_ts`` must verify. Raises
        ``SignatureError``."""
        key_ids = signature_key_ids(obj, server_name)
        if not key_ids:
            raise SignatureError(f"not signed by {server_name}")
        keys = await self.get_verify_keys(server_name, key_ids, at_ts)
        if not keys:
            raise SignatureError(f"no key of {server_name} among {key_ids} valid at {at_ts}")
        for key_id, key in keys.items():
            verify_json(obj, server_name, key_id, key.key)

    async def verify_event_signatures(self, event: Event, signed_bytes: bytes | None = None) -> None:
        """The signature half of checking a received PDU: every server that
        must sign it did, with a key valid at its ``origin_server_ts`` (room
        versions 5+; any known key before). Raises ``SignatureError``.
        ``signed_bytes``: ``matrixlib.signing.event_signed_bytes`` of the
        event, when the caller has them."""
        at_ts = _key_validity_ts(event)
        keys: dict[str, dict[str, nacl.signing.VerifyKey]] = {}
        for server in servers_that_must_sign(event):
            found = await self.get_verify_keys(server, signature_key_ids(event.pdu, server), at_ts)
            keys[server] = {key_id: key.key for key_id, key in found.items()}
        verify_event_signatures(event, keys, signed_bytes)

    def verify_event_signatures_from_memory(self, event: Event, signed_bytes: bytes | None = None) -> bool:
        """``verify_event_signatures`` when every key it needs is held in
        memory (no I/O, no task switch: a send_join's thousand events);
        False, having checked nothing, when one is not. Raises
        ``SignatureError``."""
        at_ts = _key_validity_ts(event)
        keys: dict[str, dict[str, nacl.signing.VerifyKey]] = {}
        for server in servers_that_must_sign(event):
            wanted = signature_key_ids(event.pdu, server)
            found = self.cached_verify_keys(server, wanted, at_ts)
            if found is None:
                return False
            keys[server] = {key_id: key.key for key_id, key in found.items()}
        verify_event_signatures(event, keys, signed_bytes)
        return True


def _key_validity_ts(event: Event) -> int:
    """When the event's signing keys must have been valid: its
    ``origin_server_ts`` from room version 5, any time (0) before."""
    if event.room_version.enforce_key_validity:
        ts = event.pdu.get("origin_server_ts")
        return ts if isinstance(ts, int) and not isinstance(ts, bool) else 0
    return 0
