"""The federation sender's per-room memory (last entry handled, whether other
servers are in the room) stays within its bound however many rooms it sees,
and a room forgotten to keep that bound still sends exactly what it must:
every event once, in order, to the servers in the room (issue 6)."""

from __future__ import annotations

from common.lru_cache import LRUCache
from tests.component.federationapi.sender_fakes import ALICE, Env, env, room_with

__all__ = ["env"]  # the fixture, imported


async def test_forgotten_rooms_still_send_every_event_once_in_order(env: Env) -> None:
    remote = await env.destination()
    sender = await env.start_sender()
    consumer = sender.rooms
    consumer._positions = LRUCache(1)
    consumer._has_other_servers = LRUCache(1)
    first = await room_with(env, f"@bob:{remote.server_name}")
    second = await room_with(env, f"@carol:{remote.server_name}")
    lonely = await room_with(env)
    # Each entry makes the next room's memory forget the previous one's.
    for i in range(3):
        await env.output.write(first.message(ALICE, f"a{i}"))
        await env.output.write(lonely.message(ALICE, f"nobody {i}"))
        await env.output.write(second.message(ALICE, f"b{i}"))
        assert len(consumer._positions) <= 1 and len(consumer._has_other_servers) <= 1
    await env.output.write(first.message(ALICE, "last"))
    await remote.wait_for(lambda: "last" in remote.bodies())
    bodies = remote.bodies()
    assert [b for b in bodies if b.startswith("a") or b == "last"] == ["a0", "a1", "a2", "last"]
    assert [b for b in bodies if b.startswith("b")] == ["b0", "b1", "b2"]
    assert not any(b.startswith("nobody") for b in bodies)
