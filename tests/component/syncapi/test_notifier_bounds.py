"""The notifier's per-user records (last position per stream, last own
membership change) stay within their bound however many users it sees, and
a user forgotten to keep that bound is answered "unknown" (look in the
database), never "no news" (issue 6)."""

from __future__ import annotations

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
