"""Push rules: the server-default rule set, edits to a user's rule set, and
the evaluator that tells which actions an event triggers for a user.

Spec: content/client-server-api/modules/push.md ("Push Rules", "Conditions",
"Predefined Rules"; v1.17 removed the legacy body-mention defaults, so the
default ``content`` rules are empty and ``.m.rule.contains_display_name`` is
no longer a default, though the condition is still evaluated), the
dot-separated property paths and glob matching of content/appendices.md.

A rule set is the JSON of the ``m.push_rules`` account data's ``global``
object: ``{"override": [...], "content": [...], "room": [...], "sender":
[...], "underride": [...]}``. Pure: no I/O. Edits raise ``UnknownRule``
(HTTP 404) or ``InvalidRule`` (HTTP 400); the caller maps them.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

KINDS = ("override", "content", "room", "sender", "underride")
# Non-compound canonical JSON values (event_property_is / _contains).
_MAX_SAFE_INT = 2**53 - 1
_WORD_CHAR = "A-Za-z0-9_"


class UnknownRule(LookupError):
    """No such rule (or no such rule to place a rule before or after)."""


class InvalidRule(ValueError):
    """The rule, its ID, its place or its kind is not acceptable."""


# -- the server-default rules ---------------------------------------------------------------

_NOTIFY_SOUND = ["notify", {"set_tweak": "sound", "value": "default"}]


def _rule(rule_id: str, conditions: list[dict[str, Any]], actions: list[Any], *,
          enabled: bool = True) -> dict[str, Any]:
    return {"rule_id": rule_id, "default": True, "enabled": enabled, "conditions": conditions,
            "actions": actions}


def _match(key: str, pattern: str) -> dict[str, Any]:
    return {"kind": "event_match", "key": key, "pattern": pattern}


def _master_rule() -> dict[str, Any]:
    return _rule(".m.rule.master", [], [], enabled=False)


def _default_override_rules(user_id: str) -> list[dict[str, Any]]:
    """Every default override rule but ``.m.rule.master``, in the spec's order."""
    return [
        _rule(".m.rule.suppress_notices", [_match("content.msgtype", "m.notice")], []),
        _rule(".m.rule.invite_for_me", [_match("type", "m.room.member"), _match("content.membership", "invite"),
                                        _match("state_key", user_id)], list(_NOTIFY_SOUND)),
        _rule(".m.rule.member_event", [_match("type", "m.room.member")], []),
        _rule(".m.rule.is_user_mention",
              [{"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": user_id}],
              [*_NOTIFY_SOUND, {"set_tweak": "highlight"}]),
        _rule(".m.rule.is_room_mention",
              [{"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
               {"kind": "sender_notification_permission", "key": "room"}],
              ["notify", {"set_tweak": "highlight"}]),
        _rule(".m.rule.tombstone", [_match("type", "m.room.tombstone"), _match("state_key", "")],
              ["notify", {"set_tweak": "highlight"}]),
        _rule(".m.rule.reaction", [_match("type", "m.reaction")], []),
        _rule(".m.rule.room.server_acl", [_match("type", "m.room.server_acl"), _match("state_key", "")], []),
        _rule(".m.rule.suppress_edits",
              [{"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type", "value": "m.replace"}], []),
    ]


def _default_underride_rules() -> list[dict[str, Any]]:
    one_to_one = {"kind": "room_member_count", "is": "2"}
    return [
        _rule(".m.rule.call", [_match("type", "m.call.invite")],
              ["notify", {"set_tweak": "sound", "value": "ring"}]),
        _rule(".m.rule.encrypted_room_one_to_one", [dict(one_to_one), _match("type", "m.room.encrypted")],
              list(_NOTIFY_SOUND)),
        _rule(".m.rule.room_one_to_one", [dict(one_to_one), _match("type", "m.room.message")],
              list(_NOTIFY_SOUND)),
        _rule(".m.rule.message", [_match("type", "m.room.message")], ["notify"]),
        _rule(".m.rule.encrypted", [_match("type", "m.room.encrypted")], ["notify"]),
    ]


def default_ruleset(user_id: str) -> dict[str, list[dict[str, Any]]]:
    """The server-default rules for ``user_id`` (no user-defined ones)."""
    return {"override": [_master_rule(), *_default_override_rules(user_id)], "content": [], "room": [],
            "sender": [], "underride": _default_underride_rules()}


def merge_with_defaults(stored: Mapping[str, Any] | None, user_id: str) -> dict[str, list[dict[str, Any]]]:
    """The effective rule set: the user-defined rules of ``stored`` (a rule
    set as kept in account data, possibly old or partial) with today's
    server-default rules, whose ``enabled`` and ``actions`` the user may have
    changed. Server-default rules come after the user's in each kind, except
    ``.m.rule.master``, which comes first of all."""
    stored = stored if isinstance(stored, Mapping) else {}
    defaults = default_ruleset(user_id)
    merged: dict[str, list[dict[str, Any]]] = {}
    for kind in KINDS:
        rules = stored.get(kind)
        user_rules: list[dict[str, Any]] = []
        changed_defaults: dict[str, dict[str, Any]] = {}
        for rule in rules if isinstance(rules, list) else []:
            if not isinstance(rule, dict) or not isinstance(rule.get("rule_id"), str):
                continue
            if rule["rule_id"].startswith("."):
                changed_defaults[rule["rule_id"]] = rule
            elif not rule.get("default"):
                user_rules.append(copy.deepcopy(rule))
        kind_defaults = []
        for default in defaults[kind]:
            changed = changed_defaults.get(default["rule_id"])
            if changed is not None:
                if isinstance(changed.get("enabled"), bool):
                    default["enabled"] = changed["enabled"]
                if isinstance(changed.get("actions"), list):
                    default["actions"] = copy.deepcopy(changed["actions"])
            kind_defaults.append(default)
        if kind == "override":
            merged[kind] = kind_defaults[:1] + user_rules + kind_defaults[1:]
        else:
            merged[kind] = user_rules + kind_defaults
    return merged


# -- edits ------------------------------------------------------------------------------------

def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise InvalidRule(f"unknown push rule kind {kind!r}")


def find_rule(ruleset: Mapping[str, Sequence[Mapping[str, Any]]], kind: str, rule_id: str) -> dict[str, Any]:
    """The rule; ``UnknownRule`` when there is none."""
    _check_kind(kind)
    for rule in ruleset.get(kind, []):
        if rule.get("rule_id") == rule_id:
            return dict(rule)
    raise UnknownRule(f"no {kind} push rule {rule_id!r}")


def _index(rules: list[dict[str, Any]], rule_id: str) -> int:
    for index, rule in enumerate(rules):
        if rule.get("rule_id") == rule_id:
            return index
    raise UnknownRule(f"no push rule {rule_id!r}")


def _check_actions(actions: Any) -> list[Any]:
    if not isinstance(actions, list):
        raise InvalidRule("actions must be a list")
    for action in actions:
        if isinstance(action, str):
            continue
        if isinstance(action, dict) and isinstance(action.get("set_tweak"), str):
            continue
        raise InvalidRule(f"invalid action {action!r}")
    return list(actions)


def _check_conditions(conditions: Any) -> list[dict[str, Any]]:
    if not isinstance(conditions, list) or not all(
            isinstance(c, dict) and isinstance(c.get("kind"), str) for c in conditions):
        raise InvalidRule("conditions must be a list of objects with a kind")
    return [dict(c) for c in conditions]


def set_rule(ruleset: dict[str, list[dict[str, Any]]], kind: str, rule_id: str, body: Mapping[str, Any], *,
             before: str | None = None, after: str | None = None) -> None:
    """Creates or updates a user-defined rule in place (PUT
    /pushrules/global/{kind}/{ruleId}). A new rule is enabled and, without
    ``before``/``after``, the most important user-defined rule of its kind;
    ``before``/``after`` name a user-defined rule of the same kind."""
    _check_kind(kind)
    if not rule_id or rule_id.startswith(".") or "/" in rule_id or "\\" in rule_id:
        raise InvalidRule("rule IDs may not start with a dot or contain slashes")
    rule: dict[str, Any] = {"rule_id": rule_id, "default": False, "enabled": True,
                            "actions": _check_actions(body.get("actions"))}
    if kind == "content":
        pattern = body.get("pattern")
        if not isinstance(pattern, str):
            raise InvalidRule("content rules need a pattern")
        rule["pattern"] = pattern
    elif kind in ("override", "underride"):
        rule["conditions"] = _check_conditions(body.get("conditions", []))
    rules = ruleset.setdefault(kind, [])
    existing = next((i for i, r in enumerate(rules) if r.get("rule_id") == rule_id), None)
    for anchor in (before, after):
        if anchor is not None and anchor.startswith("."):
            raise InvalidRule("a rule cannot be placed relative to a server-default rule")
    if existing is not None:
        rule["enabled"] = rules[existing].get("enabled", True)
        if before is None and after is None:
            rules[existing] = rule
            return
        del rules[existing]
    if before is not None:
        rules.insert(_index(rules, before), rule)
    elif after is not None:
        rules.insert(_index(rules, after) + 1, rule)
    elif kind == "override" and rules and rules[0].get("rule_id") == ".m.rule.master":
        rules.insert(1, rule)
    else:
        rules.insert(0, rule)


def delete_rule(ruleset: dict[str, list[dict[str, Any]]], kind: str, rule_id: str) -> None:
    """Deletes a user-defined rule; server-default rules can only be disabled."""
    _check_kind(kind)
    rules = ruleset.get(kind, [])
    index = _index(rules, rule_id)
    if rule_id.startswith("."):
        raise InvalidRule("server-default rules cannot be deleted")
    del rules[index]


def set_rule_enabled(ruleset: dict[str, list[dict[str, Any]]], kind: str, rule_id: str, enabled: bool) -> None:
    _check_kind(kind)
    rules = ruleset.get(kind, [])
    rules[_index(rules, rule_id)]["enabled"] = enabled


def set_rule_actions(ruleset: dict[str, list[dict[str, Any]]], kind: str, rule_id: str, actions: Any) -> None:
    _check_kind(kind)
    rules = ruleset.get(kind, [])
    rules[_index(rules, rule_id)]["actions"] = _check_actions(actions)


# -- matching ---------------------------------------------------------------------------------

def split_property_path(key: str) -> list[str]:
    """A dot-separated property path (appendices, "Dot-separated property
    paths"): ``.`` separates, ``\\.`` is a literal dot, ``\\\\`` a backslash."""
    return list(_split_property_path(key))


# Every event is checked against every member's rules: the same few dozen
# keys and patterns over and over, so their parsed forms are kept.
@functools.lru_cache(maxsize=4096)
def _split_property_path(key: str) -> tuple[str, ...]:
    parts: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(key):
        char = key[index]
        if char == "\\" and index + 1 < len(key) and key[index + 1] in ".\\":
            current.append(key[index + 1])
            index += 2
            continue
        if char == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    parts.append("".join(current))
    return tuple(parts)


_MISSING = object()


def event_property(event: Mapping[str, Any], key: str) -> Any:
    """The value at a dot-separated path, or ``_MISSING``."""
    value: Any = event
    for part in _split_property_path(key):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _glob_regex(pattern: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)


@functools.lru_cache(maxsize=4096)
def _compiled_glob(pattern: str, word_boundary: bool) -> re.Pattern[str]:
    regex = _glob_regex(pattern)
    if word_boundary:
        regex = f"(?<![{_WORD_CHAR}]){regex}(?![{_WORD_CHAR}])"
    return re.compile(regex, re.IGNORECASE | re.DOTALL)


def glob_matches(pattern: str, value: str, *, word_boundary: bool = False) -> bool:
    """Case-insensitive glob match of the whole value, or (``word_boundary``,
    for ``content.body``) of any substring that starts and ends at a word
    boundary (a character outside ``[A-Za-z0-9_]``, or either end)."""
    compiled = _compiled_glob(pattern, word_boundary)
    if word_boundary:
        return compiled.search(value) is not None
    return compiled.fullmatch(value) is not None


def _is_simple_value(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool)):
        return True
    return isinstance(value, int) and -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT


def _same_value(a: Any, b: Any) -> bool:
    # true is not 1, "1" is not 1: no casting.
    return type(a) is type(b) and a == b


_MEMBER_COUNT = re.compile(r"^(==|<=|>=|<|>)?([0-9]+)$")


def member_count_matches(condition_is: Any, count: int) -> bool:
    if not isinstance(condition_is, str):
        return False
    found = _MEMBER_COUNT.match(condition_is)
    if found is None:
        return False
    op, number = found.group(1) or "==", int(found.group(2))
    return {"==": count == number, "<": count < number, ">": count > number,
            "<=": count <= number, ">=": count >= number}[op]


@dataclass(frozen=True)
class PushContext:
    """What the conditions need to know besides the event."""

    user_id: str
    # The user's display name in the room ("" when none).
    display_name: str = ""
    room_member_count: int = 0
    # The room's m.room.power_levels content (None: there is none).
    power_levels: Mapping[str, Any] | None = None
    # The sender's power when the caller computed it (matrixlib.power_levels
    # knows the creators' power in a room without power levels, and room
    # version 12's infinite creator power); None: read from power_levels.
    sender_power: float | None = None


def _power_of(power_levels: Mapping[str, Any] | None, user_id: str) -> int:
    if power_levels is None:
        return 0
    users = power_levels.get("users")
    if isinstance(users, Mapping) and isinstance(users.get(user_id), int):
        return int(users[user_id])
    default = power_levels.get("users_default", 0)
    return int(default) if isinstance(default, int) else 0


def _notification_level(power_levels: Mapping[str, Any] | None, key: str) -> int:
    notifications = (power_levels or {}).get("notifications")
    if isinstance(notifications, Mapping) and isinstance(notifications.get(key), int):
        return int(notifications[key])
    return 50  # the spec's default for "room"; unknown keys get the same


def condition_matches(condition: Mapping[str, Any], event: Mapping[str, Any], context: PushContext) -> bool:
    """One condition; an unknown or malformed condition never matches."""
    kind = condition.get("kind")
    key = condition.get("key")
    if kind == "event_match":
        pattern = condition.get("pattern")
        if not isinstance(key, str) or not isinstance(pattern, str):
            return False
        value = event_property(event, key)
        if not isinstance(value, str):
            return False
        return glob_matches(pattern, value, word_boundary=key == "content.body")
    if kind in ("event_property_is", "event_property_contains"):
        if not isinstance(key, str) or "value" not in condition or not _is_simple_value(condition["value"]):
            return False
        value = event_property(event, key)
        if kind == "event_property_is":
            return _is_simple_value(value) and value is not _MISSING and _same_value(value, condition["value"])
        return isinstance(value, list) and any(
            _is_simple_value(item) and _same_value(item, condition["value"]) for item in value)
    if kind == "contains_display_name":
        body = event_property(event, "content.body")
        if not context.display_name or not isinstance(body, str):
            return False
        escaped = re.escape(context.display_name)
        return re.search(f"(?<![{_WORD_CHAR}]){escaped}(?![{_WORD_CHAR}])", body, re.IGNORECASE) is not None
    if kind == "room_member_count":
        return member_count_matches(condition.get("is"), context.room_member_count)
    if kind == "sender_notification_permission":
        sender = event.get("sender")
        if not isinstance(key, str) or not isinstance(sender, str):
            return False
        power = context.sender_power if context.sender_power is not None else _power_of(
            context.power_levels, sender)
        return power >= _notification_level(context.power_levels, key)
    return False


def rule_matches(kind: str, rule: Mapping[str, Any], event: Mapping[str, Any], context: PushContext) -> bool:
    if kind in ("override", "underride"):
        conditions = rule.get("conditions", [])
        if not isinstance(conditions, list):
            return False
        return all(isinstance(c, Mapping) and condition_matches(c, event, context) for c in conditions)
    if kind == "content":
        pattern = rule.get("pattern")
        body = event_property(event, "content.body")
        return isinstance(pattern, str) and isinstance(body, str) and glob_matches(pattern, body,
                                                                                  word_boundary=True)
    if kind == "room":
        return event.get("room_id") == rule.get("rule_id")
    if kind == "sender":
        return event.get("sender") == rule.get("rule_id")
    return False


def evaluate(ruleset: Mapping[str, Sequence[Mapping[str, Any]]], event: Mapping[str, Any],
             context: PushContext) -> tuple[str, list[Any]] | None:
    """The first enabled rule that matches, in priority order (override,
    content, room, sender, underride; each list in order), as (rule ID, its
    actions); None when no rule matches. The user's own events match nothing."""
    if event.get("sender") == context.user_id:
        return None
    for kind in KINDS:
        for rule in ruleset.get(kind, []):
            if not isinstance(rule, Mapping) or not rule.get("enabled", True):
                continue
            if rule_matches(kind, rule, event, context):
                actions = rule.get("actions", [])
                return str(rule.get("rule_id")), list(actions) if isinstance(actions, list) else []
    return None


def actions_notify(actions: Sequence[Any]) -> bool:
    """Whether the actions notify (``notify``; the historical
    ``dont_notify``/``coalesce`` are ignored)."""
    return "notify" in actions


def actions_highlight(actions: Sequence[Any]) -> bool:
    """Whether the actions set the ``highlight`` tweak (a value of true, or no value)."""
    for action in actions:
        if isinstance(action, Mapping) and action.get("set_tweak") == "highlight":
            return action.get("value", True) is True
    return False
