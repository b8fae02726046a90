"""The KeyRing against fake key servers over real TLS: fetching, caching,
expiry, old keys, refusing bad responses, validity at a timestamp, notaries."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common.config import OldVerifyKey, TrustedKeyServer
from common.http import json_response, parse_json_body
from federationapi.keyring import DirectKeyFetcher, KeyRing, NotaryKeyFetcher, VerifyKey, parse_key_response
from matrixlib.builder import build_event
from matrixlib.events import Event
from matrixlib.room_versions import KNOWN_ROOM_VERSIONS
from matrixlib.signing import (
    SignatureError,
    SigningKey,
    encode_verify_key,
    generate_signing_key,
    sign_event,
    sign_json,
)
from tests.component.federationapi.conftest import (
    DAY_MS,
    OUR_KEY,
    OUR_NAME,
    FakeKeyServer,
    Harness,
    on_each_database,
)

# Every KeyRing test on both databases.
pytestmark = on_each_database

#: The server whose keys the BlockingFetcher tests look up.
REMOTE = "remote.test"


async def started(harness: Harness, **kwargs: object) -> FakeKeyServer:
    fake = FakeKeyServer(valid_until_ts=harness.clock.now + DAY_MS, **kwargs)  # type: ignore[arg-type]
    await harness.start(fake)
    return fake


def signed_obj(server: str, key: SigningKey) -> dict[str, object]:
    return sign_json({"hello": "world"}, server, key)


async def test_keys_are_fetched_once_and_then_served_from_the_cache(harness: Harness) -> None:
    fake = await started(harness)
    keyring = harness.keyring()
    keys = await keyring.get_verify_keys(fake.server_name, [fake.key.key_id], harness.clock.now)
    assert bytes(keys[fake.key.key_id].key) == bytes(fake.key.verify_key)
    await keyring.verify_json_for_server(fake.server_name, signed_obj(fake.server_name, fake.key), harness.clock.now)
    # A new KeyRing over the same database: stored, not fetched again.
    await harness.keyring().verify_json_for_server(fake.server_name, signed_obj(fake.server_name, fake.key),
                                                   harness.clock.now)
    assert fake.requests == 1


async def test_concurrent_lookups_share_one_fetch(harness: Harness) -> None:
    fake = await started(harness)
    keyring = harness.keyring()
    results = await asyncio.gather(*[keyring.get_verify_keys(fake.server_name, [fake.key.key_id], harness.clock.now)
                                     for _ in range(5)])
    assert all(fake.key.key_id in r for r in results)
    assert fake.requests == 1


async def test_a_key_past_its_validity_is_fetched_again(harness: Harness) -> None:
    fake = await started(harness)
    keyring = harness.keyring()
    await keyring.get_verify_keys(fake.server_name, [fake.key.key_id], harness.clock.now)
    harness.clock.now += 2 * DAY_MS            # the stored answer is stale now
    fake.valid_until_ts = harness.clock.now + DAY_MS
    keys = await keyring.get_verify_keys(fake.server_name, [fake.key.key_id], harness.clock.now)
    assert fake.key.key_id in keys
    assert fake.requests == 2
    assert keys[fake.key.key_id].valid_until_ts == fake.valid_until_ts


async def test_refetching_is_rate_limited(harness: Harness) -> None:
    fake = await started(harness)
    keyring = harness.keyring(refetch_interval_ms=60_000)
    assert await keyring.get_verify_keys(fake.server_name, ["ed25519:unknown"], harness.clock.now) == {}
    assert await keyring.get_verify_keys(fake.server_name, ["ed25519:unknown"], harness.clock.now) == {}
    assert fake.requests == 1
    harness.clock.now += 61_000
    await keyring.get_verify_keys(fake.server_name, ["ed25519:unknown"], harness.clock.now)
    assert fake.requests == 2


async def test_validity_is_capped_at_seven_days_after_fetching(harness: Harness) -> None:
    fake = await started(harness)
    fake.valid_until_ts = harness.clock.now + 365 * DAY_MS
    keyring = harness.keyring()
    assert await keyring.get_verify_keys(fake.server_name, [fake.key.key_id], harness.clock.now + 6 * DAY_MS)
    assert not await keyring.get_verify_keys(fake.server_name, [fake.key.key_id], harness.clock.now + 8 * DAY_MS)


async def test_a_bad_self_signature_is_refused_and_nothing_is_stored(harness: Harness) -> None:
    fake = await started(harness, sign_with=generate_signing_key("k1"))
    keyring = harness.keyring()
    assert await keyring.get_verify_keys(fake.server_name, [fake.key.key_id], harness.clock.now) == {}
    assert await harness.database.get_server_keys(fake.server_name) == []
    with pytest.raises(SignatureError):
        await keyring.verify_json_for_server(fake.server_name, signed_obj(fake.server_name, fake.key),
                                             harness.clock.now)


async def test_an_answer_for_another_server_is_refused(harness: Harness) -> None:
    fake = await started(harness, answer_server_name="someone.else")
    assert await harness.keyring().get_verify_keys(fake.server_name, [fake.key.key_id], harness.clock.now) == {}


async def test_an_unreachable_server_gives_no_keys(harness: Harness) -> None:
    fake = await started(harness, fail=True)
    keyring = harness.keyring()
    assert await keyring.get_verify_keys(fake.server_name, [fake.key.key_id], harness.clock.now) == {}
    assert await keyring.get_verify_keys("localhost:1", ["ed25519:a"], harness.clock.now) == {}


async def test_a_wrong_signature_with_a_known_key_fails(harness: Harness) -> None:
    fake = await started(harness)
    forged = signed_obj(fake.server_name, generate_signing_key(fake.key.version))
    with pytest.raises(SignatureError):
        await harness.keyring().verify_json_for_server(fake.server_name, forged, harness.clock.now)


def event_signed_by(server: str, key: SigningKey, room_version: str, ts: int) -> Event:
    rv = KNOWN_ROOM_VERSIONS[room_version]
    # Built and hashed by "us", then signed by the remote server too.
    event = build_event(rv, room_id=f"!room:{server}", type="m.room.message", sender=f"@alice:{server}",
                        content={"body": "hi"}, state_key=None, prev_event_ids=["$prev"] if rv.event_format.name != "V1"
                        else [], auth_event_ids=[], depth=3, origin_server_ts=ts, server_name=OUR_NAME,
                        signing_key=OUR_KEY)
    pdu = dict(event.pdu)
    pdu["signatures"] = {}
    return Event(sign_event(pdu, rv, server, key), rv)


async def test_old_keys_sign_events_from_before_they_expired(harness: Harness) -> None:
    old = generate_signing_key("old")
    expired_ts = harness.clock.now - DAY_MS
    fake = await started(harness, old_keys={old.key_id: OldVerifyKey(encode_verify_key(old.verify_key), expired_ts)})
    keyring = harness.keyring()
    await keyring.verify_event_signatures(event_signed_by(fake.server_name, old, "10", expired_ts - 1000))
    with pytest.raises(SignatureError):
        await keyring.verify_event_signatures(event_signed_by(fake.server_name, old, "10", expired_ts + 1000))
    # Old keys never sign requests (they are not valid now).
    with pytest.raises(SignatureError):
        await keyring.verify_json_for_server(fake.server_name, signed_obj(fake.server_name, old), harness.clock.now)
    # Room versions 1-4 do not enforce validity: any known key will do.
    await keyring.verify_event_signatures(event_signed_by(fake.server_name, old, "4", expired_ts + 1000))


async def test_an_event_must_be_signed_with_a_key_valid_at_its_timestamp(harness: Harness) -> None:
    fake = await started(harness)
    keyring = harness.keyring()
    now = harness.clock.now
    await keyring.verify_event_signatures(event_signed_by(fake.server_name, fake.key, "11", now))
    # Later than the key's valid_until_ts, and the server still says so.
    with pytest.raises(SignatureError):
        await keyring.verify_event_signatures(event_signed_by(fake.server_name, fake.key, "11", now + 2 * DAY_MS))
    # An event with a signature by a key the server never had.
    with pytest.raises(SignatureError):
        await keyring.verify_event_signatures(
            event_signed_by(fake.server_name, generate_signing_key("other"), "11", now))


async def test_our_own_keys_are_known_without_fetching(harness: Harness) -> None:
    keyring = harness.keyring(fetchers=[])
    await keyring.verify_json_for_server(OUR_NAME, signed_obj(OUR_NAME, OUR_KEY), harness.clock.now)
    response = keyring.own_key_response()
    assert response["valid_until_ts"] > harness.clock.now


# -- notaries -----------------------------------------------------------------------


def notary_routes(notary_name: list[str], notary_key: SigningKey, target: FakeKeyServer,
                  *, sign: bool = True) -> FakeKeyServer:
    def add(bp: Blueprint) -> None:
        async def query(request: Request) -> HTTPResponse:
            body = parse_json_body(request)
            assert target.server_name in body["server_keys"]
            answer = target.response()
            if sign:
                answer = sign_json(answer, notary_name[0], notary_key)
            return json_response({"server_keys": [answer]})

        bp.add_route(query, "/_matrix/key/v2/query", methods=["POST"])

    return FakeKeyServer(extra_routes=[add])


@pytest.mark.parametrize("notary_signs", [True, False])
async def test_keys_come_from_a_notary_when_the_server_is_down(harness: Harness, notary_signs: bool) -> None:
    target = await started(harness, fail=True)
    notary_key = generate_signing_key("n1")
    name: list[str] = []
    notary = notary_routes(name, notary_key, target, sign=notary_signs)
    name.append(await harness.start(notary))
    trusted = TrustedKeyServer(server_name=name[0],
                               verify_keys={notary_key.key_id: encode_verify_key(notary_key.verify_key)})
    keyring = harness.keyring([DirectKeyFetcher(harness.client), NotaryKeyFetcher(harness.client, trusted)])
    keys = await keyring.get_verify_keys(target.server_name, [target.key.key_id], harness.clock.now)
    assert target.requests == 1
    if notary_signs:
        assert target.key.key_id in keys
        # What is stored for serving again carries only the server's signature.
        [stored] = await keyring.stored_key_responses(target.server_name)
        assert list(stored["signatures"]) == [target.server_name]
    else:
        assert keys == {}


class BlockingFetcher:
    """Answers the fake server's keys once ``release`` is set; counts calls."""

    def __init__(self, fake: FakeKeyServer) -> None:
        self.fake = fake
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.calls = 0

    async def fetch_key_responses(self, server_name: str, key_ids: object, minimum_valid_until_ts: int
                                  ) -> list[object]:
        self.calls += 1
        self.started.set()
        await self.release.wait()
        return [self.fake.response()]


@dataclass
class HeldFetch:
    """A KeyRing whose one fetcher holds the fetch that ``first`` (a lookup of the
    fake server's key at ``at_ts``) started open until ``fetcher.release`` is set."""

    fake: FakeKeyServer
    fetcher: BlockingFetcher
    keyring: KeyRing
    at_ts: int
    first: asyncio.Task[dict[str, VerifyKey]]

    def lookup(self, key_ids: list[str]) -> asyncio.Task[dict[str, VerifyKey]]:
        """Another lookup of REMOTE's keys at the same time as ``first``'s."""
        return asyncio.create_task(self.keyring.get_verify_keys(REMOTE, key_ids, self.at_ts))


async def held_fetch(harness: Harness) -> HeldFetch:
    fake = FakeKeyServer(server_name=REMOTE, valid_until_ts=harness.clock.now + DAY_MS)
    fetcher = BlockingFetcher(fake)
    keyring = harness.keyring([fetcher])
    first = asyncio.create_task(keyring.get_verify_keys(REMOTE, [fake.key.key_id], harness.clock.now))
    await fetcher.started.wait()
    return HeldFetch(fake, fetcher, keyring, harness.clock.now, first)


class ExplodingFetcher:
    async def fetch_key_responses(self, server_name: str, key_ids: object, minimum_valid_until_ts: int
                                  ) -> list[object]:
        raise RuntimeError("unexpected")


async def test_a_cancelled_caller_does_not_wedge_later_lookups(harness: Harness) -> None:
    held = await held_fetch(harness)
    held.first.cancel()
    held.fetcher.release.set()
    with pytest.raises(asyncio.CancelledError):
        await held.first
    # The fetch finished on its own and stored the keys.
    assert held.fake.key.key_id in await held.lookup([held.fake.key.key_id])
    assert held.fetcher.calls == 1
    # A later lookup of an unknown key starts a new fetch.
    await held.lookup(["ed25519:new"])
    assert held.fetcher.calls == 2


async def test_a_lookup_of_other_keys_during_a_fetch_fetches_after_it(harness: Harness) -> None:
    held = await held_fetch(harness)
    # Same key while the fetch runs: shares it.
    same = held.lookup([held.fake.key.key_id])
    # A key the running fetch does not ask for: waits for it, then fetches.
    other = held.lookup(["ed25519:other"])
    await asyncio.sleep(0)
    held.fetcher.release.set()
    assert held.fake.key.key_id in await held.first
    assert held.fake.key.key_id in await same
    assert await other == {}
    assert held.fetcher.calls == 2


async def test_a_failing_fetcher_gives_no_keys_and_the_next_one_is_asked(harness: Harness) -> None:
    fake = FakeKeyServer(server_name=REMOTE, valid_until_ts=harness.clock.now + DAY_MS)
    fetcher = BlockingFetcher(fake)
    fetcher.release.set()
    keyring = harness.keyring([ExplodingFetcher(), fetcher])
    assert fake.key.key_id in await keyring.get_verify_keys(REMOTE, [fake.key.key_id], harness.clock.now)
    assert await harness.keyring([ExplodingFetcher()]).get_verify_keys("other.test", ["ed25519:a"], 0) == {}


async def test_our_key_response_has_the_spec_shape_and_our_old_keys(harness: Harness) -> None:
    old = generate_signing_key("was")
    expired_ts = harness.clock.now - DAY_MS
    keyring = harness.keyring(fetchers=[], old_keys={old.key_id: OldVerifyKey(encode_verify_key(old.verify_key),
                                                                              expired_ts)})
    response = keyring.own_key_response()
    # definitions/keys.yaml: required fields, and expired_ts + key for old keys.
    assert {"server_name", "verify_keys", "signatures", "valid_until_ts"} <= set(response)
    assert response["server_name"] == OUR_NAME
    assert response["verify_keys"] == {OUR_KEY.key_id: {"key": encode_verify_key(OUR_KEY.verify_key)}}
    assert response["old_verify_keys"] == {old.key_id: {"key": encode_verify_key(old.verify_key),
                                                        "expired_ts": expired_ts}}
    # Valid for a while, but not more than the 7 days others will believe.
    assert harness.clock.now + 3600_000 < response["valid_until_ts"] <= harness.clock.now + 7 * DAY_MS
    # What we publish passes our own checks for a remote response.
    rows = parse_key_response(OUR_NAME, response, harness.clock.now)
    assert {(r.key_id, r.expired_ts) for r in rows} == {(OUR_KEY.key_id, None), (old.key_id, expired_ts)}
    # Our old key checks our old events, not new ones.
    await keyring.verify_json_for_server(OUR_NAME, signed_obj(OUR_NAME, old), expired_ts - 1)
    with pytest.raises(SignatureError):
        await keyring.verify_json_for_server(OUR_NAME, signed_obj(OUR_NAME, old), expired_ts + 1)


async def test_a_stale_answer_does_not_shorten_a_keys_validity(harness: Harness) -> None:
    fake = FakeKeyServer(server_name="remote.test", valid_until_ts=harness.clock.now + 3 * DAY_MS)
    fresh = fake.response()
    fake.valid_until_ts = harness.clock.now + DAY_MS
    stale = fake.response()
    keyring = harness.keyring(fetchers=[])
    assert await keyring.store_key_responses("remote.test", [fresh, stale]) == 2
    [row] = await harness.database.get_server_keys("remote.test")
    assert row.valid_until_ts == harness.clock.now + 3 * DAY_MS
    # Retiring the key is always taken.
    fake.old_keys = {fake.key.key_id: OldVerifyKey(encode_verify_key(fake.key.verify_key), harness.clock.now)}
    fake.key = generate_signing_key("k2")
    await keyring.store_key_responses("remote.test", [fake.response()])
    rows = {r.key_id: r for r in await harness.database.get_server_keys("remote.test")}
    assert rows["ed25519:k1"].expired_ts == harness.clock.now
    assert rows["ed25519:k1"].valid_until_ts == harness.clock.now
    assert rows["ed25519:k2"].expired_ts is None


async def test_a_response_canonical_json_cannot_encode_is_refused(harness: Harness) -> None:
    fake = FakeKeyServer(server_name="remote.test", valid_until_ts=harness.clock.now + DAY_MS)
    response = fake.response()
    response["extra"] = float("nan")
    keyring = harness.keyring(fetchers=[])
    assert await keyring.store_key_responses("remote.test", [response]) == 0
    assert await harness.database.get_server_keys("remote.test") == []
