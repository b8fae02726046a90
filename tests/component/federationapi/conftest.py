"""Fixtures of the federation API's component tests: fake remote servers
served over TLS by local Sanic apps, and the real FederationClient, KeyRing
and storage (SQLite) talking to them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common.config import Config, OldVerifyKey
from common.http import ServingApp, json_response, make_app, serve_app
from common.storage import database_url_for, open_database
from federationapi.client import FederationClient
from federationapi.keyring import DirectKeyFetcher, KeyFetcher, KeyRing
from federationapi.storage.database import FederationDatabase
from homeserver.tls import ensure_self_signed_certificate
from matrixlib.signing import SigningKey, encode_verify_key, generate_signing_key, sign_json

OUR_NAME = "us.test"
OUR_KEY = generate_signing_key("ours")
DAY_MS = 24 * 3600 * 1000


async def serve_tls(blueprint: Blueprint, cert_dir: Path) -> ServingApp:
    """Serves the blueprint over TLS (a self-signed certificate for
    localhost) on a free loopback port."""
    import ssl

    cert, key = ensure_self_signed_certificate(cert_dir, "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    app = make_app(f"fake_{uuid.uuid4().hex[:12]}", [blueprint])
    return await serve_app(app, "127.0.0.1:0", ssl=context)


@dataclass
class FakeKeyServer:
    """A remote homeserver's ``/_matrix/key/v2/server``; what it answers is
    set by the test."""

    server_name: str = ""
    key: SigningKey = field(default_factory=lambda: generate_signing_key("k1"))
    valid_until_ts: int = 0
    old_keys: dict[str, OldVerifyKey] = field(default_factory=dict)
    # Sign the answer with this key instead (a bad self-signature).
    sign_with: SigningKey | None = None
    answer_server_name: str | None = None
    fail: bool = False
    requests: int = 0
    extra_routes: list[Callable[[Blueprint], None]] = field(default_factory=list)

    def response(self) -> dict[str, Any]:
        body = {
            "server_name": self.answer_server_name or self.server_name,
            "valid_until_ts": self.valid_until_ts,
            "verify_keys": {self.key.key_id: {"key": encode_verify_key(self.key.verify_key)}},
            "old_verify_keys": {k: {"key": o.key, "expired_ts": o.expired_ts} for k, o in self.old_keys.items()},
        }
        signer = self.sign_with or self.key
        signed = sign_json(body, self.server_name, signer)
        if self.sign_with is not None:
            # Claim the real key ID, with a signature by another key.
            sigs = signed["signatures"][self.server_name]
            sigs[self.key.key_id] = sigs.pop(signer.key_id)
        return signed

    def blueprint(self) -> Blueprint:
        bp = Blueprint(f"fake_keys_{uuid.uuid4().hex[:8]}")

        async def server_keys(request: Request) -> HTTPResponse:
            self.requests += 1
            if self.fail:
                return json_response({"errcode": "M_UNKNOWN", "error": "down"}, status=500)
            return json_response(self.response())

        bp.add_route(server_keys, "/_matrix/key/v2/server", methods=["GET"])
        for add in self.extra_routes:
            add(bp)
        return bp


class Clock:
    def __init__(self, now: int = 1_700_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@dataclass
class Harness:
    tmp_path: Path
    clock: Clock
    client: FederationClient
    database: FederationDatabase
    servings: list[ServingApp] = field(default_factory=list)

    async def start(self, fake: FakeKeyServer) -> str:
        """Serves ``fake`` and names it after its port."""
        serving = await serve_tls(fake.blueprint(), self.tmp_path)
        self.servings.append(serving)
        fake.server_name = f"localhost:{serving.port}"
        return fake.server_name

    def keyring(self, fetchers: list[KeyFetcher] | None = None, **kwargs: Any) -> KeyRing:
        kwargs.setdefault("refetch_interval_ms", 0)
        return KeyRing(OUR_NAME, OUR_KEY, self.database,
                       fetchers if fetchers is not None else [DirectKeyFetcher(self.client)],
                       clock=self.clock, **kwargs)


def make_config(tmp_path: Path) -> Config:
    return Config(server_name=OUR_NAME, data_dir=tmp_path, signing_key_path=tmp_path / "signing.key",
                  federation_verify_tls=False, federation_allow_private_addresses=True)


#: Runs a test once on SQLite and once on PostgreSQL: the ``harness`` and ``env``
#: fixtures then open the database of the suite's ``database_url`` (tests/conftest.py).
on_each_database = pytest.mark.usefixtures("database_url")


def federation_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database a ``harness``/``env`` opens: the test's ``database_url`` for a test
    ``on_each_database``, else a SQLite file in the test's directory."""
    if "database_url" in request.fixturenames:
        url: str = request.getfixturevalue("database_url")
        return url
    return database_url_for("federationapi", postgres_url=None, data_dir=tmp_path)


@pytest.fixture
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """On SQLite, or on each database for a test ``on_each_database``."""
    db = await open_database(federation_database_url(request, tmp_path), "federationapi")
    client = FederationClient(OUR_NAME, OUR_KEY, verify_tls=False, allow_private_addresses=True)
    h = Harness(tmp_path, Clock(), client, FederationDatabase(db))
    try:
        yield h
    finally:
        for serving in h.servings:
            await serving.stop()
        await client.close()
        await db.close()
