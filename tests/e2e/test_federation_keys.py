"""Federation keys and request signing between real servers.

Two Myelin single processes with federation ports: each fetches the other's
keys over TLS (through its notary API, which fetches directly from the
other server and re-signs), and keeps serving them once the other is gone.
Synapse as the peer: each side fetches the other's keys, Synapse serves as
Myelin's notary, a request Myelin's client signs is accepted by Synapse, and
a request Synapse signs passes Myelin's inbound X-Matrix check."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sanic import Request
from sanic.response import HTTPResponse

from common.config import Config, TrustedKeyServer, load_config
from common.http import json_response, make_app, serve_app
from common.storage import database_url_for, open_database
from federationapi.client import FederationClient, HttpResponseError
from federationapi.component import open_federationapi
from federationapi.keyring import KeyRing, NotaryKeyFetcher
from federationapi.storage.database import FederationDatabase
from homeserver.tls import ensure_self_signed_certificate
from matrixlib.signing import (
    decode_verify_key,
    encode_verify_key,
    generate_signing_key,
    read_signing_key_file,
    verify_json,
)
from tests.e2e.federation.harness import SynapsePeer as SynapsePeer  # re-exported for other e2e modules
from tests.e2e.federation.harness import start_synapse_peer as start_synapse_peer
from tests.e2e.harness import RunningHomeserver, free_port, free_port_range, generate_config, start_monolith

pytestmark = pytest.mark.e2e


def start_federating(workdir: Path) -> tuple[RunningHomeserver, str, int]:
    port = free_port()
    server_name = f"localhost:{port}"
    hs = start_monolith(workdir, "--server-name", server_name, "--federation-port", str(port),
                        "--insecure-federation-for-tests")
    return hs, server_name, port


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[list[tuple[RunningHomeserver, str, int]]]:
    servers = [start_federating(tmp_path / "a")]
    try:
        servers.append(start_federating(tmp_path / "b"))
        yield servers
    finally:
        for hs, _, _ in servers:
            hs.stop()


def check_self_signed(response: dict[str, Any], server_name: str) -> None:
    assert response["server_name"] == server_name
    for key_id, entry in response["verify_keys"].items():
        verify_json(response, server_name, key_id, decode_verify_key(entry["key"]))


def test_each_server_fetches_the_others_keys_over_tls(two_servers: list[tuple[RunningHomeserver, str, int]]
                                                       ) -> None:
    (_a, a_name, a_port), (b, b_name, b_port) = two_servers
    with httpx.Client(verify=False, timeout=30) as http:
        own = {}
        for name, port in ((a_name, a_port), (b_name, b_port)):
            r = http.get(f"https://127.0.0.1:{port}/_matrix/key/v2/server")
            assert r.status_code == 200
            own[name] = r.json()
            check_self_signed(own[name], name)
            assert http.get(f"https://127.0.0.1:{port}/_matrix/federation/v1/version").json()["server"]["name"] \
                == "Myelin"

        for (asker, asker_port), other in (((a_name, a_port), b_name), ((b_name, b_port), a_name)):
            r = http.get(f"https://127.0.0.1:{asker_port}/_matrix/key/v2/query/{other}")
            assert r.status_code == 200, r.text
            [answer] = r.json()["server_keys"]
            check_self_signed(answer, other)
            assert answer["verify_keys"] == own[other]["verify_keys"]
            # The notary signed it too.
            [(asker_key_id, asker_key)] = own[asker]["verify_keys"].items()
            verify_json(answer, asker, asker_key_id, decode_verify_key(asker_key["key"]))

        # B gone: A still answers B's keys from what it fetched.
        b.stop()
        r = http.post(f"https://127.0.0.1:{a_port}/_matrix/key/v2/query",
                      json={"server_keys": {b_name: {}}})
        assert r.status_code == 200
        assert [k["verify_keys"] for k in r.json()["server_keys"]] == [own[b_name]["verify_keys"]]
        # A bad server name is answered with no keys, not an error.
        r = http.get(f"https://127.0.0.1:{a_port}/_matrix/key/v2/query/not%20a%20server")
        assert r.json() == {"server_keys": []}


# -- Synapse as the peer (started by tests/e2e/federation/harness.py) ----------------


@pytest.fixture
def synapse_peer(tmp_path: Path) -> Iterator[SynapsePeer]:
    peer = start_synapse_peer(tmp_path / "synapse")
    yield peer
    peer.stop()


@pytest.fixture
def myelin(tmp_path: Path) -> Iterator[tuple[RunningHomeserver, str, int]]:
    hs, name, port = start_federating(tmp_path / "myelin")
    yield hs, name, port
    hs.stop()


def register_synapse_user(peer: SynapsePeer, localpart: str, display_name: str) -> str:
    with httpx.Client(base_url=peer.client_url, timeout=30) as http:
        r = http.post("/_matrix/client/v3/register", json={"username": localpart, "password": "pw-123456",
                                                            "auth": {"type": "m.login.dummy"}})
        if r.status_code == 401:
            r = http.post("/_matrix/client/v3/register", json={
                "username": localpart, "password": "pw-123456",
                "auth": {"type": "m.login.dummy", "session": r.json()["session"]}})
        assert r.status_code == 200, r.text
        user_id: str = r.json()["user_id"]
        token = r.json()["access_token"]
        r = http.put(f"/_matrix/client/v3/profile/{user_id}/displayname", json={"displayname": display_name},
                     headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        return user_id


async def test_keys_and_signed_requests_interoperate_with_synapse(
        synapse_peer: SynapsePeer, myelin: tuple[RunningHomeserver, str, int], tmp_path: Path) -> None:
    hs, myelin_name, myelin_port = myelin
    async with httpx.AsyncClient(verify=False, timeout=60) as http:
        synapse_keys = (await http.get(
            f"https://127.0.0.1:{synapse_peer.federation_port}/_matrix/key/v2/server")).json()
        myelin_keys = (await http.get(f"https://127.0.0.1:{myelin_port}/_matrix/key/v2/server")).json()

        # Myelin fetches Synapse's keys over TLS and accepts its self-signature.
        r = await http.get(f"https://127.0.0.1:{myelin_port}/_matrix/key/v2/query/{synapse_peer.server_name}")
        [answer] = r.json()["server_keys"]
        check_self_signed(answer, synapse_peer.server_name)
        assert answer["verify_keys"] == synapse_keys["verify_keys"]

        # Synapse, as a notary, fetches Myelin's keys and accepts them (it
        # fetches only for key IDs it is asked for).
        [myelin_key_id] = myelin_keys["verify_keys"]
        r = await http.post(f"https://127.0.0.1:{synapse_peer.federation_port}/_matrix/key/v2/query",
                            json={"server_keys": {myelin_name: {myelin_key_id: {
                                "minimum_valid_until_ts": int(time.time() * 1000)}}}})
        assert r.status_code == 200, r.text
        [answer] = r.json()["server_keys"]
        check_self_signed(answer, myelin_name)
        assert answer["verify_keys"] == myelin_keys["verify_keys"]

    # A request signed by Myelin's key (Myelin's FederationClient, as Myelin)
    # is accepted by Synapse, which checks it with the keys Myelin serves.
    user_id = register_synapse_user(synapse_peer, "alice", "Alice in Synapse")
    signing_key = read_signing_key_file(load_config(hs.config_path).signing_key_path)
    client = FederationClient(myelin_name, signing_key, verify_tls=False, allow_private_addresses=True)
    try:
        profile = await client.get_json(synapse_peer.server_name, "/_matrix/federation/v1/query/profile",
                                        {"user_id": user_id})
        assert profile["displayname"] == "Alice in Synapse"
        # The same request signed with another key is refused.
        forged = FederationClient(myelin_name, generate_signing_key(signing_key.version), verify_tls=False,
                                  allow_private_addresses=True)
        try:
            with pytest.raises(HttpResponseError) as refused:
                await forged.get_json(synapse_peer.server_name, "/_matrix/federation/v1/query/profile",
                                      {"user_id": user_id})
            assert refused.value.status == 401
        finally:
            await forged.close()

        # Synapse as our trusted notary: a KeyRing that may only ask Synapse
        # gets Myelin's keys through it, checking Synapse's signature.
        [(synapse_key_id, synapse_key)] = synapse_keys["verify_keys"].items()
        notary = TrustedKeyServer(server_name=synapse_peer.server_name,
                                  verify_keys={synapse_key_id: synapse_key["key"]})
        (tmp_path / "ring").mkdir()
        database = await open_database(database_url_for("federationapi", postgres_url=None,
                                                        data_dir=tmp_path / "ring"), "federationapi")
        try:
            keyring = KeyRing("observer.test", generate_signing_key("o"), FederationDatabase(database),
                              [NotaryKeyFetcher(client, notary)])
            keys = await keyring.get_verify_keys(myelin_name, [myelin_key_id], keyring.now())
            assert encode_verify_key(keys[myelin_key_id].key) == myelin_keys["verify_keys"][myelin_key_id]["key"]
        finally:
            await database.close()
    finally:
        await client.close()


async def test_synapse_requests_pass_myelins_inbound_authentication(synapse_peer: SynapsePeer,
                                                                     tmp_path: Path) -> None:
    """Synapse signs a real federation request (a profile query its client
    API makes) to a server whose front is Myelin's federation API blueprint
    (in this process, with a probe route): the X-Matrix check, fetching
    Synapse's keys over TLS, lets it through with Synapse as origin."""
    port = free_port()
    config = Config(server_name=f"localhost:{port}", data_dir=tmp_path / "fed", signing_key_path=tmp_path / "k",
                    federation_verify_tls=False, federation_allow_private_addresses=True)
    config.data_dir.mkdir()
    component = await open_federationapi(config, generate_signing_key("probe"))
    blueprint = component.make_blueprint()
    origins: list[str] = []

    async def query_profile(request: Request) -> HTTPResponse:
        origins.append(request.ctx.origin)
        return json_response({"displayname": "Bob in Myelin"})

    blueprint.add_route(query_profile, "/_matrix/federation/v1/query/profile", methods=["GET"])
    cert, key = ensure_self_signed_certificate(tmp_path, "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    serving = await serve_app(make_app(f"probe_{port}", [blueprint]), f"127.0.0.1:{port}", ssl=context)
    try:
        register_synapse_user(synapse_peer, "carol", "Carol")
        async with httpx.AsyncClient(base_url=synapse_peer.client_url, timeout=60) as http:
            r = await http.post("/_matrix/client/v3/login", json={
                "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "carol"},
                "password": "pw-123456"})
            token = r.json()["access_token"]
            r = await http.get(f"/_matrix/client/v3/profile/@bob:{config.server_name}",
                               headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        assert r.json()["displayname"] == "Bob in Myelin"
        assert origins == [synapse_peer.server_name]
    finally:
        await serving.stop()
        await component.close()


@pytest.mark.kafka
def test_the_federationapi_personality_serves_tls_on_the_federation_port(tmp_path: Path, tansu_broker: str
                                                                         ) -> None:
    """In a split deployment the federation API's own process serves the
    router's plain HTTP and, on the federation port, TLS. (It runs the
    federation sender, so it reads the logs: a broker is needed.)"""
    federation_port, base = free_port(), free_port_range(7)
    workdir = tmp_path / "split"
    workdir.mkdir()
    config_path = generate_config(workdir, "--server-name", f"localhost:{federation_port}",
                                  "--federation-port", str(federation_port), "--split-base-port", str(base),
                                  "--kafka", tansu_broker,
                                  client_port=free_port())
    hs = RunningHomeserver(base_url="", server_name=f"localhost:{federation_port}", workdir=workdir,
                           config_path=config_path)
    hs.start("federationapi", "federationapi")
    try:
        hs.wait_ready("federationapi", base + 4, http=True)
        with httpx.Client(verify=False, timeout=30) as http:
            over_tls = http.get(f"https://127.0.0.1:{federation_port}/_matrix/key/v2/server").json()
            check_self_signed(over_tls, hs.server_name)
            plain = http.get(f"http://127.0.0.1:{base + 4}/_matrix/key/v2/server").json()
            assert plain["verify_keys"] == over_tls["verify_keys"]
            r = http.get(f"https://127.0.0.1:{federation_port}/_matrix/federation/v1/version")
            assert r.json()["server"]["name"] == "Myelin"
    finally:
        hs.stop()
