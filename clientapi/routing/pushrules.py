"""Push rules and pushers.

GET /pushrules/, GET /pushrules/global/, GET/PUT/DELETE
/pushrules/{scope}/{kind}/{ruleId}, GET/PUT .../enabled and .../actions;
GET /pushers, POST /pushers/set.

Spec: data/api/client-server/pushrules.yaml, pusher.yaml;
content/client-server-api/modules/push.md. The rules live in the user's
``m.push_rules`` account data (``{"global": {...}}``), so clients also get
them in /sync; what is stored is merged with the server-default rules on
every read (``matrixlib.push_rules.merge_with_defaults``). Pushers are
stored by the user API; delivering notifications to them comes later.
"""

from __future__ import annotations

import json
from typing import Any

from myelin.userapi.v1 import userapi_pb2 as ua_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal.services import Services
from clientapi.routing import client_route
from clientapi.routing.account_data import account_data_lock, read_account_data, write_account_data
from common import errors
from common.http import json_response, parse_json_body
from matrixlib import push_rules

PUSH_RULES = "m.push_rules"
# The spec's limits on pushers.
MAX_APP_ID_LENGTH = 64
MAX_PUSHKEY_BYTES = 512


class _RuleError(errors.MatrixError):
    """A push rule the server cannot accept: the spec's 400 M_UNKNOWN."""

    http_status = 400


async def load_ruleset(services: Services, user_id: str) -> dict[str, list[dict[str, Any]]]:
    stored = await read_account_data(services, user_id, "", PUSH_RULES) or {}
    return push_rules.merge_with_defaults(stored.get("global"), user_id)


def _check_scope_and_kind(scope: str, kind: str) -> None:
    if scope != "global":
        raise errors.InvalidParam("Unknown push rule scope (only 'global' exists)")
    if kind not in push_rules.KINDS:
        raise errors.InvalidParam(f"Unknown push rule kind {kind!r}")


def _public(rule: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rule.items() if k in ("rule_id", "default", "enabled", "actions", "conditions",
                                                  "pattern")}


def _ruleset_json(ruleset: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {kind: [_public(r) for r in ruleset.get(kind, [])] for kind in push_rules.KINDS}


def _pusher_json(pusher: ua_pb.Pusher) -> dict[str, Any]:
    out: dict[str, Any] = {
        "pushkey": pusher.pushkey, "kind": pusher.kind, "app_id": pusher.app_id,
        "app_display_name": pusher.app_display_name, "device_display_name": pusher.device_display_name,
        "lang": pusher.lang, "data": json.loads(pusher.data_json or b"{}"),
    }
    if pusher.profile_tag:
        out["profile_tag"] = pusher.profile_tag
    return out


def _required_str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        raise errors.MissingParam(f"Missing parameter: {key}")
    if not isinstance(value, str):
        raise errors.InvalidParam(f"{key} must be a string")
    return value


def add_routes(blueprint: Blueprint, services: Services) -> None:
    async def edit(request: Request, scope: str, kind: str, rule_id: str, change: Any) -> HTTPResponse:
        """Applies ``change(ruleset)`` to the caller's rules and stores them."""
        device = await services.device_for(request)
        _check_scope_and_kind(scope, kind)
        async with account_data_lock(device.user_id):
            ruleset = await load_ruleset(services, device.user_id)
            try:
                change(ruleset)
            except push_rules.UnknownRule as e:
                raise errors.NotFound(str(e) or "The push rule was not found.") from None
            except push_rules.InvalidRule as e:
                raise _RuleError(str(e)) from None
            await write_account_data(services, device.user_id, "", PUSH_RULES,
                                     {"global": _ruleset_json(ruleset)})
        return json_response({})

    async def get_all(request: Request) -> HTTPResponse:
        device = await services.device_for(request)
        return json_response({"global": _ruleset_json(await load_ruleset(services, device.user_id))})

    async def get_scope(request: Request, scope: str) -> HTTPResponse:
        device = await services.device_for(request)
        if scope != "global":
            raise errors.InvalidParam("Unknown push rule scope (only 'global' exists)")
        return json_response(_ruleset_json(await load_ruleset(services, device.user_id)))

    async def find(request: Request, scope: str, kind: str, rule_id: str) -> dict[str, Any]:
        device = await services.device_for(request)
        _check_scope_and_kind(scope, kind)
        try:
            return push_rules.find_rule(await load_ruleset(services, device.user_id), kind, rule_id)
        except push_rules.UnknownRule:
            raise errors.NotFound("The push rule was not found.") from None

    async def get_rule(request: Request, scope: str, kind: str, rule_id: str) -> HTTPResponse:
        return json_response(_public(await find(request, scope, kind, rule_id)))

    async def put_rule(request: Request, scope: str, kind: str, rule_id: str) -> HTTPResponse:
        await services.device_for(request)  # the token is checked before the body
        body = parse_json_body(request)
        if "actions" not in body:
            raise errors.MissingParam("Missing parameter: actions")
        if kind == "content" and "pattern" not in body:
            raise errors.MissingParam("Missing parameter: pattern (content rules match it)")
        before = request.args.get("before")
        after = request.args.get("after")
        return await edit(request, scope, kind, rule_id, lambda ruleset: push_rules.set_rule(
            ruleset, kind, rule_id, body, before=before, after=after))

    async def delete_rule(request: Request, scope: str, kind: str, rule_id: str) -> HTTPResponse:
        return await edit(request, scope, kind, rule_id,
                          lambda ruleset: push_rules.delete_rule(ruleset, kind, rule_id))

    async def get_attribute(request: Request, scope: str, kind: str, rule_id: str, attr: str) -> HTTPResponse:
        if attr not in ("enabled", "actions"):
            raise errors.Unrecognized("Unrecognized request")
        rule = await find(request, scope, kind, rule_id)
        return json_response({attr: rule.get(attr, True if attr == "enabled" else [])})

    async def put_attribute(request: Request, scope: str, kind: str, rule_id: str, attr: str) -> HTTPResponse:
        if attr not in ("enabled", "actions"):
            raise errors.Unrecognized("Unrecognized request")
        await services.device_for(request)  # the token is checked before the body
        body = parse_json_body(request)
        value = body.get(attr)
        if attr == "enabled":
            if not isinstance(value, bool):
                raise errors.BadJSON("enabled must be true or false")
            return await edit(request, scope, kind, rule_id, lambda ruleset: push_rules.set_rule_enabled(
                ruleset, kind, rule_id, value))
        if not isinstance(value, list):
            raise errors.BadJSON("actions must be a list")
        return await edit(request, scope, kind, rule_id, lambda ruleset: push_rules.set_rule_actions(
            ruleset, kind, rule_id, value))

    async def get_pushers(request: Request) -> HTTPResponse:
        device = await services.device_for(request)
        answer = await services.userapi.query_pushers(ua_pb.QueryPushersRequest(user_id=device.user_id))
        return json_response({"pushers": [_pusher_json(p) for p in answer.pushers]})

    async def set_pusher(request: Request) -> HTTPResponse:
        device = await services.device_for(request)
        body = parse_json_body(request)
        app_id = _required_str(body, "app_id")
        pushkey = _required_str(body, "pushkey")
        if not app_id or len(app_id) > MAX_APP_ID_LENGTH:
            raise errors.InvalidParam(f"app_id must be 1 to {MAX_APP_ID_LENGTH} characters")
        if not pushkey or len(pushkey.encode()) > MAX_PUSHKEY_BYTES:
            raise errors.InvalidParam(f"pushkey must be 1 to {MAX_PUSHKEY_BYTES} bytes")
        if "kind" not in body:
            raise errors.MissingParam("Missing parameter: kind")
        kind = body["kind"]
        if kind is None:
            await services.userapi.perform_pusher_set(ua_pb.PerformPusherSetRequest(
                user_id=device.user_id, pusher=ua_pb.Pusher(app_id=app_id, pushkey=pushkey)))
            return json_response({})
        if not isinstance(kind, str) or not kind:
            raise errors.InvalidParam("kind must be a string or null")
        fields = {key: _required_str(body, key)
                  for key in ("app_display_name", "device_display_name", "lang")}
        data = body.get("data")
        if not isinstance(data, dict):
            raise errors.MissingParam("Missing parameter: data")
        if kind == "http":
            url = data.get("url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise errors.InvalidParam("data.url must be an http(s) URL for an http pusher")
        profile_tag = body.get("profile_tag", "")
        if not isinstance(profile_tag, str):
            raise errors.InvalidParam("profile_tag must be a string")
        append = body.get("append", False)
        if not isinstance(append, bool):
            raise errors.InvalidParam("append must be true or false")
        await services.userapi.perform_pusher_set(ua_pb.PerformPusherSetRequest(
            user_id=device.user_id, append=append, pusher=ua_pb.Pusher(
                app_id=app_id, pushkey=pushkey, kind=kind, profile_tag=profile_tag,
                data_json=json.dumps(data).encode(), app_display_name=fields["app_display_name"],
                device_display_name=fields["device_display_name"], lang=fields["lang"])))
        return json_response({})

    client_route(blueprint, "/pushrules", get_all, ["GET"], name="pushrules_all")
    client_route(blueprint, "/pushrules/<scope>", get_scope, ["GET"], name="pushrules_scope")
    client_route(blueprint, "/pushrules/<scope>/<kind>/<rule_id>", get_rule, ["GET"], name="pushrule_get")
    client_route(blueprint, "/pushrules/<scope>/<kind>/<rule_id>", put_rule, ["PUT"], name="pushrule_put")
    client_route(blueprint, "/pushrules/<scope>/<kind>/<rule_id>", delete_rule, ["DELETE"],
                 name="pushrule_delete")
    client_route(blueprint, "/pushrules/<scope>/<kind>/<rule_id>/<attr>", get_attribute, ["GET"],
                 name="pushrule_attr_get")
    client_route(blueprint, "/pushrules/<scope>/<kind>/<rule_id>/<attr>", put_attribute, ["PUT"],
                 name="pushrule_attr_put")
    client_route(blueprint, "/pushers", get_pushers, ["GET"], name="pushers_get")
    client_route(blueprint, "/pushers/set", set_pusher, ["POST"], name="pushers_set")
