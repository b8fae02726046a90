"""A small least-recently-used cache, bounded by entries and optionally by
weight (no locking: one event loop uses it). Shared by the components for
their in-memory caches and bounded memos."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    """At most ``max_size`` items; with ``weigh``, also at most ``max_weight``
    in total (items whose size varies by orders of magnitude, such as a big
    room's state next to a small one's, are bounded by what they hold). The
    item put last is always kept, even alone over ``max_weight``: the one
    huge room being written to still has its state in memory."""

    def __init__(self, max_size: int, *, max_weight: int | None = None,
                 weigh: Callable[[V], int] | None = None) -> None:
        if (max_weight is None) != (weigh is None):
            raise ValueError("max_weight and weigh go together")
        self._max_size = max_size
        self._max_weight = max_weight
        self._weigh = weigh
        self._weights: dict[K, int] = {}
        self._total_weight = 0
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        if self._weigh is not None:
            self.discard(key)
            weight = self._weigh(value)
            self._weights[key] = weight
            self._total_weight += weight
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._max_size or (
                self._max_weight is not None and self._total_weight > self._max_weight
                and len(self._items) > 1):
            oldest, _ = self._items.popitem(last=False)
            self._total_weight -= self._weights.pop(oldest, 0)

    def discard(self, key: K) -> None:
        self._items.pop(key, None)
        self._total_weight -= self._weights.pop(key, 0)

    def clear(self) -> None:
        self._items.clear()
        self._weights.clear()
        self._total_weight = 0

    @property
    def total_weight(self) -> int:
        """The summed weight of the items held (0 without ``weigh``)."""
        return self._total_weight

    def __len__(self) -> int:
        return len(self._items)
