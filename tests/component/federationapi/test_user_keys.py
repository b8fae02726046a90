"""Remote users' keys over federation: the outbound queries and claims
(grouped by server, failures per server, only a server's own users kept),
the inbound /user/keys/query, /user/keys/claim and /user/devices/{userId}
served from a real user API, and the m.device_list_update and
m.signing_key_update EDUs applied to the user API's cache (resync on a gap).
A fake client stands in for the network."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from myelin.federationapi.v1 import federationapi_pb2 as pb
from myelin.userapi.v1 import userapi_pb2 as ua_pb
from sanic import Blueprint

from common import errors
from common.config import Config
from common.http import make_app, serve_app
from federationapi.client import FederationClient, FederationError, HttpResponseError
from federationapi.internal import remote_keys
from federationapi.internal.context import FederationContext
from federationapi.internal.edus import handle_edu
from federationapi.routing.user_keys import add_user_keys_routes
from tests.component.federationapi.conftest import OUR_KEY, OUR_NAME
from tests.contract.openapi_spec import SPEC_ROOT, ClientServerSpec
from tests.e2ee import ClientDevice, CrossSigning
from userapi.api import UserAPI
from userapi.component import UserAPIComponent, open_userapi
from userapi.internal.passwords import ScryptParams

V1 = "/_matrix/federation/v1"
ALICE = f"@alice:{OUR_NAME}"
ZOE = "@zoe:other.test"


@dataclass
class FakeClient:
    answers: dict[tuple[str, str, str], Any]
    calls: list[tuple[str, str, str, Any]] = field(default_factory=list)

    def _answer(self, method: str, destination: str, path: str, payload: Any) -> Any:
        self.calls.append((method, destination, path, payload))
        answer = self.answers.get((method, destination, path))
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def get_json(self, destination: str, path: str, query: dict[str, Any] | None = None) -> Any:
        return self._answer("GET", destination, path, query)

    async def post_json(self, destination: str, path: str, content: Any, query: Any = None) -> Any:
        return self._answer("POST", destination, path, content)


def context_with(client: FakeClient, userapi: UserAPI | None = None) -> FederationContext:
    return FederationContext(config=Config(server_name=OUR_NAME, data_dir=Path("."), signing_key_path=Path("k")),
                             signing_key=OUR_KEY, client=cast(FederationClient, client), keyring=cast(Any, None),
                             database=cast(Any, None), roomserver=cast(Any, None), userapi=userapi)


@functools.cache
def server_server_spec() -> ClientServerSpec:
    spec = ClientServerSpec(SPEC_ROOT / "data" / "api" / "server-server")
    spec.error_schema = SPEC_ROOT / "data" / "api" / "client-server" / "definitions" / "errors" / "error.yaml"
    return spec


def assert_matches_spec(method: str, spec_path: str, r: httpx.Response) -> None:
    spec = server_server_spec()
    [operation] = [o for o in spec.operations if o.key == f"{method} {V1}{spec_path}"]
    problems = spec.validate_response(operation, r.status_code, r.json())
    assert not problems, f"{method} {spec_path} {r.status_code}: {problems}"


@pytest.fixture
async def userapi_component(tmp_path: Path) -> AsyncIterator[UserAPIComponent]:
    config = Config(server_name=OUR_NAME, data_dir=tmp_path, signing_key_path=tmp_path / "k")
    component = await open_userapi(config, password_params=ScryptParams(n=2**10))
    try:
        yield component
    finally:
        await component.close()


async def test_query_and_claim_group_by_server_and_report_failures() -> None:
    zoe_keys = {"user_id": ZOE, "device_id": "Z1", "keys": {}}
    client = FakeClient({
        ("POST", "other.test", f"{V1}/user/keys/query"): {
            "device_keys": {ZOE: {"Z1": zoe_keys}, "@liar:third.test": {"X": {}}},
            "master_keys": {ZOE: {"user_id": ZOE, "usage": ["master"], "keys": {}}},
            "user_signing_keys": {ZOE: {"never": "passed on"}}},
        ("POST", "down.test", f"{V1}/user/keys/query"): FederationError("unreachable"),
        ("POST", "broken.test", f"{V1}/user/keys/query"): HttpResponseError(500, b"{}", "broken.test"),
        ("POST", "other.test", f"{V1}/user/keys/claim"): {
            "one_time_keys": {ZOE: {"Z1": {"signed_curve25519:a": {"key": "k"}}}}},
    })
    context = context_with(client)
    answer = await remote_keys.query_keys(context, pb.QueryKeysRequest(device_keys_json=json.dumps(
        {ZOE: [], "@yan:other.test": ["Y"], "@x:down.test": [], "@y:broken.test": []}).encode()))
    body = json.loads(answer.response_json)
    assert body["device_keys"] == {ZOE: {"Z1": zoe_keys}}  # a server speaks for its own users only
    assert ZOE in body["master_keys"] and "user_signing_keys" not in body
    assert body["failures"]["down.test"]["status"] == 503
    assert body["failures"]["broken.test"]["status"] == 500
    # One request per server, with all its users.
    other = [c for c in client.calls if c[1] == "other.test"]
    assert other == [("POST", "other.test", f"{V1}/user/keys/query", {"device_keys": {ZOE: [], "@yan:other.test": ["Y"]}})]

    claimed = await remote_keys.claim_keys(context, pb.ClaimKeysRequest(one_time_keys_json=json.dumps(
        {ZOE: {"Z1": "signed_curve25519"}, "@x:down.test": {"D": "signed_curve25519"}}).encode()))
    body = json.loads(claimed.response_json)
    assert body["one_time_keys"] == {ZOE: {"Z1": {"signed_curve25519:a": {"key": "k"}}}}
    assert set(body["failures"]) == {"down.test"}
    with pytest.raises(errors.InvalidParam):
        await remote_keys.query_keys(context, pb.QueryKeysRequest(device_keys_json=json.dumps({ALICE: []}).encode()))


async def test_inbound_endpoints_serve_local_users(userapi_component: UserAPIComponent) -> None:
    api = userapi_component.api
    await api.perform_account_creation(ua_pb.PerformAccountCreationRequest(localpart="alice", password="pw"))
    await api.perform_device_creation(ua_pb.PerformDeviceCreationRequest(user_id=ALICE, device_id="A1",
                                                                         display_name="Alice's phone"))
    device = ClientDevice(ALICE, "A1")
    await api.perform_upload_keys(ua_pb.PerformUploadKeysRequest(
        user_id=ALICE, device_id="A1", device_keys_json=json.dumps(device.device_keys()).encode(),
        one_time_keys_json=json.dumps(device.one_time_keys("1")).encode()))
    keys = CrossSigning(ALICE)
    await api.perform_upload_device_signing_keys(ua_pb.PerformUploadDeviceSigningKeysRequest(
        user_id=ALICE, master_key_json=json.dumps(keys.master_key()).encode(),
        self_signing_key_json=json.dumps(keys.self_signing_key()).encode(),
        user_signing_key_json=json.dumps(keys.user_signing_key()).encode()))
    blueprint = Blueprint("user_keys_test")
    add_user_keys_routes(blueprint, OUR_NAME, api)
    serving = await serve_app(make_app("user_keys_test", [blueprint]), "127.0.0.1:0")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{serving.port}") as http:
            query = await http.post(f"{V1}/user/keys/query", json={"device_keys": {ALICE: [], ZOE: []}})
            assert_matches_spec("POST", "/user/keys/query", query)
            found = query.json()
            assert set(found["device_keys"]) == {ALICE}
            assert found["device_keys"][ALICE]["A1"]["keys"] == device.device_keys()["keys"]
            assert ALICE in found["master_keys"] and ALICE in found["self_signing_keys"]
            assert "user_signing_keys" not in found
            claim = await http.post(f"{V1}/user/keys/claim", json={
                "one_time_keys": {ALICE: {"A1": "signed_curve25519"}}})
            assert_matches_spec("POST", "/user/keys/claim", claim)
            claimed = claim.json()
            assert list(claimed["one_time_keys"][ALICE]["A1"]) == ["signed_curve25519:1"]
            listed = await http.get(f"{V1}/user/devices/{ALICE}")
            assert_matches_spec("GET", "/user/devices/{userId}", listed)
            devices = listed.json()
            assert devices["user_id"] == ALICE and devices["stream_id"] > 0
            assert [(d["device_id"], d["device_display_name"]) for d in devices["devices"]] == [("A1", "Alice's phone")]
            assert devices["master_key"]["keys"] == keys.master_key()["keys"]
            assert (await http.get(f"{V1}/user/devices/{ZOE}")).status_code == 400
            assert (await http.post(f"{V1}/user/keys/query", json={"device_keys": 5})).status_code == 400
    finally:
        await serving.stop()


async def test_device_list_edus_update_the_cache(userapi_component: UserAPIComponent) -> None:
    api = userapi_component.api
    z1, z2 = ClientDevice(ZOE, "Z1"), ClientDevice(ZOE, "Z2")
    client = FakeClient({("GET", "other.test", f"{V1}/user/devices/%40zoe%3Aother.test"): {
        "user_id": ZOE, "stream_id": 10, "devices": [{"device_id": "Z1", "keys": z1.device_keys()}]}})
    context = context_with(client, api)

    async def zoe_devices() -> set[str]:
        answer = await api.query_keys(ua_pb.QueryKeysRequest(users=[ua_pb.UserDeviceIds(user_id=ZOE)]))
        return set(json.loads(answer.device_keys_json).get(ZOE, {}))

    def update(device: ClientDevice, stream_id: int, prev: list[int], **extra: Any) -> dict[str, Any]:
        return {"edu_type": "m.device_list_update", "content": {
            "user_id": ZOE, "device_id": device.device_id, "stream_id": stream_id, "prev_id": prev,
            "keys": device.device_keys(), **extra}}

    # Zoe is new to us: the update makes us fetch her whole list.
    await handle_edu(context, "other.test", update(z1, 10, [9]))
    assert await zoe_devices() == {"Z1"}
    assert len(client.calls) == 1
    # The next update follows on: applied without asking.
    await handle_edu(context, "other.test", update(z2, 11, [10]))
    assert await zoe_devices() == {"Z1", "Z2"}
    await handle_edu(context, "other.test", update(z1, 12, [11], deleted=True))
    assert await zoe_devices() == {"Z2"}
    assert len(client.calls) == 1
    # A gap: resync (the remote's list now only has Z1).
    await handle_edu(context, "other.test", update(z2, 20, [19]))
    assert len(client.calls) == 2 and await zoe_devices() == {"Z1"}
    # Another server cannot speak for Zoe; a malformed EDU is dropped.
    await handle_edu(context, "evil.test", update(z2, 21, [10]))
    await handle_edu(context, "other.test", {"edu_type": "m.device_list_update", "content": {"user_id": ZOE}})
    assert await zoe_devices() == {"Z1"} and len(client.calls) == 2

    zoe = CrossSigning(ZOE)
    await handle_edu(context, "other.test", {"edu_type": "m.signing_key_update", "content": {
        "user_id": ZOE, "master_key": zoe.master_key(), "self_signing_key": zoe.self_signing_key()}})
    answer = await api.query_keys(ua_pb.QueryKeysRequest(users=[ua_pb.UserDeviceIds(user_id=ZOE)]))
    assert json.loads(answer.master_keys_json)[ZOE]["keys"] == zoe.master_key()["keys"]
    await handle_edu(context, "evil.test", {"edu_type": "m.signing_key_update", "content": {
        "user_id": ZOE, "master_key": CrossSigning(ZOE).master_key()}})
    answer = await api.query_keys(ua_pb.QueryKeysRequest(users=[ua_pb.UserDeviceIds(user_id=ZOE)]))
    assert json.loads(answer.master_keys_json)[ZOE]["keys"] == zoe.master_key()["keys"]


async def test_user_devices_of_a_remote_user() -> None:
    path = f"{V1}/user/devices/%40zoe%3Aother.test"
    client = FakeClient({("GET", "other.test", path): {"user_id": ZOE, "stream_id": 3, "devices": []}})
    answer = await remote_keys.query_user_devices(context_with(client), pb.QueryUserDevicesRequest(user_id=ZOE))
    assert json.loads(answer.response_json)["stream_id"] == 3
    for failure, expected in ((HttpResponseError(404, b"{}", "other.test"), errors.NotFound),
                              (FederationError("down"), errors.Unavailable),
                              ({"user_id": "@someone:other.test", "devices": []}, errors.Unavailable)):
        client = FakeClient({("GET", "other.test", path): failure})
        with pytest.raises(expected):
            await remote_keys.query_user_devices(context_with(client), pb.QueryUserDevicesRequest(user_id=ZOE))
