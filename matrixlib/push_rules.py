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
import dataclasses
import functools
import re
from collections.abc import Callable, Mapping, Sequence
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


@functools.lru_cache(maxsize=4096)
def _compiled_display_name(display_name: str) -> re.Pattern[str]:
    escaped = re.escape(display_name)
    return re.compile(f"(?<![{_WORD_CHAR}]){escaped}(?![{_WORD_CHAR}])", re.IGNORECASE)


#: The condition kinds that read the user's own side of the context
#: (``PushContext.user_id``, ``display_name``) rather than only the event and
#: the room: a kind that comes to read them must be listed here, or
#: ``RulesetTemplate`` would share its outcome between users.
USER_CONTEXT_KINDS = frozenset({"contains_display_name"})


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
        return _compiled_display_name(context.display_name).search(body) is not None
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


# -- one event, many users ------------------------------------------------------------------
#
# A big room's every event is evaluated for each local member, nearly all of
# whom have the server-default rules: rule sets that differ only by the
# user's ID. ``RulesetTemplate`` holds such a rule set once, the user's ID
# left as a placeholder; ``prepare`` evaluates, once per event, every
# condition that does not depend on the user (the event's fields, the room's
# member count, the sender's power) and keeps, of the rules that can still
# match, only their user-dependent conditions (a pattern or value holding the
# user's ID, the display name). What a user gets is then the first of those
# rules whose user-dependent conditions hold for them (a set look-up or a
# substring test for most), else the outcome shared by every user the event
# does not name: exactly what ``evaluate`` answers for their own rule set.

Ruleset = Mapping[str, Sequence[Mapping[str, Any]]]
Outcome = tuple[str, list[Any]]
#: Tells whether a rule's user-dependent condition holds for (user ID, display name).
UserCheck = Callable[[str, str], bool]

# Stands for the user's ID in a template; a user ID holds no NUL.
_USER_PLACEHOLDER = "@\x00user\x00:\x00server\x00"
# A template is accepted only if putting each of these in the placeholder's
# place gives exactly the rule set built for that user (so the user's ID
# only appears as itself, never transformed, e.g. as its localpart).
_PROBE_USERS = ("@probe:example.org", "@Pr*o?b[e].\\x=/_-:other.example.com:8448")
_GLOB_WILDCARDS = re.compile(r"[*?]")


def _substituted(value: Any, user_id: str) -> Any:
    """``value`` (JSON) with ``user_id`` in the placeholder's place."""
    if isinstance(value, str):
        return value.replace(_USER_PLACEHOLDER, user_id)
    if isinstance(value, Mapping):
        return {_substituted(k, user_id): _substituted(v, user_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_substituted(item, user_id) for item in value]
    return value


def _holds_placeholder(value: Any) -> bool:
    if isinstance(value, str):
        return _USER_PLACEHOLDER in value
    if isinstance(value, Mapping):
        return any(_holds_placeholder(k) or _holds_placeholder(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_placeholder(item) for item in value)
    return False


@dataclass(frozen=True)
class _TemplateRule:
    kind: str
    rule: Mapping[str, Any]
    outcome: Outcome
    # Override and underride rules: their conditions split by whether they
    # depend on the user. Other kinds: ``user_conditions`` holds a content
    # rule's pattern as the equivalent condition when it names the user;
    # otherwise the rule is matched whole (``rule_matches``), once.
    shared_conditions: tuple[Mapping[str, Any], ...]
    user_conditions: tuple[Mapping[str, Any], ...]


class _GlobCheck:
    """An ``event_match`` whose pattern holds the user's ID."""

    __slots__ = ("_pattern", "_value", "_value_folded", "_word_boundary")

    def __init__(self, pattern: str, value: str, word_boundary: bool) -> None:
        self._pattern = pattern
        self._value = value
        self._word_boundary = word_boundary
        # ASCII against ASCII, the case-insensitive match needs each literal
        # piece of the pattern in the lower-cased value: most users are ruled
        # out by substring tests. (Beyond ASCII, re's case folding is wider
        # than str.lower: the real match decides.)
        self._value_folded = value.lower() if value.isascii() else None

    def __call__(self, user_id: str, display_name: str) -> bool:
        pattern = self._pattern.replace(_USER_PLACEHOLDER, user_id)
        if self._value_folded is not None and pattern.isascii():
            for piece in _GLOB_WILDCARDS.split(pattern.lower()):
                if piece not in self._value_folded:
                    return False
        return glob_matches(pattern, self._value, word_boundary=self._word_boundary)


class _DisplayNameCheck:
    """``contains_display_name`` for an event with a string body."""

    __slots__ = ("_body", "_body_folded")

    def __init__(self, body: str) -> None:
        self._body = body
        self._body_folded = body.lower() if body.isascii() else None

    def __call__(self, user_id: str, display_name: str) -> bool:
        if not display_name:
            return False
        if (self._body_folded is not None and display_name.isascii()
                and display_name.lower() not in self._body_folded):
            return False
        return _compiled_display_name(display_name).search(self._body) is not None


def _user_check(condition: Mapping[str, Any], event: Mapping[str, Any], context: PushContext) -> UserCheck | None:
    """What tells, for any user, whether the user-dependent ``condition``
    holds for them (``condition_matches`` on the condition with their ID in
    the placeholder's place); None when it holds for nobody."""
    kind = condition.get("kind")
    key = condition.get("key")
    plain_key = isinstance(key, str) and not _holds_placeholder(key)
    if kind == "contains_display_name":
        body = event_property(event, "content.body")
        return _DisplayNameCheck(body) if isinstance(body, str) else None
    if kind == "event_match" and plain_key and isinstance(condition.get("pattern"), str):
        assert isinstance(key, str)
        value = event_property(event, key)
        if not isinstance(value, str):
            return None
        return _GlobCheck(condition["pattern"], value, key == "content.body")
    if kind in ("event_property_is", "event_property_contains") and plain_key and isinstance(
            condition.get("value"), str):
        assert isinstance(key, str)
        wanted: str = condition["value"]
        value = event_property(event, key)
        if kind == "event_property_is":
            if type(value) is not str:
                return None
            found = value
            return lambda user_id, display_name: found == wanted.replace(_USER_PLACEHOLDER, user_id)
        if not isinstance(value, list):
            return None
        # Strings only, and of no subclass: as ``_same_value`` compares.
        items = {item for item in value if type(item) is str}
        if not items:
            return None
        if wanted == _USER_PLACEHOLDER:  # the user's ID itself (.m.rule.is_user_mention)
            return lambda user_id, display_name: user_id in items
        return lambda user_id, display_name: wanted.replace(_USER_PLACEHOLDER, user_id) in items

    def check(user_id: str, display_name: str) -> bool:
        return condition_matches(_substituted(condition, user_id), event, dataclasses.replace(
            context, user_id=user_id, display_name=display_name))
    return check


class PreparedEvent:
    """One event evaluated against a ``RulesetTemplate`` for every user at once."""

    __slots__ = ("_candidates", "_sender", "shared")

    def __init__(self, sender: Any, candidates: list[tuple[tuple[UserCheck, ...], Outcome]],
                 shared: Outcome | None) -> None:
        self._sender = sender
        # The rules, in priority order, that can still match some users and
        # come before ``shared``: their user-dependent checks.
        self._candidates = candidates
        #: The outcome for every user the event does not name (e.g. not in
        #: its mentions): callers may compare outcomes by identity, not change them.
        self.shared = shared

    @property
    def names_nobody(self) -> bool:
        """Whether every user but the sender gets ``shared``."""
        return not self._candidates

    def outcome_for(self, user_id: str, display_name: str = "") -> Outcome | None:
        """What ``evaluate`` answers for the user (their display name in the
        room, "" when none) with the template's rule set: the same object for
        everyone who gets the same rule, not to be changed."""
        if self._sender == user_id:
            return None
        for checks, outcome in self._candidates:
            if all(check(user_id, display_name) for check in checks):
                return outcome
        return self.shared


class RulesetTemplate:
    """A rule set that a group of users share but for each one's own user ID
    (the server-default rules: ``default_ruleset_template``)."""

    def __init__(self, rules: list[_TemplateRule]) -> None:
        self._rules = rules

    @classmethod
    def of(cls, ruleset_for: Callable[[str], Ruleset]) -> RulesetTemplate | None:
        """The template of the rule sets ``ruleset_for`` builds; None when
        they depend on the user otherwise than by holding their ID as it is
        in conditions or content patterns (then evaluate each user in full)."""
        template = ruleset_for(_USER_PLACEHOLDER)
        for probe in _PROBE_USERS:
            if _substituted(template, probe) != _substituted(ruleset_for(probe), probe):
                return None
        rules: list[_TemplateRule] = []
        for kind in KINDS:
            for rule in template.get(kind, []):
                if not isinstance(rule, Mapping):
                    continue
                if _holds_placeholder({k: v for k, v in rule.items() if k not in ("conditions", "pattern")}):
                    return None  # its ID, actions or enabled flag would differ between users
                if not rule.get("enabled", True):
                    continue
                actions = rule.get("actions", [])
                outcome = (str(rule.get("rule_id")), list(actions) if isinstance(actions, list) else [])
                shared: list[Mapping[str, Any]] = []
                user: list[Mapping[str, Any]] = []
                if kind in ("override", "underride"):
                    conditions = rule.get("conditions", [])
                    if not isinstance(conditions, list) or not all(isinstance(c, Mapping) for c in conditions):
                        continue  # matches nothing
                    for condition in conditions:
                        depends = condition.get("kind") in USER_CONTEXT_KINDS or _holds_placeholder(condition)
                        (user if depends else shared).append(condition)
                elif kind == "content" and _holds_placeholder(rule.get("pattern")):
                    user.append({"kind": "event_match", "key": "content.body", "pattern": rule["pattern"]})
                rules.append(_TemplateRule(kind, rule, outcome, tuple(shared), tuple(user)))
        return cls(rules)

    def prepare(self, event: Mapping[str, Any], *, room_member_count: int = 0,
                power_levels: Mapping[str, Any] | None = None, sender_power: float | None = None
                ) -> PreparedEvent:
        """The event evaluated for every user of the template (the room's
        joined member count and power levels as in ``PushContext``)."""
        context = PushContext(user_id="", room_member_count=room_member_count, power_levels=power_levels,
                              sender_power=sender_power)
        candidates: list[tuple[tuple[UserCheck, ...], Outcome]] = []
        for rule in self._rules:
            if rule.kind in ("override", "underride"):
                if not all(condition_matches(c, event, context) for c in rule.shared_conditions):
                    continue
            elif not rule.user_conditions and not rule_matches(rule.kind, rule.rule, event, context):
                continue
            checks: list[UserCheck] = []
            for condition in rule.user_conditions:
                check = _user_check(condition, event, context)
                if check is None:
                    break
                checks.append(check)
            else:
                if not checks:
                    return PreparedEvent(event.get("sender"), candidates, rule.outcome)
                candidates.append((tuple(checks), rule.outcome))
        return PreparedEvent(event.get("sender"), candidates, None)


@functools.lru_cache(maxsize=1)
def default_ruleset_template() -> RulesetTemplate | None:
    """The template of ``merge_with_defaults(None, user_id)``: the rule set of
    every user who stored no rules of their own."""
    return RulesetTemplate.of(lambda user_id: merge_with_defaults(None, user_id))


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
