"""Events this process built lately, by their exact JSON.

A client's send builds, hashes and signs an event, then hands its JSON to
the room server's input; in a single process the room server would parse
those very bytes again (and hash them again for the event ID). The builder
notes the event here and the input takes it back by its room version and
JSON: the same bytes, so the same event. Bounded: a process whose room server
is elsewhere (the split deployment) only ever notes, and forgets the oldest.
"""

from __future__ import annotations

from collections import OrderedDict

from matrixlib.events import Event

BUILT_EVENTS_KEPT = 128

_built: OrderedDict[tuple[str, bytes], Event] = OrderedDict()


def note_built(event: Event) -> None:
    """Remembers an event this process built (and will input)."""
    _built[(event.room_version.identifier, event.to_json())] = event
    while len(_built) > BUILT_EVENTS_KEPT:
        _built.popitem(last=False)


def take_built(room_version: str, pdu_json: bytes) -> Event | None:
    """The event noted with exactly this room version and JSON, once."""
    return _built.pop((room_version, pdu_json), None)
