"""The benchmark's fake remote answers what a receiving server asks of a real
one about the events the fake sent into its room: the events themselves,
and the room's state (IDs, or whole) before them (Synapse asks for it when it
has dropped part of a long queue of received PDUs)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import httpx

from bench.federation import FakeRemote, RemoteMember
from tests.builders import TestRoom


async def test_state_before_the_fakes_events(tmp_path: Path) -> None:
    remote = FakeRemote()
    await remote.start(tmp_path)
    try:
        room = TestRoom("10", creator="@host:elsewhere.example", server_name="elsewhere.example")
        join = room.join(f"@sender:{remote.server_name}")
        state = list(room.state.values())
        for event in room.events:
            remote.known[event.event_id] = event
        member = RemoteMember(room.version, room.room_id, join.sender, [room.create.event_id,
                              room.power_levels.event_id, join.event_id], [join.event_id], join.depth,
                              state_ids=[e.event_id for e in state],
                              auth_chain_ids=[room.create.event_id, room.power_levels.event_id])
        remote.members[room.room_id] = member
        remote.message(member, "hello")
        sent_id = member.prev_event_ids[0]
        base = f"https://{remote.server_name}/_matrix/federation/v1"
        async with httpx.AsyncClient(verify=False) as http:
            ids = (await http.get(f"{base}/state_ids/{quote(room.room_id)}",
                                  params={"event_id": sent_id})).json()
            assert ids == {"pdu_ids": member.state_ids, "auth_chain_ids": member.auth_chain_ids}
            whole = (await http.get(f"{base}/state/{quote(room.room_id)}",
                                    params={"event_id": sent_id})).json()
            assert [p["type"] for p in whole["pdus"]] == [e.type for e in state]
            assert len(whole["auth_chain"]) == 2
            got = (await http.get(f"{base}/event/{quote(join.event_id)}")).json()
            assert got["pdus"] == [join.pdu]
            # Only the fake's own events, in their room.
            assert (await http.get(f"{base}/state_ids/{quote(room.room_id)}",
                                   params={"event_id": join.event_id})).status_code == 404
            assert (await http.get(f"{base}/state_ids/{quote('!other:x')}",
                                   params={"event_id": sent_id})).status_code == 404
    finally:
        await remote.stop()
