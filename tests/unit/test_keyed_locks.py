"""common.keyed_locks: one lock per key, dropped when unused."""

from __future__ import annotations

import asyncio

from common.keyed_locks import KeyedLocks


async def test_same_key_waits_other_keys_do_not_and_unused_locks_are_dropped() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    order: list[str] = []
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with locks.hold("a"):
            order.append("first in")
            first_in.set()
            await release.wait()
            order.append("first out")

    async def same_key() -> None:
        async with locks.hold("a"):
            order.append("second in")

    async def other_key() -> None:
        async with locks.hold("b"):
            order.append("other in")

    first = asyncio.create_task(holder())
    await first_in.wait()
    second = asyncio.create_task(same_key())
    await other_key()
    assert order == ["first in", "other in"]
    assert len(locks) == 1
    release.set()
    await asyncio.gather(first, second)
    assert order == ["first in", "other in", "first out", "second in"]
    assert len(locks) == 0
