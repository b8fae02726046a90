"""The KeyRing's keys held in memory: a send_join's thousand events signed
with one key cost one database read, not one each; what is held is read
again after a while, after a store, and never used past its validity."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from federationapi.keyring import KEY_CACHE_MS, KeyRing
from federationapi.storage.database import ServerKeyRow
from matrixlib.signing import SignatureError, generate_signing_key
from tests.builders import TestRoom
from tests.component.federationapi.conftest import DAY_MS, FakeKeyServer, Harness, on_each_database

pytestmark = on_each_database


class CountedReads:
    """Counts the KeyRing's reads of stored keys."""

    def __init__(self, harness: Harness) -> None:
        self.reads = 0
        read = harness.database.get_server_keys

        async def counted(server_name: str, key_ids: Sequence[str] | None = None) -> list[ServerKeyRow]:
            self.reads += 1
            return await read(server_name, key_ids)

        harness.database.get_server_keys = counted  # type: ignore[method-assign]


async def started(harness: Harness) -> FakeKeyServer:
    fake = FakeKeyServer(valid_until_ts=harness.clock.now + DAY_MS)
    await harness.start(fake)
    return fake


def room_of(fake: FakeKeyServer) -> TestRoom:
    return TestRoom("10", creator=f"@rita:{fake.server_name}", server_name=fake.server_name, signing_key=fake.key)


async def test_held_keys_are_not_read_again_until_they_are_old(harness: Harness) -> None:
    fake = await started(harness)
    counted = CountedReads(harness)
    keyring = harness.keyring()
    for _ in range(5):
        assert fake.key.key_id in await keyring.get_verify_keys(fake.server_name, [fake.key.key_id],
                                                                harness.clock.now)
    assert fake.requests == 1
    reads = counted.reads
    harness.clock.now += KEY_CACHE_MS + 1
    assert fake.key.key_id in await keyring.get_verify_keys(fake.server_name, [fake.key.key_id], harness.clock.now)
    assert counted.reads == reads + 1 and fake.requests == 1


async def test_events_are_checked_from_memory_once_the_keys_are_held(harness: Harness) -> None:
    fake = await started(harness)
    keyring: KeyRing = harness.keyring()
    room = room_of(fake)
    event = room.message(room.creator, "hello")
    # The key is valid when the events are made (the builder's clock moves with every room built).
    harness.clock.now = event.origin_server_ts
    fake.valid_until_ts = harness.clock.now + DAY_MS
    # Nothing held yet: nothing checked, nothing fetched.
    assert not keyring.verify_event_signatures_from_memory(event)
    assert fake.requests == 0
    await keyring.verify_event_signatures(event)
    counted = CountedReads(harness)
    for other in [room.message(room.creator, f"m{i}") for i in range(5)]:
        assert keyring.verify_event_signatures_from_memory(other)
    assert counted.reads == 0
    # A forged signature with the held key's ID still fails.
    forger = TestRoom("10", creator=room.creator, server_name=fake.server_name,
                      signing_key=generate_signing_key(fake.key.version), room_id=room.room_id)
    with pytest.raises(SignatureError):
        keyring.verify_event_signatures_from_memory(forger.message(room.creator, "forged"))


async def test_a_held_key_is_not_used_past_its_validity(harness: Harness) -> None:
    fake = await started(harness)
    keyring = harness.keyring()
    await keyring.get_verify_keys(fake.server_name, [fake.key.key_id], harness.clock.now)
    later = harness.clock.now + 2 * DAY_MS
    assert keyring.cached_verify_keys(fake.server_name, [fake.key.key_id], later) is None
    # Not held, not stored valid then: fetched again (and the fake's answer is still too short).
    assert await keyring.get_verify_keys(fake.server_name, [fake.key.key_id], later) == {}
    assert fake.requests == 2


async def test_a_stored_response_replaces_what_is_held(harness: Harness) -> None:
    fake = await started(harness)
    keyring = harness.keyring()
    await keyring.get_verify_keys(fake.server_name, [fake.key.key_id], harness.clock.now)
    counted = CountedReads(harness)
    fake.valid_until_ts = harness.clock.now + 3 * DAY_MS
    assert await keyring.store_key_responses(fake.server_name, [fake.response()]) == 1
    keys = await keyring.get_verify_keys(fake.server_name, [fake.key.key_id], harness.clock.now)
    assert counted.reads == 1
    assert keys[fake.key.key_id].valid_until_ts == fake.valid_until_ts
