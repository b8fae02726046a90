"""An event keeps its canonical JSON at the JSON's own size: the bytes orjson
returns carry its whole working buffer (4 KiB), and cached events keep their
JSON as long as themselves (issue 6, peak memory)."""

from __future__ import annotations

import tracemalloc

from matrixlib.events import Event
from matrixlib.room_versions import get_room_version

V10 = get_room_version("10")


def _event(n: int) -> Event:
    return Event({
        "type": "m.room.message", "room_id": "!r:example.org", "sender": "@alice:example.org",
        "content": {"body": f"message {n}", "msgtype": "m.text"}, "depth": n, "origin_server_ts": 1000 + n,
        "prev_events": ["$p1"], "auth_events": ["$a1", "$a2", "$a3"], "hashes": {"sha256": "h"},
        "signatures": {},
    }, V10)


def test_kept_json_costs_about_its_length() -> None:
    events = [_event(n) for n in range(200)]
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        encoded = [event.to_json() for event in events]
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    length = sum(len(data) for data in encoded)
    assert 200 * 250 < length < 200 * 400
    # Each kept JSON costs its length plus a bytes object's header (~33 B),
    # a list slot and the event's __dict__ entry; with orjson's buffer it was
    # ~4.4 KiB each (over 800 KB here).
    assert after - before < length + 200 * 250


def test_kept_json_is_the_canonical_encoding() -> None:
    from matrixlib.canonical_json import encode_canonical_json

    event = _event(7)
    assert event.to_json() == encode_canonical_json(event.pdu)
    assert event.to_json() is event.to_json()
