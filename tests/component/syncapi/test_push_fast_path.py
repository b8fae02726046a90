"""Push rules in a big room (issue 6): the members with the server-default
rules share one evaluation of each event (matrixlib.push_rules.RulesetTemplate)
and are notified exactly as when each member's rules are evaluated in full."""

from __future__ import annotations

from typing import Any

import pytest

from matrixlib import push_rules
from matrixlib.events import MEMBER, Event
from syncapi.internal import push
from tests.builders import TestRoom
from tests.component.syncapi.conftest import ALICE, BOB, CAROL, Env
from tests.component.syncapi.test_account_data import change
from tests.component.syncapi.test_push_user_changes import (
    CAKE_RULES,
    Notified,
    freshly_evaluated,
    stored_notifications,
)

MEMBERS = [f"@member{i:02d}:test" for i in range(40)]
NEWBIE = "@newbie:test"


class FullEvaluations:
    """Counts the rule sets ``PushEvaluator`` evaluates in full, per user."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.users: list[str] = []

        def counted(ruleset: Any, event: Any, context: Any) -> Any:
            self.users.append(context.user_id)
            return push_rules.evaluate(ruleset, event, context)
        monkeypatch.setattr(push, "evaluate", counted)


async def member_room(env: Env) -> TestRoom:
    room = TestRoom()
    room.join(BOB)
    room.join(CAROL)
    for index, member in enumerate(MEMBERS):
        content: dict[str, Any] = {"membership": "join"}
        if index % 3:
            content["displayname"] = f"Member {index}"
        room.build(MEMBER, content, sender=member, state_key=member)
    await env.send_room(room)
    return room


async def sent(env: Env, event: Event, monkeypatch: pytest.MonkeyPatch) -> Notified:
    """Sends the event; what it notified, checked equal to every member's
    rules evaluated in full (an evaluator keeping nothing, the shared
    evaluation turned off)."""
    await env.send(event)
    stream_pos, notified = await stored_notifications(env, event)
    with monkeypatch.context() as patched:
        patched.setattr(push, "default_ruleset_template", lambda: None)
        patched.setattr(push, "evaluate", push_rules.evaluate)  # not counted
        assert notified == await freshly_evaluated(env, event, stream_pos)
    return notified


def users(notified: Notified, *, highlight: bool | None = None) -> set[str]:
    return {user_id for user_id, _, lit in notified if highlight is None or lit == highlight}


async def test_a_big_rooms_events_notify_as_each_member_evaluated_in_full(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    room = await member_room(env)
    await change(env, ALICE, "m.push_rules", CAKE_RULES)
    await env.send(room.message(BOB, "the inputs are kept from here on"))
    full = FullEvaluations(monkeypatch)
    everyone = {ALICE, BOB, CAROL, *MEMBERS}

    notified = await sent(env, room.message(BOB, "hello everyone, cake"), monkeypatch)
    assert users(notified) == everyone - {BOB} and users(notified, highlight=True) == {ALICE}
    # Only Alice, who stored rules of her own, was evaluated in full.
    assert full.users == [ALICE]

    full.users[:] = []
    pinged = room.build("m.room.message", {"msgtype": "m.text", "body": "member03, member07: look",
                                           "m.mentions": {"user_ids": [MEMBERS[3], MEMBERS[7], BOB]}}, sender=BOB)
    notified = await sent(env, pinged, monkeypatch)
    assert users(notified, highlight=True) == {MEMBERS[3], MEMBERS[7]}
    assert users(notified) == everyone - {BOB} and full.users == [ALICE]

    # Display names in the body highlight nobody (v1.17 dropped those defaults).
    notified = await sent(env, room.message(CAROL, "Member 5 and member 4, hi"), monkeypatch)
    assert users(notified, highlight=True) == set()
    # @room highlights when its sender may notify the room (Alice, the creator), not from Bob.
    room_mention = {"msgtype": "m.text", "body": "@room hi", "m.mentions": {"room": True}}
    notified = await sent(env, room.build("m.room.message", room_mention, sender=BOB), monkeypatch)
    assert users(notified, highlight=True) == set()
    notified = await sent(env, room.build("m.room.message", room_mention, sender=ALICE), monkeypatch)
    assert users(notified, highlight=True) == everyone - {ALICE}

    notice = room.build("m.room.message", {"msgtype": "m.notice", "body": "a bot speaks"}, sender=BOB)
    assert users(await sent(env, notice, monkeypatch)) == set()
    encrypted = room.build("m.room.encrypted", {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "x",
                                                "sender_key": "k", "session_id": "s", "device_id": "D"}, sender=BOB)
    assert users(await sent(env, encrypted, monkeypatch)) == everyone - {BOB}
    reaction = room.build("m.reaction", {"m.relates_to": {"rel_type": "m.annotation", "event_id": pinged.event_id,
                                                          "key": "x"}}, sender=CAROL)
    assert users(await sent(env, reaction, monkeypatch)) == set()

    # An invite notifies its local target alone, with the defaults' sound.
    full.users[:] = []
    notified = await sent(env, room.invite(ALICE, NEWBIE), monkeypatch)
    assert users(notified) == {NEWBIE}
    assert NEWBIE not in full.users


async def test_a_one_to_one_room_notifies_with_sound(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    room = TestRoom()
    room.join(BOB)
    await env.send_room(room)
    notified = await sent(env, room.message(BOB, "psst"), monkeypatch)
    assert notified == {(ALICE, '["notify",{"set_tweak":"sound","value":"default"}]', False)}
