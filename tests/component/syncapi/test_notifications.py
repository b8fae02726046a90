"""Notification counts in /sync (push rules evaluated as the sync API stores
events, reset by read receipts), per thread with the filter's flag, room
summaries, and GET /notifications."""

from __future__ import annotations

import json
from typing import Any

from myelin.clientapi.v1 import edu_log_pb2

from common.topics import CLIENTAPI_RECEIPT
from syncapi.internal.push import thread_of
from tests.builders import TestRoom
from tests.component.syncapi.conftest import ALICE, BOB, CAROL, Env, on_each_database
from tests.component.syncapi.test_account_data import change
from tests.component.syncapi.test_ephemeral import receipt

THREAD_FILTER = json.dumps({"room": {"timeline": {"unread_thread_notifications": True}}})


def unread(body: dict[str, Any], room_id: str) -> dict[str, int]:
    return dict(body["rooms"]["join"][room_id]["unread_notifications"])


def counts(notifications: int, highlights: int) -> dict[str, int]:
    return {"notification_count": notifications, "highlight_count": highlights}


def mention(room: TestRoom, sender: str, target: str, body: str) -> Any:
    return room.build("m.room.message", {"msgtype": "m.text", "body": body,
                                         "m.mentions": {"user_ids": [target]}}, sender=sender)


async def group_room(env: Env) -> TestRoom:
    room = TestRoom()
    room.join(BOB)
    room.join(CAROL)
    await env.send_room(room)
    return room


@on_each_database
async def test_messages_and_mentions_count_until_a_receipt(env: Env) -> None:
    room = await group_room(env)
    alice = env.token(ALICE)
    assert unread(await env.sync(alice), room.room_id) == counts(0, 0)
    hello = room.message(BOB, "hello everyone")
    await env.send(hello)
    assert unread(await env.sync(alice), room.room_id) == counts(1, 0)
    pinged = mention(room, BOB, ALICE, "alice: look")
    await env.send(pinged)
    first = await env.sync(alice)
    assert unread(first, room.room_id) == counts(2, 1)
    # The sender's own events never count for them.
    assert unread(await env.sync(env.token(BOB)), room.room_id) == counts(0, 0)
    # Carol was not mentioned: both messages notify her, none highlights.
    assert unread(await env.sync(env.token(CAROL)), room.room_id) == counts(2, 0)
    # A receipt on the first message leaves the mention unread...
    await receipt(env, room.room_id, ALICE, "m.read", hello.event_id)
    body = await env.sync(alice, since=first["next_batch"])
    assert unread(body, room.room_id) == counts(1, 1)
    # ...a private one on the last reads everything.
    await receipt(env, room.room_id, ALICE, "m.read.private", pinged.event_id)
    body = await env.sync(alice, since=body["next_batch"])
    assert unread(body, room.room_id) == counts(0, 0)
    await env.send(room.message(CAROL, "more"))
    body = await env.sync(alice, since=body["next_batch"])
    assert unread(body, room.room_id) == counts(1, 0)


async def test_one_to_one_room_notifies_with_sound(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    await env.send_room(room)
    await env.send(room.message(BOB, "psst"))
    alice = env.token(ALICE)
    assert unread(await env.sync(alice), room.room_id) == counts(1, 0)
    response = await env.get("/_matrix/client/v3/notifications", alice)
    assert response.status_code == 200, response.text
    [notification] = response.json()["notifications"]
    assert notification["actions"] == ["notify", {"set_tweak": "sound", "value": "default"}]
    assert notification["room_id"] == room.room_id and notification["read"] is False


async def test_keyword_rule_and_disabled_default_rule(env: Env) -> None:
    room = await group_room(env)
    rules = {"global": {
        "content": [{"rule_id": "cake", "default": False, "enabled": True, "pattern": "cake",
                     "actions": ["notify", {"set_tweak": "highlight"}]}],
        "underride": [{"rule_id": ".m.rule.message", "default": True, "enabled": False,
                       "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.message"}],
                       "actions": ["notify"]}]}}
    await change(env, ALICE, "m.push_rules", rules)
    await env.send(room.message(BOB, "just chatting"))
    await env.send(room.message(CAROL, "who wants cake?"))
    await env.send(room.message(CAROL, "cakewalk"))  # not the whole word
    body = await env.sync(env.token(ALICE))
    assert unread(body, room.room_id) == counts(1, 1)
    # Bob keeps the defaults: every message from someone else notifies.
    assert unread(await env.sync(env.token(BOB)), room.room_id) == counts(2, 0)


async def test_display_name_mention_without_m_mentions_does_not_highlight(env: Env) -> None:
    """v1.17 dropped the body-mention default rules: only m.mentions highlights."""
    room = TestRoom()
    room.join(BOB)
    room.join(CAROL)
    room.build("m.room.member", {"membership": "join", "displayname": "Alice Liddell"}, sender=ALICE,
               state_key=ALICE)
    await env.send_room(room)
    await env.send(room.message(BOB, "Alice Liddell, hi"))
    assert unread(await env.sync(env.token(ALICE)), room.room_id) == counts(1, 0)


@on_each_database
async def test_thread_counts(env: Env) -> None:
    room = await group_room(env)
    root = room.message(BOB, "thread root")
    reply = room.build("m.room.message", {"msgtype": "m.text", "body": "in thread",
                                          "m.relates_to": {"rel_type": "m.thread", "event_id": root.event_id}},
                       sender=BOB)
    second = mention(room, CAROL, ALICE, "alice, in main")
    await env.send(root, reply, second)
    assert thread_of(reply) == root.event_id and thread_of(root) == ""
    alice = env.token(ALICE)
    # Without the flag everything is in unread_notifications.
    plain = await env.sync(alice)
    assert unread(plain, room.room_id) == counts(3, 1)
    assert "unread_thread_notifications" not in plain["rooms"]["join"][room.room_id]
    threaded = await env.sync(alice, filter=THREAD_FILTER)
    entry = threaded["rooms"]["join"][room.room_id]
    assert entry["unread_notifications"] == counts(2, 1)
    assert entry["unread_thread_notifications"] == {root.event_id: counts(1, 0)}
    # A threaded receipt reads that thread only; "main" reads the main timeline only.
    await receipt(env, room.room_id, ALICE, "m.read", reply.event_id, thread_id=root.event_id)
    entry = (await env.sync(alice, filter=THREAD_FILTER))["rooms"]["join"][room.room_id]
    assert entry["unread_notifications"] == counts(2, 1)
    assert "unread_thread_notifications" not in entry
    await receipt(env, room.room_id, ALICE, "m.read", root.event_id, thread_id="main")
    entry = (await env.sync(alice, filter=THREAD_FILTER))["rooms"]["join"][room.room_id]
    assert entry["unread_notifications"] == counts(1, 1)


async def test_invite_notifies_the_invitee(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    await env.send_room(room)
    await env.send(room.invite(BOB, CAROL))
    response = await env.get("/_matrix/client/v3/notifications", env.token(CAROL))
    [notification] = response.json()["notifications"]
    assert notification["event"]["type"] == "m.room.member"
    assert notification["event"]["state_key"] == CAROL


async def test_room_summary(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    room.invite(ALICE, CAROL)
    await env.send_room(room)
    alice = env.token(ALICE)
    first = await env.sync(alice)
    assert first["rooms"]["join"][room.room_id]["summary"] == {
        "m.joined_member_count": 2, "m.invited_member_count": 1, "m.heroes": [BOB, CAROL]}
    # A message changes no membership: no summary.
    await env.send(room.message(BOB, "hi"))
    body = await env.sync(alice, since=first["next_batch"])
    assert "summary" not in body["rooms"]["join"][room.room_id]
    await env.send(room.join(CAROL))
    body = await env.sync(alice, since=body["next_batch"])
    assert body["rooms"]["join"][room.room_id]["summary"]["m.joined_member_count"] == 3
    assert body["rooms"]["join"][room.room_id]["summary"]["m.invited_member_count"] == 0
    # A named room has no heroes.
    await env.send(room.set_state("m.room.name", {"name": "Tea"}))
    assert "m.heroes" not in (await env.sync(alice))["rooms"]["join"][room.room_id]["summary"]


@on_each_database
async def test_notifications_paging_and_only_highlight(env: Env) -> None:
    room = await group_room(env)
    sent = []
    for index in range(5):
        event = mention(room, BOB, ALICE, f"ping {index}") if index % 2 == 0 else room.message(BOB, f"msg {index}")
        sent.append(event)
    await env.send(*sent)
    alice = env.token(ALICE)
    await receipt(env, room.room_id, ALICE, "m.read", sent[1].event_id)
    path = "/_matrix/client/v3/notifications"
    first = (await env.get(path, alice, limit=2)).json()
    assert [n["event"]["event_id"] for n in first["notifications"]] == [sent[4].event_id, sent[3].event_id]
    assert all(not n["read"] for n in first["notifications"])
    assert first["notifications"][0]["event"]["content"]["body"] == "ping 4"
    assert isinstance(first["notifications"][0]["ts"], int)
    second = (await env.get(path, alice, limit=2, **{"from": first["next_token"]})).json()
    assert [n["event"]["event_id"] for n in second["notifications"]] == [sent[2].event_id, sent[1].event_id]
    assert [n["read"] for n in second["notifications"]] == [False, True]
    last = (await env.get(path, alice, limit=2, **{"from": second["next_token"]})).json()
    assert [n["event"]["event_id"] for n in last["notifications"]] == [sent[0].event_id]
    assert "next_token" not in last
    highlights = (await env.get(path, alice, only="highlight")).json()
    assert [n["event"]["event_id"] for n in highlights["notifications"]] == [
        sent[4].event_id, sent[2].event_id, sent[0].event_id]
    bad = await env.get(path, alice, **{"from": "nonsense"})
    assert bad.status_code == 400
    assert (await env.client.get(path)).status_code == 401


async def test_heroes_fall_back_to_members_who_left_and_an_empty_name_is_no_name(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    room.set_state("m.room.name", {"name": ""})
    room.leave(BOB)
    await env.send_room(room)
    summary = (await env.sync(env.token(ALICE)))["rooms"]["join"][room.room_id]["summary"]
    assert summary == {"m.joined_member_count": 1, "m.invited_member_count": 0, "m.heroes": [BOB]}


async def test_ignored_senders_do_not_notify(env: Env) -> None:
    room = await group_room(env)
    await change(env, ALICE, "m.ignored_user_list", {"ignored_users": {BOB: {}}})
    await env.send(mention(room, BOB, ALICE, "alice!"))
    await env.send(room.message(CAROL, "hi"))
    assert unread(await env.sync(env.token(ALICE)), room.room_id) == counts(1, 0)


async def test_rule_changes_between_messages_apply_to_the_next_one(env: Env) -> None:
    """The room's push inputs are kept between batches: a change of push
    rules, ignored users or display name must still apply to the very next
    message."""
    room = await group_room(env)
    alice = env.token(ALICE)
    await env.send(room.message(BOB, "one"))
    assert unread(await env.sync(alice), room.room_id) == counts(1, 0)
    await change(env, ALICE, "m.push_rules", {"global": {"content": [
        {"rule_id": "pie", "default": False, "enabled": True, "pattern": "pie",
         "actions": ["notify", {"set_tweak": "highlight"}]}]}})
    await env.send(room.message(BOB, "apple pie"))
    assert unread(await env.sync(alice), room.room_id) == counts(2, 1)
    await change(env, ALICE, "m.ignored_user_list", {"ignored_users": {BOB: {}}})
    await env.send(room.message(BOB, "more pie"))
    assert unread(await env.sync(alice), room.room_id) == counts(2, 1)
    # A new member is a state change: their messages notify Alice too.
    dave = "@dave:" + ALICE.partition(":")[2]
    await env.send(room.build("m.room.member", {"membership": "join"}, sender=dave, state_key=dave))
    await env.send(room.message(dave, "pie for dave"))
    assert unread(await env.sync(alice), room.room_id) == counts(3, 2)


async def test_sending_does_not_reset_counts_but_a_receipt_on_the_own_message_does(env: Env) -> None:
    # As Synapse: the user's own events never count, sending is no receipt
    # (the spec has clients send none for their own events), and the counts
    # are of what comes after the latest m.read / m.read.private receipt.
    room = await group_room(env)
    alice = env.token(ALICE)
    await env.send(mention(room, BOB, ALICE, "alice?"))
    await env.send(room.message(CAROL, "and hello"))
    first = await env.sync(alice)
    assert unread(first, room.room_id) == counts(2, 1)
    own = room.message(ALICE, "here I am")
    await env.send(own)
    body = await env.sync(alice, since=first["next_batch"])
    assert [e["event_id"] for e in body["rooms"]["join"][room.room_id]["timeline"]["events"]] == [own.event_id]
    assert unread(body, room.room_id) == counts(2, 1)
    # Others' counts include Alice's message.
    assert unread(await env.sync(env.token(CAROL)), room.room_id) == counts(2, 0)
    await receipt(env, room.room_id, ALICE, "m.read", own.event_id)
    body = await env.sync(alice, since=body["next_batch"])
    assert unread(body, room.room_id) == counts(0, 0)
    await env.send(room.message(BOB, "after"))
    body = await env.sync(alice, since=body["next_batch"])
    assert unread(body, room.room_id) == counts(1, 0)


async def test_a_receipt_for_an_earlier_event_does_not_move_back(env: Env) -> None:
    # As Synapse: a receipt older than the user's is ignored (a lagging
    # device), so the counts it reset stay reset.
    room = await group_room(env)
    alice = env.token(ALICE)
    first = room.message(BOB, "one")
    await env.send(first)
    second = mention(room, BOB, ALICE, "alice: two")
    await env.send(second)
    await receipt(env, room.room_id, ALICE, "m.read", second.event_id)
    body = await env.sync(alice)
    assert unread(body, room.room_id) == counts(0, 0)
    position = env.syncapi.notifier.stream_position("receipt")
    await env.log.append(CLIENTAPI_RECEIPT.name, room.room_id.encode(), edu_log_pb2.ReceiptUpdate(
        room_id=room.room_id, user_id=ALICE, receipt_type="m.read", event_id=first.event_id,
        ts_ms=99).SerializeToString())
    # A later receipt of Carol's shows the older one of Alice's was handled.
    await receipt(env, room.room_id, CAROL, "m.read", second.event_id)
    assert env.syncapi.notifier.stream_position("receipt") == position + 1
    body = await env.sync(alice)
    assert unread(body, room.room_id) == counts(0, 0)
    receipts = [e for e in body["rooms"]["join"][room.room_id]["ephemeral"]["events"] if e["type"] == "m.receipt"]
    assert ALICE in receipts[0]["content"][second.event_id]["m.read"]
    assert first.event_id not in receipts[0]["content"]


@on_each_database
async def test_joins_and_leaves_update_the_kept_push_inputs(env: Env) -> None:
    """A join or leave is applied to the push inputs kept for the room (not
    read again): the joiner's own rules, their membership and the joined
    count all apply to the next message."""
    dave = "@dave:test"
    await change(env, dave, "m.push_rules", {"global": {"content": [
        {"rule_id": "pie", "default": False, "enabled": True, "pattern": "pie",
         "actions": ["notify", {"set_tweak": "highlight"}]}]}})
    room = TestRoom()
    room.join(BOB)
    await env.send_room(room)
    alice = env.token(ALICE)

    async def alices_latest_actions() -> Any:
        response = await env.get("/_matrix/client/v3/notifications", alice)
        return response.json()["notifications"][0]["actions"]

    await env.send(room.message(BOB, "hi"))  # the inputs are kept from here on
    assert await alices_latest_actions() == ["notify", {"set_tweak": "sound", "value": "default"}]
    await env.send(room.join(dave))
    assert unread(await env.sync(alice), room.room_id) == counts(1, 0)  # a join notifies no default rules
    await env.send(room.message(BOB, "apple pie"))
    assert unread(await env.sync(env.token(dave)), room.room_id) == counts(1, 1)
    assert await alices_latest_actions() == ["notify"]  # three members: no longer one-to-one
    await env.send(room.leave(dave))
    await env.send(room.message(BOB, "more pie"))
    response = await env.get("/_matrix/client/v3/notifications", env.token(dave))
    assert [n["event"]["content"]["body"] for n in response.json()["notifications"]] == ["apple pie"]
    assert await alices_latest_actions() == ["notify", {"set_tweak": "sound", "value": "default"}]
    # Back (the leave replaced): three members again.
    await env.send(room.join(dave))
    await env.send(room.message(BOB, "third pie"))
    assert await alices_latest_actions() == ["notify"]


async def test_a_member_batch_evaluated_twice_counts_once(env: Env) -> None:
    """A batch whose transaction failed after the rules ran is evaluated
    again: its joins must not move the kept joined count twice."""
    await change(env, ALICE, "m.push_rules", {"global": {"override": [
        {"rule_id": "three", "default": False, "enabled": True,
         "conditions": [{"kind": "room_member_count", "is": "3"},
                        {"kind": "event_match", "key": "type", "pattern": "m.room.message"}],
         "actions": ["notify", {"set_tweak": "highlight"}]}]}})
    room = TestRoom()
    room.join(BOB)
    await env.send_room(room)
    await env.send(room.message(BOB, "two of us"))  # the inputs are kept from here on
    dave = "@dave:test"
    join = room.join(dave)
    await env.send(join)
    evaluator = env.syncapi.push_evaluator
    async with env.syncapi.database.read() as reader:
        await evaluator.evaluate(reader, room.room_id, [(join, 1)], state_changed=True,
                                 members_only={join.event_id: None})
    await env.send(room.message(BOB, "three of us"))
    response = await env.get("/_matrix/client/v3/notifications", env.token(ALICE))
    latest = response.json()["notifications"][0]
    assert latest["event"]["content"]["body"] == "three of us"
    assert latest["actions"] == ["notify", {"set_tweak": "highlight"}]


async def test_a_rule_of_ones_own_can_notify_of_joins(env: Env) -> None:
    """Only the default rules are known never to notify of a join: a member
    with a rule of their own for member events is still told."""
    room = await group_room(env)
    await change(env, ALICE, "m.push_rules", {"global": {"override": [
        {"rule_id": "joins", "default": False, "enabled": True,
         "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.member"}],
         "actions": ["notify"]}]}})
    await env.send(room.message(BOB, "hi"))
    dave = "@dave:test"
    await env.send(room.join(dave))
    response = await env.get("/_matrix/client/v3/notifications", env.token(ALICE))
    assert [n["event"]["type"] for n in response.json()["notifications"]] == ["m.room.member", "m.room.message"]
    # Carol keeps the defaults: the message notifies her, the join does not.
    response = await env.get("/_matrix/client/v3/notifications", env.token(CAROL))
    assert [n["event"]["type"] for n in response.json()["notifications"]] == ["m.room.message"]
