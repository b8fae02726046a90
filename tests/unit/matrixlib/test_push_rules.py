"""The push rule evaluator and rule-set edits (content/client-server-api/modules/push.md)."""

from __future__ import annotations

from typing import Any

import pytest

from matrixlib import push_rules as pr
from matrixlib.push_rules import PushContext

ALICE = "@alice:example.org"
BOB = "@bob:example.org"
ROOM = "!room:example.org"


def message(body: str = "hello", sender: str = BOB, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "m.room.message", "room_id": ROOM, "sender": sender, "event_id": "$e",
            "content": {"msgtype": "m.text", "body": body, **(extra or {})}}


def ctx(count: int = 5, display_name: str = "Alice", power_levels: dict[str, Any] | None = None) -> PushContext:
    return PushContext(user_id=ALICE, display_name=display_name, room_member_count=count,
                       power_levels=power_levels)


def winner(event: dict[str, Any], context: PushContext | None = None,
           ruleset: dict[str, Any] | None = None) -> str | None:
    found = pr.evaluate(ruleset or pr.default_ruleset(ALICE), event, context or ctx())
    return found[0] if found else None


# -- the defaults -------------------------------------------------------------------------------

def test_default_ruleset_shape() -> None:
    rules = pr.default_ruleset(ALICE)
    assert [r["rule_id"] for r in rules["override"]] == [
        ".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me", ".m.rule.member_event",
        ".m.rule.is_user_mention", ".m.rule.is_room_mention", ".m.rule.tombstone", ".m.rule.reaction",
        ".m.rule.room.server_acl", ".m.rule.suppress_edits"]
    assert [r["rule_id"] for r in rules["underride"]] == [
        ".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one", ".m.rule.message",
        ".m.rule.encrypted"]
    # v1.17 removed the legacy body-mention defaults.
    assert rules["content"] == [] and rules["room"] == [] and rules["sender"] == []
    assert rules["override"][0]["enabled"] is False
    assert all(r["default"] for kind in pr.KINDS for r in rules[kind])


def test_default_rules_pick_the_spec_outcomes() -> None:
    assert winner(message()) == ".m.rule.message"
    assert winner(message(), ctx(count=2)) == ".m.rule.room_one_to_one"
    assert winner(message(extra={"msgtype": "m.notice"})) == ".m.rule.suppress_notices"
    mention = message(extra={"m.mentions": {"user_ids": [ALICE]}})
    found = pr.evaluate(pr.default_ruleset(ALICE), mention, ctx())
    assert found is not None and found[0] == ".m.rule.is_user_mention"
    assert pr.actions_notify(found[1]) and pr.actions_highlight(found[1])
    # Someone else's mention is just a message.
    assert winner(message(extra={"m.mentions": {"user_ids": [BOB]}})) == ".m.rule.message"
    invite = {"type": "m.room.member", "state_key": ALICE, "sender": BOB, "room_id": ROOM,
              "content": {"membership": "invite"}}
    assert winner(invite) == ".m.rule.invite_for_me"
    assert winner(invite | {"state_key": "@carol:example.org"}) == ".m.rule.member_event"
    assert winner({"type": "m.room.tombstone", "state_key": "", "sender": BOB, "content": {}}) == ".m.rule.tombstone"
    # A tombstone that is not a state event does not match the tombstone rule.
    assert winner({"type": "m.room.tombstone", "sender": BOB, "content": {}}) is None
    assert winner({"type": "m.reaction", "sender": BOB, "content": {}}) == ".m.rule.reaction"
    edit = message(extra={"m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}})
    assert winner(edit) == ".m.rule.suppress_edits"
    assert winner({"type": "m.call.invite", "sender": BOB, "content": {}}) == ".m.rule.call"
    assert winner({"type": "m.room.encrypted", "sender": BOB, "content": {}}, ctx(count=2)) \
        == ".m.rule.encrypted_room_one_to_one"
    assert winner({"type": "m.room.encrypted", "sender": BOB, "content": {}}) == ".m.rule.encrypted"
    assert winner({"type": "m.room.topic", "sender": BOB, "state_key": "", "content": {}}) is None
    # One's own events never notify.
    assert winner(message(sender=ALICE)) is None


def test_room_mention_needs_the_senders_power() -> None:
    event = message(extra={"m.mentions": {"room": True}})
    weak = {"users": {BOB: 10}, "notifications": {"room": 50}}
    assert winner(event, ctx(power_levels=weak)) == ".m.rule.message"
    strong = {"users": {BOB: 50}}
    assert winner(event, ctx(power_levels=strong)) == ".m.rule.is_room_mention"
    lowered = {"users_default": 0, "notifications": {"room": 0}}
    assert winner(event, ctx(power_levels=lowered)) == ".m.rule.is_room_mention"
    # A power the caller computed (a creator in a room without power levels; v12's infinite power).
    creator = PushContext(user_id=ALICE, room_member_count=5, sender_power=100)
    assert winner(event, creator) == ".m.rule.is_room_mention"
    infinite = PushContext(user_id=ALICE, room_member_count=5, power_levels=weak, sender_power=float("inf"))
    assert winner(event, infinite) == ".m.rule.is_room_mention"
    # "room": "true" (a string) is not true.
    assert winner(message(extra={"m.mentions": {"room": "true"}}), ctx(power_levels=strong)) == ".m.rule.message"


def test_master_rule_silences_everything() -> None:
    rules = pr.default_ruleset(ALICE)
    pr.set_rule_enabled(rules, "override", ".m.rule.master", True)
    found = pr.evaluate(rules, message(extra={"m.mentions": {"user_ids": [ALICE]}}), ctx())
    assert found == (".m.rule.master", [])
    assert not pr.actions_notify(found[1])


# -- conditions ------------------------------------------------------------------------------------

def test_event_match_glob_and_case() -> None:
    topic = {"type": "m.room.topic", "content": {"topic": "Lunch plans"}, "sender": BOB}
    cond = {"kind": "event_match", "key": "content.topic", "pattern": "lunc?*"}
    assert pr.condition_matches(cond, topic, ctx())
    for value, expected in [("LUNCH", True), (" lunch", False), ("lunc", False), (None, False), (5, False)]:
        event = {"content": {"topic": value}}
        assert pr.condition_matches(cond, event, ctx()) is expected, value
    # Absent properties do not match, even "*".
    assert not pr.condition_matches({"kind": "event_match", "key": "content.nope", "pattern": "*"}, topic, ctx())
    # Regex characters in patterns are literal.
    assert pr.condition_matches({"kind": "event_match", "key": "type", "pattern": "m.room.*"}, topic, ctx())
    assert not pr.condition_matches({"kind": "event_match", "key": "type", "pattern": "m+room*"}, topic, ctx())


def test_event_match_body_word_boundaries() -> None:
    cond = {"kind": "event_match", "key": "content.body", "pattern": "ex*ple"}
    for body, expected in [("An example event.", True), ("exple", True), ("An exciting triple-whammy", True),
                           ("examples", False), ("anexample", False), ("_example", False)]:
        assert pr.condition_matches(cond, {"content": {"body": body}}, ctx()) is expected, body


def test_dot_separated_paths() -> None:
    assert pr.split_property_path("content.m\\.mentions.user_ids") == ["content", "m.mentions", "user_ids"]
    assert pr.split_property_path("a\\\\.b") == ["a\\", "b"]
    assert pr.split_property_path("a\\b") == ["a\\b"]
    event = {"content": {"m.federate": True, "a": {"b": "c"}}}
    assert pr.condition_matches({"kind": "event_property_is", "key": "content.m\\.federate", "value": True},
                                event, ctx())
    assert not pr.condition_matches({"kind": "event_property_is", "key": "content.m.federate", "value": True},
                                    event, ctx())


def test_event_property_is_exact_types() -> None:
    def matches(value: Any, wanted: Any) -> bool:
        return pr.condition_matches({"kind": "event_property_is", "key": "content.v", "value": wanted},
                                    {"content": {"v": value}}, ctx())
    assert matches(True, True) and matches(None, None) and matches(3, 3) and matches("x", "x")
    assert not matches("true", True) and not matches(1, True) and not matches(True, 1)
    assert not matches([1], [1])  # compound values are not supported
    assert not matches({"a": 1}, {"a": 1})
    assert not pr.condition_matches({"kind": "event_property_is", "key": "content.v", "value": None},
                                    {"content": {}}, ctx())


def test_event_property_contains() -> None:
    event = {"content": {"alt_aliases": ["#somewhere:example.org", "#myroom:example.com", 3, [1]]}}
    def contains(wanted: Any, key: str = "content.alt_aliases") -> bool:
        return pr.condition_matches({"kind": "event_property_contains", "key": key, "value": wanted}, event, ctx())
    assert contains("#myroom:example.com") and contains(3)
    assert not contains(":example.com") and not contains("3") and not contains([1])
    assert not contains("x", key="content.nothing")


def test_contains_display_name() -> None:
    cond = {"kind": "contains_display_name"}
    assert pr.condition_matches(cond, message("hey alice, lunch?"), ctx(display_name="Alice"))
    assert not pr.condition_matches(cond, message("malice"), ctx(display_name="Alice"))
    assert not pr.condition_matches(cond, message("anything"), ctx(display_name=""))
    assert pr.condition_matches(cond, message("ping A.B (x)"), ctx(display_name="A.B (x)"))


@pytest.mark.parametrize(("spec", "count", "expected"), [
    ("2", 2, True), ("2", 3, False), ("==2", 2, True), ("<2", 1, True), ("<2", 2, False),
    (">2", 3, True), (">=2", 2, True), ("<=2", 3, False), ("x2", 2, False), ("", 2, False), (2, 2, False)])
def test_room_member_count(spec: Any, count: int, expected: bool) -> None:
    assert pr.condition_matches({"kind": "room_member_count", "is": spec}, message(), ctx(count=count)) is expected


def test_unknown_condition_never_matches() -> None:
    rules: dict[str, Any] = {"override": [{"rule_id": "x", "enabled": True, "actions": ["notify"],
                                           "conditions": [{"kind": "org.example.future"}]}]}
    assert pr.evaluate(rules, message(), ctx()) is None
    # A rule without conditions matches everything.
    rules["override"][0]["conditions"] = []
    assert pr.evaluate(rules, message(), ctx()) == ("x", ["notify"])


# -- kinds and edits ----------------------------------------------------------------------------------

def test_user_rules_of_every_kind() -> None:
    rules = pr.default_ruleset(ALICE)
    pr.set_rule(rules, "content", "cake", {"pattern": "cake*lie", "actions": ["notify"]})
    assert winner(message("the cake is a lie"), ruleset=rules) == "cake"
    pr.set_rule(rules, "room", ROOM, {"actions": []})
    assert winner(message("hi"), ruleset=rules) == ROOM
    assert winner(message("hi") | {"room_id": "!other:x"}, ruleset=rules) == ".m.rule.message"
    pr.set_rule(rules, "sender", "@carol:x", {"actions": ["notify"]})
    assert winner(message("hi", sender="@carol:x") | {"room_id": "!other:x"}, ruleset=rules) == "@carol:x"
    pr.set_rule(rules, "override", "all", {"conditions": [], "actions": ["notify"]})
    assert rules["override"][1]["rule_id"] == "all"  # after the master rule, before the defaults
    assert winner(message("cake"), ruleset=rules) == "all"
    pr.set_rule_enabled(rules, "override", "all", False)
    assert winner(message("the cake is a lie"), ruleset=rules) == "cake"


def test_set_rule_places_and_updates() -> None:
    rules: dict[str, list[dict[str, Any]]] = {"underride": []}
    for name in ("a", "b", "c"):
        pr.set_rule(rules, "underride", name, {"actions": []})
    assert [r["rule_id"] for r in rules["underride"]] == ["c", "b", "a"]
    pr.set_rule(rules, "underride", "d", {"actions": []}, before="a")
    pr.set_rule(rules, "underride", "e", {"actions": []}, after="c")
    assert [r["rule_id"] for r in rules["underride"]] == ["c", "e", "b", "d", "a"]
    pr.set_rule_enabled(rules, "underride", "b", False)
    pr.set_rule(rules, "underride", "b", {"actions": ["notify"]})
    assert [r["rule_id"] for r in rules["underride"]] == ["c", "e", "b", "d", "a"]
    assert pr.find_rule(rules, "underride", "b") | {} == {"rule_id": "b", "default": False, "enabled": False,
                                                          "actions": ["notify"], "conditions": []}
    pr.set_rule(rules, "underride", "b", {"actions": []}, after="a")
    assert [r["rule_id"] for r in rules["underride"]] == ["c", "e", "d", "a", "b"]
    pr.delete_rule(rules, "underride", "e")
    assert [r["rule_id"] for r in rules["underride"]] == ["c", "d", "a", "b"]


def test_edit_errors() -> None:
    rules = pr.default_ruleset(ALICE)
    with pytest.raises(pr.InvalidRule):
        pr.set_rule(rules, "override", ".m.rule.mine", {"actions": []})
    for bad_id in ("a/b", "a\\b", ""):
        with pytest.raises(pr.InvalidRule):
            pr.set_rule(rules, "override", bad_id, {"actions": []})
    with pytest.raises(pr.InvalidRule):
        pr.set_rule(rules, "nonsense", "x", {"actions": []})
    with pytest.raises(pr.InvalidRule):
        pr.set_rule(rules, "content", "x", {"actions": []})  # no pattern
    with pytest.raises(pr.InvalidRule):
        pr.set_rule(rules, "override", "x", {"actions": "notify"})
    with pytest.raises(pr.InvalidRule):
        pr.set_rule(rules, "override", "x", {"actions": [], "conditions": [{"key": "no kind"}]})
    with pytest.raises(pr.InvalidRule):
        pr.set_rule(rules, "override", "x", {"actions": []}, before=".m.rule.message")
    with pytest.raises(pr.UnknownRule):
        pr.set_rule(rules, "override", "x", {"actions": []}, before="nothing")
    with pytest.raises(pr.UnknownRule):
        pr.delete_rule(rules, "override", "nothing")
    with pytest.raises(pr.InvalidRule):
        pr.delete_rule(rules, "override", ".m.rule.master")
    with pytest.raises(pr.UnknownRule):
        pr.find_rule(rules, "room", "!nothing:x")
    with pytest.raises(pr.UnknownRule):
        pr.set_rule_actions(rules, "underride", "nothing", [])
    with pytest.raises(pr.InvalidRule):
        pr.set_rule_actions(rules, "underride", ".m.rule.message", [5])


def test_merge_with_defaults_keeps_user_changes() -> None:
    rules = pr.default_ruleset(ALICE)
    pr.set_rule(rules, "override", "mine", {"conditions": [], "actions": ["notify"]})
    pr.set_rule_enabled(rules, "underride", ".m.rule.message", False)
    pr.set_rule_actions(rules, "override", ".m.rule.invite_for_me", [])
    # An old stored set without some defaults, with an unknown stale default.
    rules["override"] = [r for r in rules["override"] if r["rule_id"] != ".m.rule.reaction"]
    rules["override"].append({"rule_id": ".m.rule.gone", "default": True, "enabled": True, "actions": []})
    merged = pr.merge_with_defaults(rules, ALICE)
    ids = [r["rule_id"] for r in merged["override"]]
    assert ids[:2] == [".m.rule.master", "mine"]
    assert ".m.rule.reaction" in ids and ".m.rule.gone" not in ids
    assert pr.find_rule(merged, "underride", ".m.rule.message")["enabled"] is False
    assert pr.find_rule(merged, "override", ".m.rule.invite_for_me")["actions"] == []
    assert pr.merge_with_defaults(None, ALICE) == pr.default_ruleset(ALICE)
    assert pr.merge_with_defaults({"override": "junk", "room": [5, {"x": 1}]}, ALICE) == pr.default_ruleset(ALICE)
