"""End-to-end encryption keys: POST /keys/upload, /keys/query, /keys/claim,
/keys/device_signing/upload and /keys/signatures/upload
(data/api/client-server/keys.yaml, cross_signing.yaml;
content/client-server-api/modules/end_to_end_encryption.md).

Local users' keys come from the user API; remote users' through the
federation API (``services.federation``), whose failures per server are
reported in ``failures``. GET /keys/changes needs /sync's tokens and is
served by the sync API.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from myelin.federationapi.v1 import federationapi_pb2 as fed_pb
from myelin.userapi.v1 import userapi_pb2 as ua_pb
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from clientapi.internal.password_auth import password_auth
from clientapi.internal.services import Services
from clientapi.internal.uia import request_purpose
from clientapi.routing import client_route
from common import errors
from common.http import json_response, parse_json_body

logger = logging.getLogger(__name__)

# As Synapse: clients read signed_curve25519's count even when it is zero.
DEFAULT_ONE_TIME_KEY_ALGORITHM = "signed_curve25519"
KEY_RESULT_FIELDS = ("device_keys", "master_keys", "self_signing_keys", "user_signing_keys")


def _server_of(user_id: str) -> str:
    return user_id.partition(":")[2]


def _user_map(body: dict[str, Any], field: str) -> dict[str, Any]:
    value = body.get(field)
    if value is None:
        raise errors.MissingParam(f"Missing parameter: {field}")
    if not isinstance(value, dict) or not all(isinstance(u, str) and u.startswith("@") and ":" in u for u in value):
        raise errors.BadJSON(f"{field} must map user IDs to values")
    return value


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode() if value is not None else b""


def _stripped(obj: Any) -> Any:
    if not isinstance(obj, dict):
        return obj
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}


def add_routes(blueprint: Blueprint, services: Services) -> None:
    def is_local(user_id: str) -> bool:
        return _server_of(user_id) == services.server_name

    async def upload_keys(request: Request) -> HTTPResponse:
        device = await services.device_for(request)
        body = parse_json_body(request, allow_empty=True)
        fallback = body.get("fallback_keys", body.get("org.matrix.msc2732.fallback_keys"))
        for name, value in (("device_keys", body.get("device_keys")), ("one_time_keys", body.get("one_time_keys")),
                            ("fallback_keys", fallback)):
            if value is not None and not isinstance(value, dict):
                raise errors.BadJSON(f"{name} must be an object")
        counts = await services.userapi.perform_upload_keys(ua_pb.PerformUploadKeysRequest(
            user_id=device.user_id, device_id=device.device_id, device_keys_json=_json_bytes(body.get("device_keys")),
            one_time_keys_json=_json_bytes(body.get("one_time_keys")), fallback_keys_json=_json_bytes(fallback)))
        one_time_key_counts = dict(counts.one_time_key_counts)
        one_time_key_counts.setdefault(DEFAULT_ONE_TIME_KEY_ALGORITHM, 0)
        return json_response({"one_time_key_counts": one_time_key_counts})

    async def query_local(requester: str, wanted: dict[str, list[str]]) -> dict[str, Any]:
        answer = await services.userapi.query_keys(ua_pb.QueryKeysRequest(
            requesting_user_id=requester,
            users=[ua_pb.UserDeviceIds(user_id=u, device_ids=d) for u, d in wanted.items()]))
        return {"device_keys": json.loads(answer.device_keys_json or b"{}"),
                "master_keys": json.loads(answer.master_keys_json or b"{}"),
                "self_signing_keys": json.loads(answer.self_signing_keys_json or b"{}"),
                "user_signing_keys": json.loads(answer.user_signing_keys_json or b"{}")}

    async def query_keys(request: Request) -> HTTPResponse:
        device = await services.device_for(request)
        body = parse_json_body(request)
        wanted_any = _user_map(body, "device_keys")
        wanted: dict[str, list[str]] = {}
        for user_id, device_ids in wanted_any.items():
            if not isinstance(device_ids, list) or not all(isinstance(d, str) for d in device_ids):
                raise errors.BadJSON("device_keys must map user IDs to lists of device IDs")
            wanted[user_id] = device_ids
        timeout = body.get("timeout", 10_000)
        local = {u: d for u, d in wanted.items() if is_local(u)}
        remote = {u: d for u, d in wanted.items() if not is_local(u)}
        result: dict[str, Any] = {field: {} for field in KEY_RESULT_FIELDS}
        result["failures"] = {}
        if local:
            for field, values in (await query_local(device.user_id, local)).items():
                result[field].update(values)
        if remote:
            if services.federation is None:
                for server in {_server_of(u) for u in remote}:
                    result["failures"][server] = {"errcode": "M_UNKNOWN", "error": "No federation"}
            else:
                answer = await services.federation.query_keys(fed_pb.QueryKeysRequest(
                    device_keys_json=json.dumps(remote).encode(),
                    timeout_ms=timeout if isinstance(timeout, int) else 10_000))
                found = json.loads(answer.response_json or b"{}")
                for field in (*KEY_RESULT_FIELDS, "failures"):
                    if isinstance(found.get(field), dict):
                        result[field].update(found[field])
        # Another user's user-signing key is theirs alone.
        result["user_signing_keys"] = {u: k for u, k in result["user_signing_keys"].items() if u == device.user_id}
        return json_response(result)

    async def claim_keys(request: Request) -> HTTPResponse:
        await services.device_for(request)
        body = parse_json_body(request)
        wanted = _user_map(body, "one_time_keys")
        claims: list[ua_pb.KeyClaim] = []
        remote: dict[str, dict[str, str]] = {}
        for user_id, by_device in wanted.items():
            if not isinstance(by_device, dict) or not all(isinstance(a, str) for a in by_device.values()):
                raise errors.BadJSON("one_time_keys must map users to devices to algorithms")
            if is_local(user_id):
                claims += [ua_pb.KeyClaim(user_id=user_id, device_id=d, algorithm=a) for d, a in by_device.items()]
            else:
                remote[user_id] = by_device
        one_time_keys: dict[str, Any] = {}
        failures: dict[str, Any] = {}
        if claims:
            answer = await services.userapi.perform_claim_keys(ua_pb.PerformClaimKeysRequest(claims=claims))
            one_time_keys.update(json.loads(answer.one_time_keys_json or b"{}"))
        if remote:
            if services.federation is None:
                failures.update({_server_of(u): {"errcode": "M_UNKNOWN", "error": "No federation"} for u in remote})
            else:
                timeout = body.get("timeout", 10_000)
                fed_answer = await services.federation.claim_keys(fed_pb.ClaimKeysRequest(
                    one_time_keys_json=json.dumps(remote).encode(),
                    timeout_ms=timeout if isinstance(timeout, int) else 10_000))
                found = json.loads(fed_answer.response_json or b"{}")
                one_time_keys.update(found.get("one_time_keys") or {})
                failures.update(found.get("failures") or {})
        return json_response({"one_time_keys": one_time_keys, "failures": failures})

    async def upload_device_signing(request: Request) -> HTTPResponse:
        device = await services.device_for(request)
        body = parse_json_body(request)
        uploads = {field: body.get(field) for field in ("master_key", "self_signing_key", "user_signing_key")}
        for field, value in uploads.items():
            if value is not None and not isinstance(value, dict):
                raise errors.BadJSON(f"{field} must be an object")
        stored = await query_local(device.user_id, {device.user_id: []})
        existing = {"master_key": stored["master_keys"].get(device.user_id),
                    "self_signing_key": stored["self_signing_keys"].get(device.user_id),
                    "user_signing_key": stored["user_signing_keys"].get(device.user_id)}
        # The spec lets a user upload the first keys, or the same keys again,
        # without interactive auth; replacing keys needs the password.
        if existing["master_key"] is not None:
            unchanged = all(value is None or _stripped(value) == _stripped(existing[field])
                            for field, value in uploads.items())
            if unchanged:
                return json_response({})
            purpose = request_purpose(request.method, request.path, device.user_id)
            refused = await password_auth(services, device, body, purpose)
            if refused is not None:
                return refused
        await services.userapi.perform_upload_device_signing_keys(ua_pb.PerformUploadDeviceSigningKeysRequest(
            user_id=device.user_id, master_key_json=_json_bytes(uploads["master_key"]),
            self_signing_key_json=_json_bytes(uploads["self_signing_key"]),
            user_signing_key_json=_json_bytes(uploads["user_signing_key"])))
        return json_response({})

    async def upload_signatures(request: Request) -> HTTPResponse:
        device = await services.device_for(request)
        body = parse_json_body(request)
        for user_id, by_key in body.items():
            if not isinstance(by_key, dict):
                raise errors.BadJSON(f"{user_id}: must map key IDs to signed objects")
        answer = await services.userapi.perform_upload_signatures(ua_pb.PerformUploadSignaturesRequest(
            user_id=device.user_id, signed_objects_json=json.dumps(body).encode()))
        return json_response({"failures": json.loads(answer.failures_json or b"{}")})

    client_route(blueprint, "/keys/upload", upload_keys, ["POST"], name="keys_upload")
    client_route(blueprint, "/keys/query", query_keys, ["POST"], name="keys_query")
    client_route(blueprint, "/keys/claim", claim_keys, ["POST"], name="keys_claim")
    client_route(blueprint, "/keys/device_signing/upload", upload_device_signing, ["POST"],
                 name="keys_device_signing_upload")
    client_route(blueprint, "/keys/signatures/upload", upload_signatures, ["POST"], name="keys_signatures_upload")
