"""A device whose record of the member events it was sent (lazy-loaded
members) was forgotten to keep the record within its bound is sent the
members again, never left without them (issue 6)."""

from __future__ import annotations

from syncapi.internal.lazy_members import LazyLoadedMembers
from tests.component.syncapi.conftest import CAROL, Env
from tests.component.syncapi.test_sync import LAZY_MEMBERS, bob_lazily_syncs_carols_two_messages, member_keys


async def test_a_device_forgotten_for_the_bound_is_sent_its_members_again(env: Env) -> None:
    members = LazyLoadedMembers(max_total_members=3)
    env.syncapi.sync_handler.lazy_members = members
    room, token, _, third = await bob_lazily_syncs_carols_two_messages(env)  # Carol's member remembered

    # Other devices' syncs fill the record: Bob's device is forgotten first.
    for device in ("D1", "D2"):
        await env.sync(env.token(CAROL, device), filter=LAZY_MEMBERS)
    assert members.total <= 3
    await env.send(room.message(CAROL, "three"))
    fourth = await env.sync(token, since=third["next_batch"], filter=LAZY_MEMBERS, timeout=5000)
    assert member_keys(fourth, room.room_id) == [CAROL]
