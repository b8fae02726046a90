"""The notifier's per-user records (last position per stream, last own
membership change) stay within their bound however many users it sees, and
a user forgotten to keep that bound is answered "unknown" (look in the
database), never "no news" (issue 6)."""

from __future__ import annotations

import asyncio

from syncapi.notifier import PDU, LastPositions, Notifier

A, B, C = "@a:test", "@b:test", "@c:test"


def test_last_positions_stay_bounded_under_many_users() -> None:
    positions = LastPositions(100)
    for i in range(1_000):
        positions.raise_to(f"@u{i}:test", i + 1)
        assert len(positions) <= 100
    assert positions.forgotten_upto == 900
    assert positions.get("@u999:test") == 1_000 and positions.get("@u0:test") is None


def test_a_forgotten_user_is_unknown_never_no_news() -> None:
    notifier = Notifier("test")
    notifier.start_at(10)
    notifier._streams[PDU].last_position = LastPositions(2)
    for position, user_id in ((11, A), (12, B), (13, C)):
        notifier.on_new_data(position, [user_id])
    assert A not in notifier._streams[PDU].last_position  # forgotten
    # A's news at 11 is forgotten: unknown, so /sync looks in the database.
    assert notifier.has_news(A, 10) is None
    assert notifier.stream_has_news(A, PDU, 10) is None
    # Past every forgotten position: nothing can have been missed.
    assert notifier.has_news(A, 13) is False
    assert notifier.has_news(C, 12) is True and notifier.has_news(B, 12) is False
    # Notified again: known again.
    notifier.on_new_data(14, [A])
    assert notifier.has_news(A, 13) is True


def test_a_forgotten_membership_change_is_unknown_never_no_news() -> None:
    notifier = Notifier("test")
    notifier.start_at(10)
    notifier.tracks_memberships = True
    notifier._membership_position = LastPositions(2)
    for position, user_id in ((11, A), (12, B), (13, C)):
        notifier.memberships_changing(position, [user_id])
    assert notifier.membership_news(A, 10) is None
    assert notifier.membership_news(A, 13) is False
    assert notifier.membership_news(C, 12) is True and notifier.membership_news(B, 12) is False
    for i in range(50):
        notifier.memberships_changing(20 + i, [f"@u{i}:test"])
    assert len(notifier._membership_position) <= 2


async def test_a_large_rooms_wake_up_records_every_local_member_and_wakes_only_the_waiting() -> None:
    """A room event concerns every member of a large room: each local member's
    last position rises (none for remote users), only those waiting are woken,
    and the bound still forgets the least recently concerned first."""
    notifier = Notifier("test")
    notifier.start_at(10)
    notifier._streams[PDU].last_position = LastPositions(1_500)
    members = {f"@m{i}:test" for i in range(1_000)} | {"@remote:elsewhere"}
    waiting = asyncio.create_task(notifier.wait_for_news("@m7:test", 10, 5))
    idle = asyncio.create_task(notifier.wait_for_news("@outsider:test", 10, 0.3))
    await asyncio.sleep(0.01)
    notifier.on_new_data(11, members)
    assert await asyncio.wait_for(waiting, 1) is True
    assert await idle is False
    assert all(notifier.has_news(m, 10) is True for m in members if m.endswith(":test"))
    assert notifier._streams[PDU].last_position.get("@remote:elsewhere") is None
    # A list (as other writers give) and a later position for some of them.
    notifier.on_new_data(12, ["@m1:test", "@m2:test", "@new:test"])
    assert notifier.has_news("@m1:test", 11) is True and notifier.has_news("@m3:test", 11) is False
    # 600 more users: the bound (1,500) forgets the 101 least recently concerned
    # (members raised at 11, never those raised at 12), and they become unknown.
    notifier.on_new_data(13, [f"@n{i}:test" for i in range(600)])
    positions = notifier._streams[PDU].last_position
    assert len(positions) == 1_500 and positions.forgotten_upto == 11
    assert all(positions.get(u) == 12 for u in ("@m1:test", "@m2:test", "@new:test"))
    forgotten = [m for m in members if m.endswith(":test") and positions.get(m) is None]
    assert len(forgotten) == 1_000 + 1 + 600 - 1_500
    assert all(notifier.has_news(m, 10) is None for m in forgotten)
