"""RulesetTemplate: one event evaluated once for many users answers, for each
user, exactly what ``evaluate`` answers for that user's own rule set
(the server defaults, and generated rule sets holding the user's ID)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matrixlib import push_rules
from matrixlib.push_rules import (
    PushContext,
    Ruleset,
    RulesetTemplate,
    default_ruleset_template,
    evaluate,
    merge_with_defaults,
)

# Users and display names chosen to trip shortcuts: glob and regex characters
# in IDs, IDs differing only by case, names beyond ASCII, and text re's
# case-insensitive match equates with ASCII though str.lower does not (U+017F
# long s ~ "s") or does (U+212A Kelvin sign ~ "k").
USERS: dict[str, str] = {
    "@alice:test": "Alice",
    "@ALICE:test": "alice liddell",
    "@bob:test": "",
    "@c*rol:test": "C?rol",
    "@d.ve:test": "Dåve",
    "@sam:test": "sam",
    "@kim:test": "Kim",
    "@x_y:other.example": "x_y",
    "@[weird]+\\:test": "a.b*c",
    "@émile:test": "ÉMILE",
}
WORDS = ["hello", "alice", "ALICE", "Alice Liddell", "c*rol", "crol", "C?rol", "Dåve", "DÅVE", "\u017fam", "sam",
         "\u212aim", "kim", "x_y", "x_yz", "a.b*c", "abbc", "émile", "ÉMILE", "@room", "@alice:test",
         "@c*rol:test", "@\u212aim:test", "@\u017fam:test", "@Émile:test", ":", "_", " ", "\n", "!"]

user_ids = st.sampled_from(sorted(USERS))
mention_items = st.one_of(user_ids, st.sampled_from(["@nobody:test", "@alice:TEST", ""]),
                          st.integers(-2, 2), st.booleans(), st.none())


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    event_type = draw(st.sampled_from(["m.room.message", "m.room.encrypted", "m.room.member", "m.reaction",
                                       "m.call.invite", "m.room.tombstone", "m.room.server_acl",
                                       "m.room.topic", "org.example.custom"]))
    # The user the event is most likely to name: in its mentions, as its
    # state key and in its body at once, so that several rules name them.
    who = draw(user_ids)
    words = st.sampled_from([*WORDS, who, USERS[who] or "x", who.upper()])
    content: dict[str, Any] = {}
    if draw(st.booleans()):
        content["msgtype"] = draw(st.sampled_from(["m.text", "m.notice", "m.emote", "M.NOTICE"]))
    if draw(st.integers(0, 4)):
        content["body"] = draw(st.lists(words, max_size=6).map(" ".join) | st.lists(words, max_size=6).map("".join)
                               | st.text(max_size=12) | st.integers())
    if draw(st.booleans()):
        mentions: dict[str, Any] = {}
        if draw(st.booleans()):
            mentions["user_ids"] = draw(st.lists(mention_items | st.just(who), max_size=4)
                                        | st.sampled_from(["@alice:test", None]))
        if draw(st.booleans()):
            mentions["room"] = draw(st.sampled_from([True, False, 1, "true", None]))
        content["m.mentions"] = mentions
    if draw(st.booleans()):
        content["membership"] = draw(st.sampled_from(["invite", "join", "leave", "Invite"]))
    if draw(st.booleans()):
        content["m.relates_to"] = {"rel_type": draw(st.sampled_from(["m.replace", "m.thread", "m.annotation"])),
                                   "event_id": "$x"}
    event: dict[str, Any] = {"event_id": "$e", "type": event_type, "room_id": "!r:test",
                             "sender": draw(st.one_of(user_ids, st.just("@someone:else"))),
                             "content": content, "origin_server_ts": 1}
    state_key = draw(st.one_of(st.none(), st.just(""), user_ids, st.just(who), st.sampled_from([
        "@Alice:Test", "@crol:test", "@c*rol:TEST", "x", "@\u212aim:test", "@\u017fam:test", "@ÉMILE:test"])))
    if state_key is not None:
        event["state_key"] = state_key
    return event


power_levels = st.one_of(st.none(), st.fixed_dictionaries({
    "users": st.dictionaries(user_ids, st.integers(-10, 100), max_size=3),
    "users_default": st.sampled_from([0, 50, "x"]),
    "notifications": st.sampled_from([{}, {"room": 0}, {"room": 100}, {"room": "50"}]),
}))
rooms = st.tuples(st.sampled_from([0, 1, 2, 3, 1000]), power_levels,
                  st.one_of(st.none(), st.sampled_from([0, 50, 100, float("inf")])))


def assert_same_for_everyone(template: RulesetTemplate, ruleset_for: Callable[[str], Ruleset],
                             event: Mapping[str, Any], room: tuple[int, Any, float | None]) -> None:
    count, levels, sender_power = room
    prepared = template.prepare(event, room_member_count=count, power_levels=levels, sender_power=sender_power)
    for user_id, display_name in USERS.items():
        context = PushContext(user_id=user_id, display_name=display_name, room_member_count=count,
                              power_levels=levels, sender_power=sender_power)
        assert prepared.outcome_for(user_id, display_name) == evaluate(ruleset_for(user_id), event, context), (
            user_id, event)


def defaults_of(user_id: str) -> Ruleset:
    return merge_with_defaults(None, user_id)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=events(), room=rooms)
def test_default_rules_once_equal_each_user_in_full(event: dict[str, Any], room: Any) -> None:
    template = default_ruleset_template()
    assert template is not None
    assert_same_for_everyone(template, defaults_of, event, room)


def with_legacy_rules(user_id: str) -> Ruleset:
    """The defaults with body-mention rules before them, as servers had before
    v1.17 (the user's ID standing for their localpart)."""
    ruleset = merge_with_defaults(None, user_id)
    ruleset["override"].insert(1, {"rule_id": ".m.rule.contains_display_name", "default": True, "enabled": True,
                                   "conditions": [{"kind": "contains_display_name"}],
                                   "actions": ["notify", {"set_tweak": "highlight"}]})
    ruleset["content"].append({"rule_id": ".m.rule.contains_user_name", "default": True, "enabled": True,
                               "pattern": user_id, "actions": ["notify", {"set_tweak": "sound", "value": "x"}]})
    ruleset["underride"].insert(0, {"rule_id": "state_key_glob", "default": False, "enabled": True,
                                    "conditions": [{"kind": "event_match", "key": "state_key",
                                                    "pattern": f"*{user_id}"}], "actions": ["notify"]})
    return ruleset


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=events(), room=rooms)
def test_legacy_body_rules_once_equal_each_user_in_full(event: dict[str, Any], room: Any) -> None:
    template = RulesetTemplate.of(with_legacy_rules)
    assert template is not None
    assert_same_for_everyone(template, with_legacy_rules, event, room)


# -- generated rule sets holding the user's ID ------------------------------------------------

USER = "{user}"  # where a generated rule set puts the user's ID


def put_user(value: Any, user_id: str) -> Any:
    if isinstance(value, str):
        return value.replace(USER, user_id)
    if isinstance(value, dict):
        return {k: put_user(v, user_id) for k, v in value.items()}
    if isinstance(value, list):
        return [put_user(v, user_id) for v in value]
    return value


keys = st.sampled_from(["type", "content.body", "state_key", "content.msgtype", "sender", "content.membership",
                        "content.m\\.mentions.user_ids", "content.m\\.mentions.room"])
patterns = st.sampled_from([USER, f"*{USER}*", f"{USER}?", f"x{USER}", "m.room.*", "alice", "a*e", "*", "",
                            "m.notice", "invite", "?am"]) | st.integers()
values = st.sampled_from([USER, f"{USER}!", "m.text", "@alice:test", True, 1, None]) | st.lists(
    st.just(USER), max_size=1)
conditions = st.one_of(
    st.builds(lambda k, p: {"kind": "event_match", "key": k, "pattern": p}, keys, patterns),
    st.builds(lambda k, v: {"kind": "event_property_is", "key": k, "value": v}, keys, values),
    st.builds(lambda k, v: {"kind": "event_property_contains", "key": k, "value": v}, keys, values),
    st.just({"kind": "contains_display_name"}),
    st.builds(lambda c: {"kind": "room_member_count", "is": c}, st.sampled_from(["2", "<3", ">=1000", "x"])),
    st.just({"kind": "sender_notification_permission", "key": "room"}),
    st.just({"kind": "org.example.unknown", "key": USER}),
    st.just({"kind": "event_match", "key": f"content.{USER}", "pattern": "*"}),
    st.just({"kind": "event_match", "pattern": USER}),
)
actions = st.sampled_from([["notify"], [], ["notify", {"set_tweak": "highlight"}], ["dont_notify"]])


@st.composite
def rule_templates(draw: st.DrawFn, kind: str, index: int) -> dict[str, Any]:
    rule: dict[str, Any] = {"rule_id": f"r{kind}{index}", "default": False, "enabled": draw(st.booleans()),
                            "actions": draw(actions)}
    if kind in ("override", "underride"):
        rule["conditions"] = draw(st.lists(conditions, max_size=3))
    elif kind == "content":
        rule["pattern"] = draw(patterns)
    elif kind == "room":
        rule["rule_id"] = draw(st.sampled_from(["!r:test", "!other:test"]))
    else:
        rule["rule_id"] = draw(st.sampled_from(sorted(USERS)))
    return rule


@st.composite
def stored_rulesets(draw: st.DrawFn) -> dict[str, Any]:
    return {kind: [draw(rule_templates(kind, i)) for i in range(draw(st.integers(0, 3)))]
            for kind in push_rules.KINDS}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stored=stored_rulesets(), event=events(), room=rooms)
def test_generated_rule_sets_once_equal_each_user_in_full(stored: dict[str, Any], event: dict[str, Any],
                                                          room: Any) -> None:
    def ruleset_for(user_id: str) -> Ruleset:
        return merge_with_defaults(put_user(stored, user_id), user_id)

    template = RulesetTemplate.of(ruleset_for)
    assert template is not None
    assert_same_for_everyone(template, ruleset_for, event, room)


# -- templates refused ----------------------------------------------------------------------

def localpart_rule(user_id: str) -> Ruleset:
    return {"content": [{"rule_id": "name", "enabled": True, "pattern": user_id[1:].split(":")[0],
                         "actions": ["notify"]}]}


def user_in_actions(user_id: str) -> Ruleset:
    return {"override": [{"rule_id": "a", "enabled": True, "conditions": [],
                          "actions": ["notify", {"set_tweak": "who", "value": user_id}]}]}


def user_in_rule_id(user_id: str) -> Ruleset:
    return {"sender": [{"rule_id": user_id, "enabled": True, "actions": ["notify"]}]}


def not_the_same_rules(user_id: str) -> Ruleset:
    return merge_with_defaults(None, user_id) if user_id.startswith("@probe") else {}


@pytest.mark.parametrize("ruleset_for", [localpart_rule, user_in_actions, user_in_rule_id, not_the_same_rules])
def test_rule_sets_that_transform_or_return_the_user_id_have_no_template(
        ruleset_for: Callable[[str], Ruleset]) -> None:
    assert RulesetTemplate.of(ruleset_for) is None


# -- the shortcuts, by example ----------------------------------------------------------------

def message(body: str, **content: Any) -> dict[str, Any]:
    return {"event_id": "$e", "type": "m.room.message", "room_id": "!r:test", "sender": "@bob:test",
            "content": {"msgtype": "m.text", "body": body, **content}, "origin_server_ts": 1}


def test_a_plain_message_names_nobody_and_shares_one_outcome() -> None:
    template = default_ruleset_template()
    assert template is not None
    prepared = template.prepare(message("hello"), room_member_count=1000)
    assert prepared.names_nobody
    shared = prepared.outcome_for("@alice:test")
    assert shared is not None and shared[0] == ".m.rule.message"
    assert prepared.outcome_for("@carol:test") is shared
    assert prepared.outcome_for("@bob:test") is None  # the sender


def test_a_mention_is_checked_per_user() -> None:
    template = default_ruleset_template()
    assert template is not None
    prepared = template.prepare(message("hi", **{"m.mentions": {"user_ids": ["@alice:test"]}}),
                                room_member_count=1000)
    assert not prepared.names_nobody
    assert prepared.outcome_for("@alice:test") == (".m.rule.is_user_mention", [
        "notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}])
    assert prepared.outcome_for("@ALICE:test") is prepared.shared


def test_an_invite_names_its_target_only() -> None:
    template = default_ruleset_template()
    assert template is not None
    invite = {"event_id": "$e", "type": "m.room.member", "room_id": "!r:test", "sender": "@bob:test",
              "state_key": "@c*rol:test", "content": {"membership": "invite"}, "origin_server_ts": 1}
    prepared = template.prepare(invite, room_member_count=10)
    found = prepared.outcome_for("@c*rol:test")
    assert found is not None and found[0] == ".m.rule.invite_for_me"
    # A glob character in the invitee's ID is a wildcard, as in the full evaluation.
    assert prepared.outcome_for("@c*:test") == found
    assert prepared.outcome_for("@crol:test") == (".m.rule.member_event", [])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(localpart=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=":"),
                         min_size=1, max_size=8),
       display_name=st.text(max_size=8), noise=st.text(max_size=6), room=rooms,
       as_state_key=st.booleans(), mentioned=st.booleans(), upper=st.booleans())
def test_generated_users_named_by_an_event_get_their_own_outcome(
        localpart: str, display_name: str, noise: str, room: Any, as_state_key: bool, mentioned: bool,
        upper: bool) -> None:
    user_id = f"@{localpart}:test"
    named = user_id.upper() if upper else user_id
    event = message(f"{noise}{display_name} {named}{noise}",
                    **({"m.mentions": {"user_ids": [named]}} if mentioned else {}))
    if as_state_key:
        event.update(type="m.room.member", state_key=named, content={"membership": "invite"})
    count, levels, sender_power = room
    template = RulesetTemplate.of(with_legacy_rules)
    assert template is not None
    prepared = template.prepare(event, room_member_count=count, power_levels=levels, sender_power=sender_power)
    context = PushContext(user_id=user_id, display_name=display_name, room_member_count=count,
                          power_levels=levels, sender_power=sender_power)
    assert prepared.outcome_for(user_id, display_name) == evaluate(with_legacy_rules(user_id), event, context)


def test_case_folding_beyond_ascii_is_re_s() -> None:
    """re matches "\u017f" (long s) with "s" ignoring case, str.lower does not:
    the shortcuts' substring pre-tests must not rule such a user out."""
    template = RulesetTemplate.of(with_legacy_rules)
    assert template is not None
    invite = {"event_id": "$e", "type": "m.room.member", "room_id": "!r:test", "sender": "@bob:test",
              "state_key": "@\u017fam:test", "content": {"membership": "invite"}, "origin_server_ts": 1}
    found = template.prepare(invite).outcome_for("@sam:test")
    assert found is not None and found[0] == ".m.rule.invite_for_me"
    said = template.prepare(message("hi \u017fam"), room_member_count=5).outcome_for("@x:test", "sam")
    assert said is not None and said[0] == ".m.rule.contains_display_name"
    assert said == evaluate(with_legacy_rules("@x:test"), message("hi \u017fam"),
                            PushContext(user_id="@x:test", display_name="sam", room_member_count=5))
