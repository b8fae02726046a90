"""The record of which member events each device was sent (lazy-loaded
members) holds a bounded number of entries in all, however many devices
sync; forgetting only ever makes a member be sent again (issue 6)."""

from __future__ import annotations

import random

from syncapi.internal.lazy_members import MAX_TOTAL_MEMBERS, DeviceMembers, LazyLoadedMembers


def check_counts(members: LazyLoadedMembers, records: list[DeviceMembers], limit: int) -> None:
    """The total is what the records still counted hold, and within the limit."""
    held = {id(r): r for r in records if r._owner is members}
    assert members.total == sum(len(r) for r in held.values())
    assert members.total <= limit


def test_the_default_bounds_the_total() -> None:
    assert 0 < MAX_TOTAL_MEMBERS <= 100_000


def test_many_devices_hold_at_most_the_total_and_the_least_recent_go_first() -> None:
    members = LazyLoadedMembers(max_devices=1_000, members_per_device=10, max_total_members=25)
    for device in range(10):
        record = members.for_device("@u:test", f"D{device}", new_sequence=True)
        for user in range(4):
            record.remember("!r:test", f"@m{user}:test", f"$join{user}")
    assert 21 <= members.total <= 25
    # The five most recent devices are remembered whole; the oldest were
    # forgotten (whole devices) and start afresh.
    for device in range(5, 10):
        record = members.for_device("@u:test", f"D{device}", new_sequence=False)
        assert all(record.was_sent("!r:test", f"@m{u}:test", f"$join{u}") for u in range(4)), device
    oldest = members.for_device("@u:test", "D0", new_sequence=False)
    assert not oldest.was_sent("!r:test", "@m0:test", "$join0")
    assert members.total <= 25


def test_one_device_alone_over_the_total_keeps_its_newest() -> None:
    members = LazyLoadedMembers(members_per_device=100, max_total_members=5)
    record = members.for_device("@u:test", "D", new_sequence=True)
    for user in range(8):
        record.remember("!r:test", f"@m{user}:test", f"$e{user}")
    assert members.total == 5 and len(record) == 5
    assert not record.was_sent("!r:test", "@m2:test", "$e2")
    assert record.was_sent("!r:test", "@m3:test", "$e3") and record.was_sent("!r:test", "@m7:test", "$e7")


def test_a_forgotten_record_still_in_use_is_not_counted() -> None:
    members = LazyLoadedMembers(members_per_device=10, max_total_members=10)
    in_use = members.for_device("@u:test", "D", new_sequence=True)
    in_use.remember("!r:test", "@a:test", "$a")
    # The device starts a new sequence while a sync of the old one is built.
    fresh = members.for_device("@u:test", "D", new_sequence=True)
    assert members.total == 0
    in_use.remember("!r:test", "@b:test", "$b")
    fresh.remember("!r:test", "@c:test", "$c")
    assert members.total == 1
    assert not fresh.was_sent("!r:test", "@a:test", "$a")


def test_random_use_keeps_the_count_exact_and_bounded() -> None:
    rng = random.Random(6)
    members = LazyLoadedMembers(max_devices=20, members_per_device=15, max_total_members=60)
    seen: list[DeviceMembers] = []
    for _step in range(3_000):
        device = f"D{rng.randrange(40)}"
        record = members.for_device("@u:test", device, new_sequence=rng.random() < 0.05)
        seen.append(record)
        for _ in range(rng.randrange(6)):
            user = rng.randrange(30)
            record.remember(f"!r{rng.randrange(3)}:test", f"@m{user}:test", f"$e{user}")
        assert len(record) <= 15
        check_counts(members, seen, 60)
        assert len(members) <= 20
