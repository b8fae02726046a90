"""/keys/* and /room_keys/* over HTTP (real user API, fake room server; a
fake federation API for remote users)."""

from __future__ import annotations

import json
from typing import Any

import httpx
from myelin.federationapi.v1 import federationapi_pb2 as fed_pb

from matrixlib.signing import sign_json
from tests.component.clientapi.conftest import Harness, User
from tests.e2ee import ClientDevice, CrossSigning

V3 = "/_matrix/client/v3"
REMOTE_USER = "@zoe:remote.example"
ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"


async def post(h: Harness, user: User, path: str, body: Any) -> httpx.Response:
    return await h.http.post(V3 + path, json=body, headers=user.headers)


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def errcode(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    code: str = response.json()["errcode"]
    return code


class FakeFederation:
    """Answers remote key queries and claims for one remote user and records them."""

    def __init__(self) -> None:
        self.queries: list[dict[str, Any]] = []
        self.claims: list[dict[str, Any]] = []

    async def query_keys(self, req: fed_pb.QueryKeysRequest) -> fed_pb.QueryKeysResponse:
        self.queries.append(json.loads(req.device_keys_json))
        return fed_pb.QueryKeysResponse(response_json=json.dumps({
            "device_keys": {REMOTE_USER: {"ZD": {"user_id": REMOTE_USER, "device_id": "ZD"}}},
            "master_keys": {REMOTE_USER: {"user_id": REMOTE_USER, "usage": ["master"], "keys": {}}},
            "user_signing_keys": {REMOTE_USER: {"leaked": True}},
            "failures": {"down.example": {"errcode": "M_UNKNOWN"}}}).encode())

    async def claim_keys(self, req: fed_pb.ClaimKeysRequest) -> fed_pb.ClaimKeysResponse:
        self.claims.append(json.loads(req.one_time_keys_json))
        return fed_pb.ClaimKeysResponse(response_json=json.dumps({
            "one_time_keys": {REMOTE_USER: {"ZD": {"signed_curve25519:z": {"key": "z"}}}}, "failures": {}}).encode())


async def test_upload_query_claim(harness: Harness) -> None:
    alice, bob = await harness.register("alice"), await harness.register("bob")
    device = ClientDevice(alice.user_id, alice.device_id)
    counts = ok(await post(harness, alice, "/keys/upload", {
        "device_keys": device.device_keys(), "one_time_keys": device.one_time_keys("1", "2"),
        "fallback_keys": device.fallback_key("f")}))
    assert counts == {"one_time_key_counts": {"signed_curve25519": 2}}
    # An empty upload reports the counts; signed_curve25519 is there even at zero.
    assert ok(await post(harness, bob, "/keys/upload", {})) == {"one_time_key_counts": {"signed_curve25519": 0}}
    # Keys for another device are refused.
    other = ClientDevice(alice.user_id, "NOTMINE")
    assert errcode(await post(harness, alice, "/keys/upload", {"device_keys": other.device_keys()}), 400) == \
        "M_INVALID_PARAM"

    found = ok(await post(harness, bob, "/keys/query", {"device_keys": {alice.user_id: [], bob.user_id: []}}))
    assert set(found["device_keys"][alice.user_id]) == {alice.device_id}
    assert found["device_keys"][bob.user_id] == {}
    assert found["failures"] == {}
    assert errcode(await post(harness, bob, "/keys/query", {}), 400) == "M_MISSING_PARAM"

    claims = {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}}
    claimed = [ok(await post(harness, bob, "/keys/claim", claims)) for _ in range(4)]
    keys = [list(c["one_time_keys"][alice.user_id][alice.device_id]) for c in claimed]
    assert sorted(keys[0] + keys[1]) == ["signed_curve25519:1", "signed_curve25519:2"]
    assert keys[2] == keys[3] == ["signed_curve25519:f"]
    counts = ok(await post(harness, alice, "/keys/upload", {}))
    assert counts["one_time_key_counts"] == {"signed_curve25519": 0}


async def test_remote_users_go_through_federation(harness: Harness) -> None:
    alice = await harness.register("alice")
    fake = FakeFederation()
    harness.clientapi.services.federation = fake  # type: ignore[assignment]
    found = ok(await post(harness, alice, "/keys/query", {"device_keys": {REMOTE_USER: []}}))
    assert fake.queries == [{REMOTE_USER: []}]
    assert set(found["device_keys"][REMOTE_USER]) == {"ZD"}
    assert REMOTE_USER in found["master_keys"]
    assert found["user_signing_keys"] == {}  # another user's user-signing key never reaches us
    assert found["failures"] == {"down.example": {"errcode": "M_UNKNOWN"}}
    claimed = ok(await post(harness, alice, "/keys/claim", {"one_time_keys": {REMOTE_USER: {"ZD": "signed_curve25519"}}}))
    assert claimed["one_time_keys"][REMOTE_USER]["ZD"] == {"signed_curve25519:z": {"key": "z"}}
    # Without federation, the remote server is a failure.
    harness.clientapi.services.federation = None
    found = ok(await post(harness, alice, "/keys/query", {"device_keys": {REMOTE_USER: []}}))
    assert "remote.example" in found["failures"]


async def test_cross_signing_upload_with_interactive_auth(harness: Harness) -> None:
    alice = await harness.register("alice", password="secret-pw")
    bob = await harness.register("bob")
    device = ClientDevice(alice.user_id, alice.device_id)
    ok(await post(harness, alice, "/keys/upload", {"device_keys": device.device_keys()}))
    keys = CrossSigning(alice.user_id)
    body = {"master_key": keys.master_key(), "self_signing_key": keys.self_signing_key(),
            "user_signing_key": keys.user_signing_key()}
    # The first upload needs no interactive auth, and the same keys again neither.
    assert ok(await post(harness, alice, "/keys/device_signing/upload", body)) == {}
    assert ok(await post(harness, alice, "/keys/device_signing/upload", body)) == {}
    # New keys do: 401 with the flows, then the password.
    replacement = CrossSigning(alice.user_id)
    new_body: dict[str, Any] = {"master_key": replacement.master_key(),
                                "self_signing_key": replacement.self_signing_key()}
    challenge = await post(harness, alice, "/keys/device_signing/upload", new_body)
    assert challenge.status_code == 401, challenge.text
    assert challenge.json()["flows"] == [{"stages": ["m.login.password"]}]
    session = challenge.json()["session"]
    wrong = await post(harness, alice, "/keys/device_signing/upload", {**new_body, "auth": {
        "type": "m.login.password", "session": session, "password": "nope",
        "identifier": {"type": "m.id.user", "user": "alice"}}})
    assert wrong.status_code == 401 and wrong.json()["errcode"] == "M_FORBIDDEN"
    assert ok(await post(harness, alice, "/keys/device_signing/upload", {**new_body, "auth": {
        "type": "m.login.password", "session": session, "password": "secret-pw",
        "identifier": {"type": "m.id.user", "user": "alice"}}})) == {}
    seen = ok(await post(harness, bob, "/keys/query", {"device_keys": {alice.user_id: []}}))
    assert seen["master_keys"][alice.user_id]["keys"] == replacement.master_key()["keys"]
    assert seen["user_signing_keys"] == {}

    # A bad self-signing signature is M_INVALID_SIGNATURE (with auth, as keys change).
    forged = {"self_signing_key": CrossSigning(alice.user_id).self_signing_key()}
    challenge = await post(harness, alice, "/keys/device_signing/upload", forged)
    assert challenge.status_code == 401
    bad = await post(harness, alice, "/keys/device_signing/upload", {**forged, "auth": {
        "type": "m.login.password", "session": challenge.json()["session"], "password": "secret-pw",
        "identifier": {"type": "m.id.user", "user": "alice"}}})
    assert errcode(bad, 400) == "M_INVALID_SIGNATURE"

    # The self-signing key signs the device; bob sees the signature.
    signed = sign_json(device.device_keys(), alice.user_id, replacement.self_signing)
    result = ok(await post(harness, alice, "/keys/signatures/upload", {alice.user_id: {alice.device_id: signed}}))
    assert result == {"failures": {}}
    seen = ok(await post(harness, bob, "/keys/query", {"device_keys": {alice.user_id: []}}))
    assert replacement.self_signing.key_id in seen["device_keys"][alice.user_id][alice.device_id]["signatures"][
        alice.user_id]
    result = ok(await post(harness, alice, "/keys/signatures/upload", {alice.user_id: {"GHOST": signed}}))
    assert result["failures"][alice.user_id]["GHOST"]["errcode"] == "M_NOT_FOUND"


async def test_key_backup(harness: Harness) -> None:
    alice = await harness.register("alice")
    http, headers = harness.http, alice.headers
    assert errcode(await http.get(V3 + "/room_keys/version", headers=headers), 404) == "M_NOT_FOUND"
    created = ok(await post(harness, alice, "/room_keys/version", {"algorithm": ALGORITHM,
                                                                    "auth_data": {"public_key": "k1"}}))
    version = created["version"]
    current = ok(await http.get(V3 + "/room_keys/version", headers=headers))
    assert (current["version"], current["algorithm"], current["auth_data"], current["count"]) == (
        version, ALGORITHM, {"public_key": "k1"}, 0)
    session = {"first_message_index": 3, "forwarded_count": 0, "is_verified": False,
               "session_data": {"ciphertext": "c1"}}
    stored = ok(await http.put(V3 + f"/room_keys/keys/!r:x/s1?version={version}", json=session, headers=headers))
    assert stored["count"] == 1 and stored["etag"] != current["etag"]
    stored2 = ok(await http.put(V3 + f"/room_keys/keys?version={version}", headers=headers, json={
        "rooms": {"!r:x": {"sessions": {"s2": session}}, "!q:x": {"sessions": {"s3": session}}}}))
    assert stored2["count"] == 3
    assert ok(await http.get(V3 + f"/room_keys/keys/!r:x/s1?version={version}", headers=headers)) == session
    assert set(ok(await http.get(V3 + f"/room_keys/keys/!r:x?version={version}", headers=headers))["sessions"]) \
        == {"s1", "s2"}
    assert ok(await http.get(V3 + f"/room_keys/keys/!none:x?version={version}", headers=headers)) == {"sessions": {}}
    assert errcode(await http.get(V3 + f"/room_keys/keys/!r:x/nope?version={version}", headers=headers), 404) \
        == "M_NOT_FOUND"
    assert set(ok(await http.get(V3 + f"/room_keys/keys?version={version}", headers=headers))["rooms"]) == \
        {"!r:x", "!q:x"}
    assert errcode(await http.get(V3 + "/room_keys/keys", headers=headers), 400) == "M_MISSING_PARAM"

    # Version rules: the body's version must match the path's; the algorithm must not change.
    assert errcode(await http.put(V3 + f"/room_keys/version/{version}", headers=headers, json={
        "algorithm": ALGORITHM, "auth_data": {}, "version": "999"}), 400) == "M_INVALID_PARAM"
    assert errcode(await http.put(V3 + f"/room_keys/version/{version}", headers=headers, json={
        "algorithm": "org.example.other", "auth_data": {}}), 400) == "M_INVALID_PARAM"
    assert errcode(await http.put(V3 + "/room_keys/version/999", headers=headers, json={
        "algorithm": ALGORITHM, "auth_data": {}}), 404) == "M_NOT_FOUND"
    assert ok(await http.put(V3 + f"/room_keys/version/{version}", headers=headers, json={
        "algorithm": ALGORITHM, "auth_data": {"public_key": "k2"}, "version": version})) == {}

    # A newer version: keys for the old one are refused with the current version named.
    newer = ok(await post(harness, alice, "/room_keys/version", {"algorithm": ALGORITHM, "auth_data": {}}))["version"]
    wrong = await http.put(V3 + f"/room_keys/keys/!r:x/s9?version={version}", json=session, headers=headers)
    assert errcode(wrong, 403) == "M_WRONG_ROOM_KEYS_VERSION"
    assert wrong.json()["current_version"] == newer
    assert errcode(await http.put(V3 + "/room_keys/keys/!r:x/s9?version=12345", json=session, headers=headers),
                   404) == "M_NOT_FOUND"

    deleted = ok(await http.delete(V3 + f"/room_keys/keys/!r:x?version={version}", headers=headers))
    assert deleted["count"] == 1
    assert ok(await http.delete(V3 + f"/room_keys/version/{newer}", headers=headers)) == {}
    assert errcode(await http.get(V3 + f"/room_keys/version/{newer}", headers=headers), 404) == "M_NOT_FOUND"
    assert errcode(await http.delete(V3 + f"/room_keys/version/{newer}", headers=headers), 404) == "M_NOT_FOUND"
    assert ok(await http.get(V3 + "/room_keys/version", headers=headers))["version"] == version
