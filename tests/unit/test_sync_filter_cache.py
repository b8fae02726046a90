"""/sync's inline filter is parsed once per text: the same text gives the
same (immutable) Filter, a bad one is refused every time and never kept."""

from __future__ import annotations

import json

import pytest

from common import errors
from syncapi.routing import filter as filter_routing


async def test_the_same_inline_filter_is_parsed_once() -> None:
    text = json.dumps({"room": {"timeline": {"limit": 7}}})
    first = await filter_routing.load_filter(None, "@a:x", text)  # type: ignore[arg-type]
    second = await filter_routing.load_filter(None, "@b:x", text)  # type: ignore[arg-type]
    assert first is second and first.room.timeline.limit == 7
    other = await filter_routing.load_filter(None, "@a:x", json.dumps({"room": {"timeline": {"limit": 8}}}))  # type: ignore[arg-type]
    assert other.room.timeline.limit == 8


async def test_a_bad_filter_is_refused_every_time_and_not_kept() -> None:
    for _ in range(2):
        with pytest.raises(errors.BadJSON):
            await filter_routing.load_filter(None, "@a:x", '{"room": []}')  # type: ignore[arg-type]
    assert '{"room": []}' not in filter_routing._parsed


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(filter_routing, "PARSED_FILTERS_KEPT", 3)
    monkeypatch.setattr(filter_routing, "_parsed", type(filter_routing._parsed)())
    for limit in range(1, 6):
        filter_routing._parse_cached(json.dumps({"room": {"timeline": {"limit": limit}}}))
    assert len(filter_routing._parsed) == 3
