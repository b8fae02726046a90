"""/sync against the read model built from the room server's output log."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from matrixlib.events import MEMBER
from tests.builders import TestRoom
from tests.component.syncapi.conftest import ALICE, BOB, CAROL, Env, running_env


def timeline_ids(room: dict[str, Any]) -> list[str]:
    return [e["event_id"] for e in room["timeline"]["events"]]


def state_keys(room: dict[str, Any]) -> set[tuple[str, str]]:
    return {(e["type"], e["state_key"]) for e in room["state"]["events"]}


async def test_unauthenticated_requests_are_refused(env: Env) -> None:
    response = await env.client.get("/_matrix/client/v3/sync")
    assert response.status_code == 401
    assert response.json()["errcode"] == "M_MISSING_TOKEN"
    response = await env.get("/_matrix/client/v3/sync", "nope")
    assert response.status_code == 401
    assert response.json()["errcode"] == "M_UNKNOWN_TOKEN"


async def test_initial_sync_returns_state_and_last_events(env: Env) -> None:
    room = TestRoom()
    room.set_state("m.room.name", {"name": "Lobby"})
    room.join(BOB)
    messages = [room.message(ALICE, f"hello {i}") for i in range(15)]
    await env.send_room(room)

    body = await env.sync(env.token(BOB))
    joined = body["rooms"]["join"][room.room_id]
    # The last 10 events, in order, and the state before them.
    assert timeline_ids(joined) == [m.event_id for m in messages[-10:]]
    assert joined["timeline"]["limited"] is True
    assert joined["timeline"]["prev_batch"]
    assert state_keys(joined) == {("m.room.create", ""), ("m.room.power_levels", ""),
                                  ("m.room.join_rules", ""), ("m.room.name", ""),
                                  (MEMBER, ALICE), (MEMBER, BOB)}
    first = joined["timeline"]["events"][0]
    assert "room_id" not in first
    assert first["content"]["body"] == "hello 5"
    assert first["sender"] == ALICE and first["type"] == "m.room.message"
    assert "age" in first["unsigned"]
    assert "auth_events" not in first and "signatures" not in first
    assert joined["summary"]["m.joined_member_count"] == 2
    assert body["next_batch"].startswith("s")

    # State in the timeline is not repeated in `state`, and the state is as
    # it was at the start of the timeline.
    body = await env.sync(env.token(BOB), filter='{"room": {"timeline": {"limit": 30}}}')
    joined = body["rooms"]["join"][room.room_id]
    assert joined["timeline"]["limited"] is False
    timeline_state = {(e["type"], e.get("state_key")) for e in joined["timeline"]["events"]}
    assert (MEMBER, BOB) in timeline_state
    # The whole room fits in the timeline: nothing comes before it.
    assert timeline_ids(joined)[0] == room.create.event_id
    assert joined["state"]["events"] == []


async def test_incremental_sync_returns_only_new_events(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    await env.send_room(room)
    token = env.token(BOB)
    first = await env.sync(token)

    idle = await env.sync(token, since=first["next_batch"])
    assert idle["rooms"]["join"] == {}

    new = [room.message(ALICE, "one"), room.message(BOB, "two")]
    await env.send(*new)
    body = await env.sync(token, since=first["next_batch"])
    joined = body["rooms"]["join"][room.room_id]
    assert timeline_ids(joined) == [e.event_id for e in new]
    assert joined["timeline"]["limited"] is False
    assert joined["state"]["events"] == []

    again = await env.sync(token, since=body["next_batch"])
    assert again["rooms"]["join"] == {}


async def test_incremental_limited_sync_carries_the_state_of_the_gap(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    await env.send_room(room)
    token = env.token(BOB)
    since = (await env.sync(token))["next_batch"]

    room.set_state("m.room.topic", {"topic": "changed in the gap"})
    room.join(CAROL)
    for i in range(12):
        room.message(ALICE, f"m{i}")
    await env.send(*room.events[-14:])

    body = await env.sync(token, since=since, filter='{"room": {"timeline": {"limit": 5}}}')
    joined = body["rooms"]["join"][room.room_id]
    assert joined["timeline"]["limited"] is True
    assert len(joined["timeline"]["events"]) == 5
    assert state_keys(joined) == {("m.room.topic", ""), (MEMBER, CAROL)}

    # prev_batch pages back over the gap without repeating the timeline.
    prev = joined["timeline"]["prev_batch"]
    page = (await env.get(f"/_matrix/client/v3/rooms/{room.room_id}/messages", token,
                          dir="b", **{"from": prev}, limit=7)).json()
    bodies = [e["content"].get("body") for e in page["chunk"]]
    assert bodies == [f"m{i}" for i in range(6, -1, -1)]


async def test_long_poll_is_woken_by_a_new_event(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    await env.send_room(room)
    token = env.token(BOB)
    since = (await env.sync(token))["next_batch"]

    loop = asyncio.get_running_loop()
    started = loop.time()
    poll = asyncio.create_task(env.sync(token, since=since, timeout=20000))
    await asyncio.sleep(0.3)
    assert not poll.done()
    message = room.message(ALICE, "wake up")
    await env.send(message, wait=False)
    body = await asyncio.wait_for(poll, 10)
    assert loop.time() - started < 10
    assert timeline_ids(body["rooms"]["join"][room.room_id]) == [message.event_id]


async def test_long_poll_times_out_empty_and_ignores_other_rooms(env: Env) -> None:
    mine, other = TestRoom(), TestRoom(creator=CAROL)
    mine.join(BOB)
    await env.send_room(mine)
    await env.send_room(other)
    token = env.token(BOB)
    since = (await env.sync(token))["next_batch"]

    poll = asyncio.create_task(env.sync(token, since=since, timeout=600))
    await env.send(other.message(CAROL, "not for bob"))
    body = await asyncio.wait_for(poll, 10)
    assert body["rooms"]["join"] == {}


async def test_transaction_id_is_echoed_only_to_the_sending_device(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    await env.send_room(room)
    sent = room.message(BOB, "from my phone")
    await env.send(sent, txn=(BOB, "PHONE", "txn-1"))

    def unsigned_of(body: dict[str, Any]) -> dict[str, Any]:
        events = body["rooms"]["join"][room.room_id]["timeline"]["events"]
        found: dict[str, Any] = next(e for e in events if e["event_id"] == sent.event_id)["unsigned"]
        return found

    assert unsigned_of(await env.sync(env.token(BOB, "PHONE")))["transaction_id"] == "txn-1"
    assert "transaction_id" not in unsigned_of(await env.sync(env.token(BOB, "LAPTOP")))
    assert "transaction_id" not in unsigned_of(await env.sync(env.token(ALICE, "PHONE")))


async def test_duplicate_output_entries_are_ignored(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    await env.send_room(room)
    message = room.message(ALICE, "once")
    entry = env.new_room_event(message)
    await env.append(entry, room.room_id)
    await env.append(entry, room.room_id)
    marker = room.message(ALICE, "after")
    await env.send(marker)

    body = await env.sync(env.token(BOB), filter='{"room": {"timeline": {"limit": 50}}}')
    ids = timeline_ids(body["rooms"]["join"][room.room_id])
    assert ids.count(message.event_id) == 1
    assert ids[-2:] == [message.event_id, marker.event_id]
    assert env.roomserver.state_queries == []


async def test_missed_entries_rebuild_the_state_from_the_room_server(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    await env.send_room(room)
    env.roomserver.rooms[room.room_id] = room
    # An entry the sync API never sees: Carol joins.
    lost = room.join(CAROL)
    env.new_room_event(lost)
    after = room.message(CAROL, "hi")
    await env.send(after)

    assert env.roomserver.state_queries == [room.room_id]
    members = (await env.get(f"/_matrix/client/v3/rooms/{room.room_id}/joined_members",
                             env.token(BOB))).json()
    assert set(members["joined"]) == {ALICE, BOB, CAROL}


async def test_invites_appear_with_stripped_state_and_go_when_rejected(env: Env) -> None:
    room = TestRoom()
    room.set_state("m.room.name", {"name": "Secret"})
    await env.send_room(room)
    token = env.token(BOB)
    since = (await env.sync(token))["next_batch"]

    invite = room.invite(ALICE, BOB)
    await env.send(invite)
    body = await env.sync(token, since=since)
    invited = body["rooms"]["invite"][room.room_id]["invite_state"]["events"]
    assert {"type": "m.room.name", "state_key": "", "content": {"name": "Secret"},
            "sender": ALICE} in invited
    assert any(e["type"] == MEMBER and e["state_key"] == BOB and e["content"]["membership"] == "invite"
               for e in invited)
    assert room.room_id not in body["rooms"]["join"]
    initial = await env.sync(token)
    assert room.room_id in initial["rooms"]["invite"]

    rejected = room.leave(BOB)
    await env.send(rejected)
    after = await env.sync(token, since=body["next_batch"])
    assert room.room_id not in after["rooms"]["invite"]
    assert room.room_id in after["rooms"]["leave"]
    assert (await env.sync(token))["rooms"]["invite"] == {}


async def test_invite_from_an_invite_entry(env: Env) -> None:
    from myelin.roomserver.v1 import output_log_pb2

    from tests.builders import event_proto

    room = TestRoom()
    await env.send_room(room)
    invite = room.invite(ALICE, BOB)
    entry = output_log_pb2.OutputEvent(new_invite_event=output_log_pb2.NewInviteEvent(
        event=event_proto(invite), target_user_id=BOB,
        invite_room_state_json=[b'{"type":"m.room.name","state_key":"","content":{"name":"Remote"},'
                                b'"sender":"@alice:test"}']))
    await env.append(entry, room.room_id)
    token = env.token(BOB)

    async def invited() -> bool:
        return room.room_id in (await env.sync(token))["rooms"]["invite"]
    from tests.component.syncapi.conftest import wait_until
    await wait_until(invited)
    events = (await env.sync(token))["rooms"]["invite"][room.room_id]["invite_state"]["events"]
    assert events[0]["content"] == {"name": "Remote"}


async def test_leaving_puts_the_room_in_leave_up_to_the_leave(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    await env.send_room(room)
    token = env.token(BOB)
    since = (await env.sync(token))["next_batch"]

    before = room.message(ALICE, "before you go")
    leave = room.leave(BOB)
    after = room.message(ALICE, "bob cannot see this")
    await env.send(before, leave, after)

    body = await env.sync(token, since=since)
    assert room.room_id not in body["rooms"]["join"]
    left = body["rooms"]["leave"][room.room_id]
    assert timeline_ids(left) == [before.event_id, leave.event_id]

    assert (await env.sync(token))["rooms"]["leave"] == {}
    with_leave = await env.sync(token, filter='{"room": {"include_leave": true}}')
    assert timeline_ids(with_leave["rooms"]["leave"][room.room_id])[-1] == leave.event_id
    later = await env.sync(token, since=body["next_batch"])
    assert later["rooms"]["leave"] == {} and later["rooms"]["join"] == {}


async def test_room_joined_since_comes_with_full_state(env: Env) -> None:
    room = TestRoom()
    room.set_state("m.room.topic", {"topic": "t"})
    for i in range(12):
        room.message(ALICE, f"old {i}")
    await env.send_room(room)
    token = env.token(BOB)
    since = (await env.sync(token))["next_batch"]

    join = room.join(BOB)
    await env.send(join)
    body = await env.sync(token, since=since)
    joined = body["rooms"]["join"][room.room_id]
    assert ("m.room.topic", "") in state_keys(joined)
    assert ("m.room.create", "") in state_keys(joined)
    assert timeline_ids(joined)[-1] == join.event_id
    assert joined["summary"] == {"m.joined_member_count": 2, "m.invited_member_count": 0,
                                 "m.heroes": [ALICE]}

    # A plain message changes no membership: no summary.
    await env.send(room.message(ALICE, "plain"))
    quiet = await env.sync(token, since=body["next_batch"])
    assert "summary" not in quiet["rooms"]["join"][room.room_id]


async def test_timeline_filters(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    room.message(ALICE, "a")
    room.build("m.custom.thing", {"x": 1}, sender=BOB)
    room.message(BOB, "b")
    await env.send_room(room)
    token = env.token(BOB)

    async def types_with(filter_json: str) -> list[str]:
        body = await env.sync(token, filter=filter_json)
        return [e["type"] for e in body["rooms"]["join"][room.room_id]["timeline"]["events"]]

    assert await types_with('{"room":{"timeline":{"types":["m.room.message"]}}}') == ["m.room.message"] * 2
    assert await types_with('{"room":{"timeline":{"types":["m.custom.*"]}}}') == ["m.custom.thing"]
    assert "m.custom.thing" not in await types_with('{"room":{"timeline":{"not_types":["m.custom.*"]}}}')
    body = await env.sync(token, filter='{"room":{"timeline":{"senders":["@bob:test"],"limit":2}}}')
    senders = [e["sender"] for e in body["rooms"]["join"][room.room_id]["timeline"]["events"]]
    assert senders == [BOB, BOB]
    body = await env.sync(token, filter='{"room":{"timeline":{"not_senders":["@bob:test"]}}}')
    assert BOB not in [e["sender"] for e in body["rooms"]["join"][room.room_id]["timeline"]["events"]]
    assert (await env.sync(token, filter=f'{{"room":{{"not_rooms":["{room.room_id}"]}}}}'))["rooms"]["join"] == {}

    lazy = await env.sync(token, filter='{"room":{"timeline":{"limit":1},"state":{"lazy_load_members":true}}}')
    members = {e["state_key"] for e in lazy["rooms"]["join"][room.room_id]["state"]["events"]
               if e["type"] == MEMBER}
    assert members == {BOB}


async def test_stored_filters(env: Env) -> None:
    token = env.token(BOB)
    headers = {"Authorization": f"Bearer {token}"}
    created = await env.client.post("/_matrix/client/v3/user/@bob:test/filter", headers=headers,
                                    json={"room": {"timeline": {"limit": 1}}})
    assert created.status_code == 200
    filter_id = created.json()["filter_id"]
    fetched = await env.client.get(f"/_matrix/client/v3/user/@bob:test/filter/{filter_id}", headers=headers)
    assert fetched.json() == {"room": {"timeline": {"limit": 1}}}

    other = await env.client.get(f"/_matrix/client/v3/user/@alice:test/filter/{filter_id}", headers=headers)
    assert other.status_code == 403
    forbidden = await env.client.post("/_matrix/client/v3/user/@alice:test/filter", headers=headers, json={})
    assert forbidden.status_code == 403
    missing = await env.client.get("/_matrix/client/v3/user/@bob:test/filter/999", headers=headers)
    assert missing.status_code == 404
    bad = await env.client.post("/_matrix/client/v3/user/@bob:test/filter", headers=headers,
                                json={"room": {"timeline": {"limit": "ten"}}})
    assert bad.status_code == 400 and bad.json()["errcode"] == "M_BAD_JSON"

    room = TestRoom()
    room.join(BOB)
    room.message(ALICE, "x")
    await env.send_room(room)
    body = await env.sync(token, filter=filter_id)
    assert len(body["rooms"]["join"][room.room_id]["timeline"]["events"]) == 1


async def test_event_fields_and_joined_history_visibility(env: Env) -> None:
    room = TestRoom(history_visibility="joined")
    hidden = room.message(ALICE, "before bob")
    join = room.join(BOB)
    shown = room.message(ALICE, "after bob")
    await env.send_room(room)
    token = env.token(BOB)

    body = await env.sync(token, filter='{"room":{"timeline":{"limit":3}}}')
    ids = timeline_ids(body["rooms"]["join"][room.room_id])
    assert hidden.event_id not in ids
    assert ids[-2:] == [join.event_id, shown.event_id]

    fields = await env.sync(token, filter='{"event_fields":["type","content.body"],'
                                          '"room":{"timeline":{"limit":1}}}')
    assert fields["rooms"]["join"][room.room_id]["timeline"]["events"] == [
        {"type": "m.room.message", "content": {"body": "after bob"}}]
    pdus = await env.sync(token, filter='{"event_format":"federation","room":{"timeline":{"limit":1}}}')
    [pdu] = pdus["rooms"]["join"][room.room_id]["timeline"]["events"]
    assert pdu["depth"] == shown.depth and "signatures" in pdu and pdu["room_id"] == room.room_id


async def test_percent_encoded_room_ids_and_bad_parameters(env: Env) -> None:
    from urllib.parse import quote

    room = TestRoom()
    room.join(BOB)
    await env.send_room(room)
    token = env.token(BOB)
    response = await env.get(f"/_matrix/client/v3/rooms/{quote(room.room_id, safe='')}/joined_members", token)
    assert response.status_code == 200
    assert set(response.json()["joined"]) == {ALICE, BOB}
    filter_path = f"/_matrix/client/v3/user/{quote(BOB, safe='')}/filter"
    created = await env.client.post(filter_path, json={}, headers={"Authorization": f"Bearer {token}"})
    assert created.status_code == 200

    for params in ({"since": "garbage"}, {"timeout": "soon"}, {"full_state": "maybe"},
                   {"filter": "{not json"}, {"filter": "12345"}, {"set_presence": "asleep"}):
        response = await env.get("/_matrix/client/v3/sync", token, **params)
        assert response.status_code == 400, params
        assert response.json()["errcode"] in ("M_INVALID_PARAM", "M_NOT_JSON", "M_BAD_JSON")


async def test_restart_keeps_the_read_model_and_old_tokens_work(tmp_path: Path) -> None:
    room = TestRoom()
    room.join(BOB)
    async with running_env(tmp_path) as env:
        token = env.token(BOB)
        empty = (await env.sync(token))["next_batch"]
        await env.send_room(room)
        since = (await env.sync(token))["next_batch"]
        feeds = env.feeds
    async with running_env(tmp_path) as env:
        env.feeds = feeds
        token = env.token(BOB)
        # Nothing is replayed into the timeline twice.
        body = await env.sync(token, filter='{"room":{"timeline":{"limit":50}}}')
        assert timeline_ids(body["rooms"]["join"][room.room_id]) == [e.event_id for e in room.events]
        # Tokens from before the restart: answered from the database.
        assert (await env.sync(token, since=since))["rooms"]["join"] == {}
        rejoined = await env.sync(token, since=empty, timeout=5000)
        assert timeline_ids(rejoined["rooms"]["join"][room.room_id])[-1] == room.events[-1].event_id
        message = room.message(ALICE, "after the restart")
        await env.send(message)
        later = await env.sync(token, since=since, timeout=5000)
        assert timeline_ids(later["rooms"]["join"][room.room_id]) == [message.event_id]


async def test_lazy_loading_sends_the_members_of_new_senders(env: Env) -> None:
    room = TestRoom()
    room.join(CAROL)
    room.join(BOB)
    await env.send_room(room)
    token = env.token(BOB)
    lazy = '{"room":{"timeline":{"limit":1},"state":{"lazy_load_members":true}}}'
    first = await env.sync(token, filter=lazy)
    assert timeline_ids(first["rooms"]["join"][room.room_id])[-1] == room.events[-1].event_id

    await env.send(room.message(CAROL, "hello from carol"))
    body = await env.sync(token, since=first["next_batch"], filter=lazy)
    joined = body["rooms"]["join"][room.room_id]
    assert joined["timeline"]["limited"] is False
    assert [(e["type"], e["state_key"]) for e in joined["state"]["events"]] == [(MEMBER, CAROL)]
    plain = await env.sync(token, since=first["next_batch"])
    assert plain["rooms"]["join"][room.room_id]["state"]["events"] == []


def member_keys(body: dict[str, Any], room_id: str) -> list[str]:
    return [e["state_key"] for e in body["rooms"]["join"][room_id]["state"]["events"] if e["type"] == MEMBER]


#: The last timeline event and only the members it needs (lazy-loading members).
LAZY_MEMBERS = '{"room":{"timeline":{"limit":1},"state":{"lazy_load_members":true}}}'


async def bob_lazily_syncs_carols_two_messages(
        env: Env) -> tuple[TestRoom, str, dict[str, Any], dict[str, Any]]:
    """A room of Carol and Bob; Bob's device syncs with LAZY_MEMBERS, then after each of
    two messages of Carol's: the first of those syncs is sent Carol's member event, the
    second is not (the device has it). Returns the room, Bob's token and those two syncs."""
    room = TestRoom()
    room.join(CAROL)
    room.join(BOB)
    await env.send_room(room)
    token = env.token(BOB)
    first = await env.sync(token, filter=LAZY_MEMBERS)
    await env.send(room.message(CAROL, "one"))
    second = await env.sync(token, since=first["next_batch"], filter=LAZY_MEMBERS, timeout=5000)
    assert member_keys(second, room.room_id) == [CAROL]
    await env.send(room.message(CAROL, "two"))
    third = await env.sync(token, since=second["next_batch"], filter=LAZY_MEMBERS, timeout=5000)
    assert member_keys(third, room.room_id) == []
    return room, token, second, third


async def test_lazy_loading_sends_a_member_once_per_device(env: Env) -> None:
    # Spec "Lazy-loading room members": without include_redundant_members a
    # device is not sent a member event again; a new sync sequence starts over.
    room, token, second, third = await bob_lazily_syncs_carols_two_messages(env)
    lazy = LAZY_MEMBERS
    redundant = ('{"room":{"timeline":{"limit":1},"state":{"lazy_load_members":true,'
                 '"include_redundant_members":true}}}')
    assert timeline_ids(third["rooms"]["join"][room.room_id]) == [room.events[-1].event_id]
    # Asked for, redundant members are sent anyway.
    again = await env.sync(token, since=second["next_batch"], filter=redundant)
    assert member_keys(again, room.room_id) == [CAROL]

    # Another device of the same user has its own record.
    other = env.token(BOB, "OTHER")
    other_first = await env.sync(other, filter=lazy)
    assert CAROL in member_keys(other_first, room.room_id)
    await env.send(room.message(CAROL, "three"))
    other_next = await env.sync(other, since=other_first["next_batch"], filter=lazy, timeout=5000)
    assert member_keys(other_next, room.room_id) == []
    # A new sync sequence (no since) starts over on the first device.
    restarted = await env.sync(token, filter=lazy)
    assert CAROL in member_keys(restarted, room.room_id)

    # A member whose membership changed is sent again (a new event).
    rename = room.build(MEMBER, {"membership": "join", "displayname": "Caroline"}, sender=CAROL, state_key=CAROL)
    await env.send(rename)
    await env.send(room.message(CAROL, "four"))
    renamed = await env.sync(token, since=restarted["next_batch"], filter=lazy, timeout=5000)
    joined = renamed["rooms"]["join"][room.room_id]
    sent_ids = [e["event_id"] for e in joined["state"]["events"] + joined["timeline"]["events"]
                if e["type"] == MEMBER]
    assert rename.event_id in sent_ids


async def test_remote_invite_rejected_goes_to_leave(env: Env) -> None:
    from myelin.roomserver.v1 import output_log_pb2

    from tests.builders import event_proto

    # A room on another server: the sync API has none of its events.
    remote = TestRoom(creator="@dave:elsewhere", server_name="elsewhere")
    invite = remote.invite("@dave:elsewhere", BOB)
    token = env.token(BOB)
    since = (await env.sync(token))["next_batch"]
    await env.append(output_log_pb2.OutputEvent(new_invite_event=output_log_pb2.NewInviteEvent(
        event=event_proto(invite), target_user_id=BOB)), remote.room_id)
    body = await env.sync(token, since=since, timeout=5000)
    assert remote.room_id in body["rooms"]["invite"]

    await env.append(output_log_pb2.OutputEvent(retire_invite_event=output_log_pb2.RetireInviteEvent(
        event_id=invite.event_id, room_id=remote.room_id, target_user_id=BOB, membership="leave",
        retired_by_event_id="$rejection")), remote.room_id)
    after = await env.sync(token, since=body["next_batch"], timeout=5000)
    assert after["rooms"]["leave"][remote.room_id]["timeline"]["events"] == []
    assert after["rooms"]["invite"] == {}
    assert (await env.sync(token))["rooms"]["invite"] == {}

    # Invites for users of other servers are not kept.
    other = remote.invite("@dave:elsewhere", "@erin:elsewhere")
    await env.append(output_log_pb2.OutputEvent(new_invite_event=output_log_pb2.NewInviteEvent(
        event=event_proto(other), target_user_id="@erin:elsewhere")), remote.room_id)
    # Bob's new invite comes after Erin's on the same key: once it shows, Erin's was handled.
    again = remote.invite("@dave:elsewhere", BOB)
    await env.append(output_log_pb2.OutputEvent(new_invite_event=output_log_pb2.NewInviteEvent(
        event=event_proto(again), target_user_id=BOB)), remote.room_id)
    reinvited = await env.sync(token, since=after["next_batch"], timeout=5000)
    assert remote.room_id in reinvited["rooms"]["invite"]
    async with env.syncapi.database.read() as reader:
        assert await reader.active_invites("@erin:elsewhere", after=0, upto=10**9) == []


async def test_joining_a_large_room_brings_its_whole_state(env: Env) -> None:
    from myelin.roomserver.v1 import output_log_pb2

    from tests.builders import event_proto

    # A room elsewhere with 40 members; the first entry the sync API sees for
    # it is Bob's join, carrying the whole state (a join over federation).
    room = TestRoom(creator="@dave:elsewhere", server_name="elsewhere")
    members = [f"@m{i}:elsewhere" for i in range(40)]
    for user in members:
        room.join(user)
    join = room.join(BOB)
    state = list(room.state.values())
    entry = output_log_pb2.OutputEvent(new_room_event=output_log_pb2.NewRoomEvent(
        event=event_proto(join), adds_state_event_ids=[e.event_id for e in state],
        adds_state_events=[event_proto(e) for e in state if e.event_id != join.event_id],
        latest_event_ids=[join.event_id], history_visibility="shared", room_stream_position=1))
    await env.append(entry, room.room_id)
    await env.wait_for_events([join.event_id])

    token = env.token(BOB)
    body = await env.sync(token)
    joined = body["rooms"]["join"][room.room_id]
    assert timeline_ids(joined) == [join.event_id]
    assert {e["state_key"] for e in joined["state"]["events"] if e["type"] == MEMBER} == {
        "@dave:elsewhere", *members}
    assert joined["summary"]["m.joined_member_count"] == 42
    listed = (await env.get(f"/_matrix/client/v3/rooms/{room.room_id}/joined_members", token)).json()
    assert len(listed["joined"]) == 42


async def test_a_malformed_output_entry_is_skipped(env: Env) -> None:
    from common.topics import ROOMSERVER_OUTPUT

    room = TestRoom()
    room.join(BOB)
    await env.send_room(room)
    await env.log.append(ROOMSERVER_OUTPUT.name, room.room_id.encode(), b"\xff\xff not a proto")
    after = room.message(ALICE, "still flowing")
    await env.send(after)
    body = await env.sync(env.token(BOB))
    assert timeline_ids(body["rooms"]["join"][room.room_id])[-1] == after.event_id


async def test_use_state_after(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    await env.send_room(room)
    token = env.token(BOB)
    first = await env.sync(token, use_state_after="true")
    joined = first["rooms"]["join"][room.room_id]
    assert "state" not in joined
    after_keys = {(e["type"], e["state_key"]) for e in joined["state_after"]["events"]}
    # The state at the END of the timeline: also what the timeline itself set.
    assert {("m.room.create", ""), (MEMBER, ALICE), (MEMBER, BOB)} <= after_keys

    topic = room.set_state("m.room.topic", {"topic": "new"})
    message = room.message(ALICE, "hi")
    await env.send(topic, message)
    body = await env.sync(token, since=first["next_batch"], use_state_after="true")
    joined = body["rooms"]["join"][room.room_id]
    assert timeline_ids(joined) == [topic.event_id, message.event_id]
    assert [e["event_id"] for e in joined["state_after"]["events"]] == [topic.event_id]
    quiet = await env.sync(token, since=body["next_batch"], use_state_after="true", timeout=50)
    assert quiet["rooms"]["join"] == {}
