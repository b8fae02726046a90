"""The federation sender against fake remote servers: PDUs of rooms with
remote members, transactions of at most 50 PDUs and 100 EDUs, a destination
that is down, a restart with a pending queue, a poison PDU."""

from __future__ import annotations

import asyncio
import json
from typing import cast

import pytest

from federationapi.component import build
from federationapi.sender.queues import DestinationQueues
from federationapi.sender.storage import JoinedMember, OutgoingPDU, SenderDatabase
from matrixlib.events import Event
from roomserver.api import FederationRoomserverAPI
from tests.component.federationapi.conftest import OUR_KEY, OUR_NAME, make_config, on_each_database
from tests.component.federationapi.sender_fakes import ALICE, Env, env, eventually, room_with

__all__ = ["env"]  # the fixture, imported


async def test_pdus_of_local_users_reach_the_remote_member_in_order(env: Env) -> None:
    remote = await env.destination()
    bob = f"@bob:{remote.server_name}"
    await env.start_sender()
    room = await room_with(env, bob)
    for i in range(5):
        await env.output.write(room.message(ALICE, f"m{i}"))
    # Bob's own message came from his server: never sent back.
    await env.output.write(room.message(bob, "from bob"), origin=remote.server_name)
    await env.output.write(room.message(ALICE, "last"))
    await remote.wait_for(lambda: "last" in remote.bodies())
    assert remote.bodies() == ["m0", "m1", "m2", "m3", "m4", "last"]
    assert all(body["origin"] == OUR_NAME for body in remote.transactions)
    # The room's events from before Bob joined were never his server's.
    assert not any(pdu["type"] == "m.room.create" for pdu in remote.pdus())


async def test_historical_events_and_rooms_without_remote_members_send_nothing(env: Env) -> None:
    remote = await env.destination()
    bob = f"@bob:{remote.server_name}"
    await env.start_sender()
    lonely = await room_with(env)
    await env.output.write(lonely.message(ALICE, "nobody else here"))
    room = await room_with(env, bob)
    await env.output.write(room.message(ALICE, "old"), historical=True)
    await env.output.write(room.message(ALICE, "new"))
    await remote.wait_for(lambda: "new" in remote.bodies())
    assert remote.bodies() == ["new"]


async def test_kick_reaches_the_kicked_users_server(env: Env) -> None:
    remote = await env.destination()
    other = await env.destination()
    bob = f"@bob:{remote.server_name}"
    carol = f"@carol:{other.server_name}"
    await env.start_sender()
    room = await room_with(env, bob, carol)
    kick = room.kick(ALICE, bob)
    await env.output.write(kick)
    await env.output.write(room.message(ALICE, "after"))
    await other.wait_for(lambda: "after" in other.bodies())
    await remote.wait_for(lambda: any(p["type"] == "m.room.member" for p in remote.pdus()))
    assert [p["state_key"] for p in remote.pdus()] == [bob]
    # Bob's server is no longer in the room: the next message is not its.
    assert [p["type"] for p in other.pdus()] == ["m.room.member", "m.room.message"]
    assert "after" not in remote.bodies()


@on_each_database
async def test_a_hundred_and_twenty_queued_events_make_transactions_of_fifty(env: Env) -> None:
    remote = await env.destination()
    database = SenderDatabase(env.db, OUR_NAME)
    members = [JoinedMember("$bobjoin", f"@bob:{remote.server_name}", remote.server_name)]
    await database.write_room_event("!r:us.test", 1, joined=members, left_event_ids=[])
    for i in range(120):
        pdu = {"type": "m.room.message", "content": {"body": f"m{i}"}, "room_id": "!r:us.test"}
        await database.write_room_event("!r:us.test", i + 2, joined=[], left_event_ids=[],
                                        pdu=OutgoingPDU(f"$e{i}", json.dumps(pdu)))
    queues = DestinationQueues(database, env.client, OUR_NAME, backoff_initial=0.05)
    await queues.resume()
    try:
        await remote.wait_for(lambda: len(remote.pdus()) == 120)
        await queues.drained(remote.server_name)
    finally:
        await queues.close()
    assert [len(body["pdus"]) for body in remote.transactions] == [50, 50, 20]
    assert remote.bodies() == [f"m{i}" for i in range(120)]
    assert await database.queued_count() == 0


async def test_edus_go_at_most_a_hundred_per_transaction_and_to_device_merges(env: Env) -> None:
    remote = await env.destination()
    database = SenderDatabase(env.db, OUR_NAME)
    for i in range(150):
        edu = {"edu_type": "m.direct_to_device",
               "content": {"sender": ALICE, "type": "m.test", "message_id": f"msg{i}",
                           "messages": {f"@bob:{remote.server_name}": {"D1": {"i": i}}}}}
        await database.queue_edu([remote.server_name], json.dumps(edu))
    # One request to three devices: three records, one EDU.
    for device in ("D1", "D2", "D3"):
        edu = {"edu_type": "m.direct_to_device",
               "content": {"sender": ALICE, "type": "m.test", "message_id": "shared",
                           "messages": {f"@bob:{remote.server_name}": {device: {"d": device}}}}}
        await database.queue_edu([remote.server_name], json.dumps(edu))
    queues = DestinationQueues(database, env.client, OUR_NAME)
    await queues.resume()
    try:
        await remote.wait_for(lambda: sum(len(b.get("edus", [])) for b in remote.transactions) == 151)
        await queues.drained(remote.server_name)
    finally:
        await queues.close()
    assert [len(body.get("edus", [])) for body in remote.transactions] == [100, 51]
    merged = remote.edus()[-1]["content"]
    assert merged["message_id"] == "shared"
    assert merged["messages"][f"@bob:{remote.server_name}"] == {"D1": {"d": "D1"}, "D2": {"d": "D2"},
                                                                "D3": {"d": "D3"}}
    assert [e["content"]["message_id"] for e in remote.edus()[:150]] == [f"msg{i}" for i in range(150)]


async def test_a_down_destination_gets_everything_in_order_once_back_while_others_keep_receiving(
        env: Env) -> None:
    down = await env.destination(fail_status=502)
    up = await env.destination()
    await env.start_sender()
    room = await room_with(env, f"@bob:{down.server_name}", f"@carol:{up.server_name}")
    for i in range(30):
        await env.output.write(room.message(ALICE, f"m{i}"))
    await up.wait_for(lambda: len(up.bodies()) == 30)
    assert up.bodies() == [f"m{i}" for i in range(30)]
    # Retried meanwhile, always with the same transaction.
    await down.wait_for(lambda: len(down.requests) >= 3)
    assert down.accepted == {}
    assert len({txn_id for txn_id, _ in down.requests}) == 1
    assert env.sender is not None and env.sender.queues.is_backing_off(down.server_name)
    down.fail_status = None
    await down.wait_for(lambda: len(down.bodies()) == 30)
    assert down.bodies() == [f"m{i}" for i in range(30)]
    assert down.accepted_order[0] == down.requests[0][0]
    assert not env.sender.queues.is_backing_off(down.server_name)


@on_each_database
async def test_a_restart_with_a_pending_queue_resends_the_same_transaction_and_loses_nothing(env: Env) -> None:
    remote = await env.destination(fail_status=500)
    await env.start_sender()
    room = await room_with(env, f"@bob:{remote.server_name}")
    for i in range(10):
        await env.output.write(room.message(ALICE, f"m{i}"))
    await remote.wait_for(lambda: len(remote.requests) >= 2)
    assert env.sender is not None
    database = env.sender.database

    async def all_queued() -> bool:
        return await database.queued_count(remote.server_name) == 10

    await eventually(all_queued)
    first_txn = remote.requests[0][0]
    await env.stop_sender()

    remote.fail_status = None
    await env.start_sender()
    for i in range(10, 15):
        await env.output.write(room.message(ALICE, f"m{i}"))
    await remote.wait_for(lambda: len(remote.bodies()) == 15)
    assert remote.accepted_order[0] == first_txn
    assert remote.bodies() == [f"m{i}" for i in range(15)]
    event_ids = [Event(p, room.version).event_id for p in remote.pdus()]
    assert len(set(event_ids)) == 15


async def test_a_destination_that_reaches_us_is_retried_at_once_whatever_its_backoff(env: Env) -> None:
    remote = await env.destination(fail_status=503)
    sender = await env.start_sender(backoff_initial=600, backoff_max=600)
    room = await room_with(env, f"@bob:{remote.server_name}")
    await env.output.write(room.message(ALICE, "waiting"))
    await remote.wait_for(lambda: len(remote.requests) == 1)

    async def backing_off() -> bool:
        return sender.queues.is_backing_off(remote.server_name)

    await eventually(backing_off)
    remote.fail_status = None
    # An authenticated request from it (the inbound side calls this).
    sender.destination_is_up(remote.server_name)
    await remote.wait_for(lambda: remote.bodies() == ["waiting"])
    assert not sender.queues.is_backing_off(remote.server_name)


async def test_an_invite_goes_over_invite_only_and_a_withdrawn_one_reaches_the_invitee(env: Env) -> None:
    remote = await env.destination()
    bob = f"@bob:{remote.server_name}"
    await env.start_sender()
    room = await room_with(env)
    await env.output.write(room.invite(ALICE, bob))
    await env.output.write(room.kick(ALICE, bob))
    await remote.wait_for(lambda: len(remote.pdus()) >= 1)
    assert [(p["type"], p["content"]["membership"]) for p in remote.pdus()] == [("m.room.member", "leave")]


@pytest.mark.parametrize("enabled", [True, False])
async def test_the_component_runs_the_sender_unless_turned_off(env: Env, enabled: bool) -> None:
    config = make_config(env.tmp_path)
    config.federation_sender_enabled = enabled
    component = build(config, OUR_KEY, env.db, roomserver=cast(FederationRoomserverAPI, env.roomserver),
                      log=env.log)
    running = asyncio.create_task(component.run())
    try:
        await asyncio.wait_for(component.ready.wait(), 20)
        assert (component.sender is not None) is enabled
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        if component.sender is not None:
            await component.sender.close()
