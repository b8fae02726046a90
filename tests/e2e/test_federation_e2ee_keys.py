"""End-to-end encryption across servers: two Myelin single processes, and
Myelin with Synapse (each pair started once for the module).

A remote key query and claim: each side's users read the other side's
users' device keys and cross-signing keys (/keys/query) and claim their
one-time keys (/keys/claim), over federation (/user/keys/query,
/user/keys/claim, X-Matrix signed, TLS). Then matrix-js-sdk's encrypted
conversation (tests/e2e/js/encrypted.js) with the two users on the two
servers: remote key queries and claims, to-device messages and device list
updates over federation; with Synapse in both directions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.e2e.harness import RunningHomeserver
from tests.e2e.test_federation_keys import SynapsePeer, start_federating, start_synapse_peer
from tests.e2e.test_js_e2ee import run_encrypted_conversation
from tests.e2ee import ClientDevice, CrossSigning

pytestmark = pytest.mark.e2e

V3 = "/_matrix/client/v3"
PASSWORD = "a-long-password-1"


@dataclass
class Account:
    http: httpx.AsyncClient
    user_id: str
    device: ClientDevice

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        response = await self.http.request(method, V3 + path, json=body)
        assert response.status_code == 200, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()


async def new_account(base_url: str, prefix: str) -> Account:
    http = httpx.AsyncClient(base_url=base_url, timeout=60)
    body: dict[str, Any] = {"username": f"{prefix}{uuid.uuid4().hex[:6]}", "password": PASSWORD,
                            "auth": {"type": "m.login.dummy"}}
    response = await http.post(f"{V3}/register", json=body)
    if response.status_code == 401:  # Synapse wants the session back
        body["auth"]["session"] = response.json()["session"]
        response = await http.post(f"{V3}/register", json=body)
    assert response.status_code == 200, response.text
    registered = response.json()
    http.headers["Authorization"] = f"Bearer {registered['access_token']}"
    account = Account(http, registered["user_id"], ClientDevice(registered["user_id"], registered["device_id"]))
    await account.call("POST", "/keys/upload", {
        "device_keys": account.device.device_keys(), "one_time_keys": account.device.one_time_keys("a", "b"),
        "fallback_keys": account.device.fallback_key("f")})
    keys = CrossSigning(account.user_id)
    await account.call("POST", "/keys/device_signing/upload", {
        "master_key": keys.master_key(), "self_signing_key": keys.self_signing_key(),
        "auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": account.user_id},
                 "password": PASSWORD}})
    return account


async def reads_the_others_keys(reader: Account, owner: Account) -> None:
    found = await reader.call("POST", "/keys/query", {"device_keys": {owner.user_id: []}})
    assert found["failures"] == {}, found
    device_id = owner.device.device_id
    device = found["device_keys"][owner.user_id][device_id]
    assert device["keys"] == owner.device.device_keys()["keys"]
    assert device["signatures"][owner.user_id] == owner.device.device_keys()["signatures"][owner.user_id]
    assert found["master_keys"][owner.user_id]["usage"] == ["master"]
    assert owner.user_id in found["self_signing_keys"]
    claimed = await reader.call("POST", "/keys/claim", {"one_time_keys": {owner.user_id: {device_id: "signed_curve25519"}}})
    assert claimed["failures"] == {}, claimed
    (key_id,) = claimed["one_time_keys"][owner.user_id][device_id]
    assert key_id in ("signed_curve25519:a", "signed_curve25519:b")


@pytest.fixture(scope="module")
def two_myelins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningHomeserver, RunningHomeserver]]:
    workdir = tmp_path_factory.mktemp("e2ee-keys-pair")
    first, _, _ = start_federating(workdir / "a")
    try:
        second, _, _ = start_federating(workdir / "b")
    except BaseException:
        first.stop()
        raise
    try:
        yield first, second
    finally:
        second.stop()
        first.stop()


@pytest.fixture(scope="module")
def myelin_and_synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningHomeserver, SynapsePeer]]:
    workdir = tmp_path_factory.mktemp("e2ee-keys-synapse")
    synapse = start_synapse_peer(workdir / "synapse")
    try:
        myelin, _, _ = start_federating(workdir / "myelin")
    except BaseException:
        synapse.stop()
        raise
    try:
        yield myelin, synapse
    finally:
        myelin.stop()
        synapse.stop()


async def test_keys_between_two_myelins(two_myelins: tuple[RunningHomeserver, RunningHomeserver]) -> None:
    first, second = two_myelins
    alice = await new_account(first.base_url, "alice")
    bob = await new_account(second.base_url, "bob")
    try:
        await reads_the_others_keys(bob, alice)
        await reads_the_others_keys(alice, bob)
        # A server that cannot be reached is a failure; the rest is answered.
        found = await alice.call("POST", "/keys/query", {"device_keys": {bob.user_id: [], "@x:localhost:1": []}})
        assert set(found["failures"]) == {"localhost:1"}
        assert bob.user_id in found["device_keys"]
    finally:
        await alice.http.aclose()
        await bob.http.aclose()


async def test_keys_between_myelin_and_synapse(myelin_and_synapse: tuple[RunningHomeserver, SynapsePeer]) -> None:
    myelin, synapse = myelin_and_synapse
    alice = await new_account(myelin.base_url, "alice")
    sam = await new_account(synapse.client_url, "sam")
    try:
        await reads_the_others_keys(sam, alice)
        await reads_the_others_keys(alice, sam)
    finally:
        await alice.http.aclose()
        await sam.http.aclose()


async def test_js_sdk_encryption_across_two_myelins(two_myelins: tuple[RunningHomeserver, RunningHomeserver]) -> None:
    first, second = two_myelins
    await run_encrypted_conversation(first.base_url, second.base_url)


@pytest.mark.parametrize("alice_on", ["myelin", "synapse"])
async def test_js_sdk_encryption_between_myelin_and_synapse(
        myelin_and_synapse: tuple[RunningHomeserver, SynapsePeer], alice_on: str) -> None:
    """Alice makes the room and bootstraps cross-signing; Bob and his second device are on the other server."""
    myelin, synapse = myelin_and_synapse
    urls = [myelin.base_url, synapse.client_url]
    if alice_on == "synapse":
        urls.reverse()
    await run_encrypted_conversation(*urls)
