"""The outbound client: server name resolution (well-known served locally
over TLS, SRV and addresses injected, no real DNS), caching, delegation
reaching a real server with the right Host and signature, and refusals."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sanic import Blueprint, Request
from sanic.response import HTTPResponse
from sanic.response import raw as raw_response

from common.http import ServingApp
from federationapi.client import (
    DestinationRefused,
    FederationClient,
    FederationError,
    ResolvedServer,
    ServerResolver,
    SrvTarget,
)
from matrixlib.federation_auth import parse_x_matrix_header, verify_request
from tests.component.federationapi.conftest import DAY_MS, OUR_KEY, OUR_NAME, FakeKeyServer, serve_tls

HOUR = 3600.0


@dataclass
class WellKnownServer:
    """Answers /.well-known/matrix/server for every host name (the Host
    header says which one was asked)."""

    answers: dict[str, tuple[int, bytes, dict[str, str]]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def set(self, host: str, body: bytes | str, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self.answers[host] = (status, body.encode() if isinstance(body, str) else body, headers or {})

    def blueprint(self) -> Blueprint:
        bp = Blueprint(f"wk_{uuid.uuid4().hex[:8]}")

        async def well_known(request: Request) -> HTTPResponse:
            host = request.headers.get("host", "").rsplit(":", 1)[0]
            self.asked.append(host)
            status, body, headers = self.answers.get(host, (404, b"{}", {}))
            return raw_response(body, status=status, headers=headers, content_type="application/json")

        bp.add_route(well_known, "/.well-known/matrix/server", methods=["GET"])
        return bp


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Setup:
    client: FederationClient
    well_known: WellKnownServer
    clock: Clock
    srv: dict[str, list[SrvTarget]]
    srv_asked: list[str]
    serving: ServingApp

    def resolve(self, name: str) -> Any:
        return self.client.resolver.resolve(name)


def make_client(well_known_port: int, *, allow_private: bool = True, verify_tls: bool = False,
                addresses: dict[str, list[str]] | None = None) -> FederationClient:
    table = addresses or {}

    async def lookup(host: str, port: int) -> list[str]:
        if host in table:
            return table[host]
        if host.endswith(".test") or host == "localhost":
            return ["127.0.0.1"]
        return [host]

    return FederationClient(OUR_NAME, OUR_KEY, verify_tls=verify_tls, allow_private_addresses=allow_private,
                            address_lookup=lookup, well_known_port=well_known_port)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    wk = WellKnownServer()
    serving = await serve_tls(wk.blueprint(), tmp_path)
    client = make_client(serving.port)
    clock = Clock()
    srv: dict[str, list[SrvTarget]] = {}
    srv_asked: list[str] = []

    async def srv_lookup(name: str) -> list[SrvTarget]:
        srv_asked.append(name)
        return srv.get(name, [])

    client.resolver = ServerResolver(well_known=client.fetch_well_known, srv_lookup=srv_lookup, clock=clock)
    try:
        yield Setup(client, wk, clock, srv, srv_asked, serving)
    finally:
        await client.close()
        await serving.stop()


async def test_ip_literals_and_explicit_ports_need_no_lookups(setup: Setup) -> None:
    assert await setup.resolve("1.2.3.4") == ResolvedServer("1.2.3.4", 8448, "1.2.3.4", "1.2.3.4")
    assert await setup.resolve("[2001:db8::1]:99") == ResolvedServer("2001:db8::1", 99, "[2001:db8::1]:99",
                                                                     "2001:db8::1")
    assert await setup.resolve("host.test:1234") == ResolvedServer("host.test", 1234, "host.test:1234", "host.test")
    assert setup.well_known.asked == [] and setup.srv_asked == []


async def test_well_known_delegation_with_a_port(setup: Setup) -> None:
    setup.well_known.set("a.test", '{"m.server": "deleg.test:4321"}')
    assert await setup.resolve("a.test") == ResolvedServer("deleg.test", 4321, "deleg.test:4321", "deleg.test")
    setup.well_known.set("b.test", '{"m.server": "10.1.2.3"}')
    assert await setup.resolve("b.test") == ResolvedServer("10.1.2.3", 8448, "10.1.2.3", "10.1.2.3")
    assert setup.srv_asked == []


async def test_well_known_delegation_without_a_port_uses_srv_of_the_delegate(setup: Setup) -> None:
    setup.well_known.set("a.test", '{"m.server": "deleg.test"}')
    setup.srv["_matrix-fed._tcp.deleg.test"] = [SrvTarget("srvhost.test", 7000)]
    # The certificate and Host are the delegated name's, not the SRV target's.
    assert await setup.resolve("a.test") == ResolvedServer("srvhost.test", 7000, "deleg.test", "deleg.test")
    setup.well_known.set("b.test", '{"m.server": "old.test"}')
    setup.srv["_matrix._tcp.old.test"] = [SrvTarget("oldsrv.test", 7001)]
    assert await setup.resolve("b.test") == ResolvedServer("oldsrv.test", 7001, "old.test", "old.test")
    setup.well_known.set("c.test", '{"m.server": "plain.test"}')
    assert await setup.resolve("c.test") == ResolvedServer("plain.test", 8448, "plain.test", "plain.test")
    assert setup.srv_asked == ["_matrix-fed._tcp.deleg.test", "_matrix-fed._tcp.old.test", "_matrix._tcp.old.test",
                               "_matrix-fed._tcp.plain.test", "_matrix._tcp.plain.test"]


async def test_without_well_known_srv_of_the_name_then_8448(setup: Setup) -> None:
    setup.srv["_matrix-fed._tcp.a.test"] = [SrvTarget("fed.test", 9000)]
    assert await setup.resolve("a.test") == ResolvedServer("fed.test", 9000, "a.test", "a.test")
    setup.srv["_matrix._tcp.b.test"] = [SrvTarget("legacy.test", 9001)]
    assert await setup.resolve("b.test") == ResolvedServer("legacy.test", 9001, "b.test", "b.test")
    assert await setup.resolve("c.test") == ResolvedServer("c.test", 8448, "c.test", "c.test")


@pytest.mark.parametrize("body", ["not json", "[]", '{"m.server": 5}', '{"other": "x"}',
                                  '{"m.server": "bad host name"}'])
async def test_an_invalid_well_known_is_like_none(setup: Setup, body: str) -> None:
    setup.well_known.set("a.test", body)
    assert await setup.resolve("a.test") == ResolvedServer("a.test", 8448, "a.test", "a.test")
    assert setup.well_known.asked == ["a.test"]


async def test_well_known_answers_are_cached(setup: Setup) -> None:
    setup.well_known.set("a.test", '{"m.server": "deleg.test:1"}')
    await setup.resolve("a.test")
    setup.clock.now += 23 * HOUR
    await setup.resolve("a.test")
    assert setup.well_known.asked == ["a.test"]
    setup.clock.now += 2 * HOUR                       # past the 24 h default
    setup.well_known.set("a.test", '{"m.server": "moved.test:2"}')
    assert (await setup.resolve("a.test")).host == "moved.test"
    assert setup.well_known.asked == ["a.test", "a.test"]


async def test_cache_control_is_respected(setup: Setup) -> None:
    setup.well_known.set("a.test", '{"m.server": "deleg.test:1"}', headers={"Cache-Control": "max-age=60"})
    setup.well_known.set("b.test", '{"m.server": "deleg.test:1"}', headers={"Cache-Control": "no-store"})
    setup.well_known.set("c.test", '{"m.server": "deleg.test:1"}', headers={"Cache-Control": "max-age=99999999"})
    for _ in range(2):
        for name in ("a.test", "b.test", "c.test"):
            await setup.resolve(name)
        setup.clock.now += 61
    assert setup.well_known.asked.count("a.test") == 2
    assert setup.well_known.asked.count("b.test") == 2
    setup.clock.now += 49 * HOUR                      # capped at 48 h
    await setup.resolve("c.test")
    assert setup.well_known.asked.count("c.test") == 2


async def test_errors_are_cached_for_an_hour(setup: Setup) -> None:
    setup.well_known.set("a.test", "{}", status=500)
    await setup.resolve("a.test")
    setup.clock.now += 0.9 * HOUR
    setup.well_known.set("a.test", '{"m.server": "deleg.test:1"}')
    assert (await setup.resolve("a.test")).host == "a.test"
    setup.clock.now += 0.2 * HOUR
    assert (await setup.resolve("a.test")).host == "deleg.test"


async def test_well_known_redirects_are_followed(setup: Setup) -> None:
    setup.well_known.set("a.test", b"", status=302, headers={"Location": f"https://b.test:{setup.serving.port}"
                                                                         "/.well-known/matrix/server"})
    setup.well_known.set("b.test", '{"m.server": "deleg.test:5"}')
    assert (await setup.resolve("a.test")).host_header == "deleg.test:5"


async def test_a_request_reaches_a_delegated_server_signed_for_the_server_name(setup: Setup, tmp_path: Path) -> None:
    seen: dict[str, str] = {}
    fake = FakeKeyServer(valid_until_ts=DAY_MS)

    def record(bp: Blueprint) -> None:
        async def probe(request: Request) -> HTTPResponse:
            seen["host"] = request.headers.get("host", "")
            seen["authorization"] = request.headers.get("authorization", "")
            seen["uri"] = request.raw_url.decode()
            return raw_response(b'{"ok": true}', content_type="application/json")

        bp.add_route(probe, "/_matrix/federation/v1/probe", methods=["GET"])

    fake.extra_routes.append(record)
    serving = await serve_tls(fake.blueprint(), tmp_path)
    try:
        setup.well_known.set("a.test", f'{{"m.server": "key.test:{serving.port}"}}')
        assert await setup.client.get_json("a.test", "/_matrix/federation/v1/probe", {"x": "1 2"}) == {"ok": True}
        assert seen["host"] == f"key.test:{serving.port}"
        auth = parse_x_matrix_header(seen["authorization"])
        assert (auth.origin, auth.destination) == (OUR_NAME, "a.test")
        verify_request(auth, OUR_KEY.verify_key, method="GET", uri=seen["uri"], our_server_name="a.test")
        assert seen["uri"] == "/_matrix/federation/v1/probe?x=1+2"
    finally:
        await serving.stop()


async def test_private_addresses_are_refused_unless_allowed(setup: Setup) -> None:
    client = make_client(setup.serving.port, allow_private=False,
                         addresses={"inside.test": ["10.0.0.1", "fe80::1", "::1"]})
    try:
        with pytest.raises(DestinationRefused):
            await client.get_json(f"localhost:{setup.serving.port}", "/_matrix/key/v2/server")
        with pytest.raises(DestinationRefused):
            await client.get_json("inside.test:8448", "/_matrix/key/v2/server")
    finally:
        await client.close()


async def test_certificates_are_checked_by_default(setup: Setup) -> None:
    client = make_client(setup.serving.port, verify_tls=True)
    try:
        with pytest.raises(FederationError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get_json(f"localhost:{setup.serving.port}", "/_matrix/key/v2/server")
    finally:
        await client.close()


async def test_error_statuses_raise_with_the_body(setup: Setup) -> None:
    from federationapi.client import HttpResponseError

    with pytest.raises(HttpResponseError) as caught:
        await setup.client.get_json(f"localhost:{setup.serving.port}", "/_matrix/federation/v1/nothing")
    assert caught.value.status == 404
    assert caught.value.json["errcode"] == "M_UNRECOGNIZED"
