"""common.lru_cache.LRUCache: bounded by count, and optionally by the
summed weight of what it holds (state snapshots by their entries)."""

from __future__ import annotations

import pytest

from common.lru_cache import LRUCache


def test_count_bound_evicts_least_recently_used() -> None:
    cache: LRUCache[str, int] = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.put("c", 3)
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c"), len(cache)) == (1, 3, 2)


def test_weight_bound_evicts_oldest_until_within() -> None:
    cache: LRUCache[str, list[int]] = LRUCache(100, max_weight=10, weigh=len)
    cache.put("a", [0] * 4)
    cache.put("b", [0] * 4)
    assert cache.total_weight == 8
    cache.put("c", [0] * 4)  # 12 > 10: "a" goes
    assert cache.get("a") is None
    assert cache.get("b") is not None and cache.get("c") is not None
    assert cache.total_weight == 8


def test_replacing_and_discarding_keep_the_weight_right() -> None:
    cache: LRUCache[str, list[int]] = LRUCache(100, max_weight=10, weigh=len)
    cache.put("a", [0] * 3)
    cache.put("a", [0] * 5)
    assert cache.total_weight == 5
    cache.discard("a")
    cache.discard("missing")
    assert (cache.total_weight, len(cache)) == (0, 0)


def test_an_item_over_the_weight_alone_is_kept_until_the_next() -> None:
    cache: LRUCache[str, list[int]] = LRUCache(100, max_weight=10, weigh=len)
    cache.put("small", [0] * 2)
    cache.put("huge", [0] * 50)
    assert cache.get("small") is None
    assert cache.get("huge") is not None and len(cache) == 1
    cache.put("next", [0] * 2)
    assert cache.get("huge") is None and cache.get("next") is not None
    assert cache.total_weight == 2


def test_weight_needs_both_arguments() -> None:
    with pytest.raises(ValueError):
        LRUCache(10, max_weight=5)


def test_clear_forgets_items_and_weight() -> None:
    cache: LRUCache[str, list[int]] = LRUCache(100, max_weight=10, weigh=len)
    cache.put("a", [0] * 4)
    cache.put("b", [0] * 4)
    cache.clear()
    assert len(cache) == 0 and cache.total_weight == 0 and cache.get("a") is None
    # The bound counts from nothing again.
    cache.put("c", [0] * 9)
    assert cache.get("c") is not None
