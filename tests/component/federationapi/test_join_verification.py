"""``verified_events``, the checks of a send_join answer's state and auth
chain: each event encoded once for its ID and its signatures, checked from
the KeyRing's memory once its server's keys are held, and every bad event
dropped all the same, the first time and when the keys are held."""

from __future__ import annotations

from typing import Any

import pytest

from federationapi.internal.membership import PARALLEL_CHECKS_FROM, parse_received_pdu, verified_events
from matrixlib.events import Event
from matrixlib.signing import generate_signing_key, hash_and_sign_event
from tests.builders import TestRoom
from tests.component.federationapi.conftest import DAY_MS, FakeKeyServer, Harness


@pytest.mark.parametrize("room_version", ["1", "3", "10", "12"])
async def test_good_events_are_kept_and_bad_ones_dropped(harness: Harness, room_version: str) -> None:
    fake = FakeKeyServer(valid_until_ts=harness.clock.now + DAY_MS)
    await harness.start(fake)
    keyring = harness.keyring()
    room = TestRoom(room_version, creator=f"@rita:{fake.server_name}", server_name=fake.server_name,
                    signing_key=fake.key)
    for i in range(PARALLEL_CHECKS_FROM + 20):  # checked in two threads
        room.join(f"@m{i}:{fake.server_name}")
    good = list(room.state.values())

    forger = TestRoom(room_version, creator=room.creator, server_name=fake.server_name,
                      signing_key=generate_signing_key(fake.key.version), room_id=room.room_id or None)
    forged, forged_too = (forger.build("m.room.topic", {"topic": topic}, state_key="", prev_event_ids=room.latest,
                                       auth_event_ids=[room.power_levels.event_id, room.creator_join.event_id],
                                       advance=False) for topic in ("forged", "forged too"))
    rehashed, rehashed_too = (dict(room.message(room.creator, body).pdu) for body in ("changed", "changed too"))
    rehashed["content"] = rehashed_too["content"] = {"msgtype": "m.text", "body": "something else"}
    # Hashed and signed as it is, but no canonical JSON: dropped from room version 6.
    floating = hash_and_sign_event({**room.message(room.creator, "a float", advance=False).pdu,
                                    "content": {"msgtype": "m.text", "body": "x", "n": 1.5}},
                                   room.version, fake.server_name, fake.key)
    elsewhere = TestRoom(room_version, creator=room.creator, server_name=fake.server_name,
                         signing_key=fake.key).message(room.creator, "another room")
    # The key is valid when the events were made (the builder's clock moves with every room built).
    harness.clock.now = max(e.origin_server_ts for e in [*good, elsewhere])
    fake.valid_until_ts = harness.clock.now + DAY_MS
    bad: list[Any] = [forged.pdu, rehashed, elsewhere.pdu, "not an object"]
    if room.version.strict_canonical_json:
        bad.append(floating)

    for attempt in range(2):  # fetching the key, then with the key held
        # Bad ones among the first half and the second (checked in another thread once the key is held).
        found = await verified_events(keyring, [*bad, *(e.pdu for e in good), forged_too.pdu, rehashed_too,
                                                *bad, good[0].pdu], room.version, room.room_id)
        assert set(found) == {e.event_id for e in good}, attempt
        assert all(found[e.event_id].pdu == Event(e.pdu, room.version).pdu for e in good)
    assert fake.requests == 1


def test_the_id_is_the_events_own() -> None:
    room = TestRoom("10")
    event = room.message(room.creator, "hello")
    pdu = {**event.pdu, "event_id": "$someone-elses"}
    parsed, signed = parse_received_pdu(pdu, room.version)
    assert parsed.event_id == event.event_id and "event_id" not in parsed.pdu
    assert signed


async def test_the_first_check_looks_the_keys_up_once(harness: Harness) -> None:
    """Keys not held yet: one event looks them up (fetching them), and the
    other hundred are checked from memory, not each with a database read."""
    fake = FakeKeyServer()
    await harness.start(fake)
    room = TestRoom("10", creator=f"@rita:{fake.server_name}", server_name=fake.server_name, signing_key=fake.key)
    for i in range(100):
        room.join(f"@m{i}:{fake.server_name}")
    harness.clock.now = max(e.origin_server_ts for e in room.events)
    fake.valid_until_ts = harness.clock.now + DAY_MS
    reads = 0
    read = harness.database.get_server_keys

    async def counted(server_name: str, key_ids: Any = None) -> Any:
        nonlocal reads
        reads += 1
        return await read(server_name, key_ids)

    harness.database.get_server_keys = counted  # type: ignore[method-assign]
    found = await verified_events(harness.keyring(), [e.pdu for e in room.events], room.version, room.room_id)
    assert set(found) == {e.event_id for e in room.events}
    assert fake.requests == 1 and reads <= 3  # read, fetched, read again
