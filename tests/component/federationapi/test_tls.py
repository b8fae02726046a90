"""Certificate checks on outgoing requests: a server whose certificate (from
a test CA) names it is reached; the same address under another name is
refused, so the check is made for the server name, not the address."""

from __future__ import annotations

import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.http import ServingApp, make_app, serve_app
from federationapi.client import FederationClient, FederationError
from tests.component.federationapi.conftest import DAY_MS, OUR_KEY, OUR_NAME, FakeKeyServer


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca_and_leaf(directory: Path, dns_name: str) -> tuple[Path, Path, Path]:
    """A CA, and a certificate for ``dns_name`` (subjectAltName) it signed."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Test CA",
            "-keyout", "ca.key", "-out", "ca.crt", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign", cwd=directory)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={dns_name}", "-keyout", "leaf.key",
            "-out", "leaf.csr", cwd=directory)
    (directory / "ext.cnf").write_text(f"subjectAltName=DNS:{dns_name}\n")
    openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-out", "leaf.crt", "-extfile", "ext.cnf", cwd=directory)
    return directory / "ca.crt", directory / "leaf.crt", directory / "leaf.key"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[ServingApp, Path, FakeKeyServer]]:
    ca, cert, key = make_ca_and_leaf(tmp_path, "keys.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    fake = FakeKeyServer(valid_until_ts=DAY_MS)
    serving = await serve_app(make_app(f"tls_{uuid.uuid4().hex[:8]}", [fake.blueprint()]), "127.0.0.1:0",
                              ssl=context)
    fake.server_name = f"keys.test:{serving.port}"
    try:
        yield serving, ca, fake
    finally:
        await serving.stop()


async def loopback(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]


async def test_the_certificate_is_checked_for_the_server_name(
        served: tuple[ServingApp, Path, FakeKeyServer]) -> None:
    serving, ca, fake = served
    client = FederationClient(OUR_NAME, OUR_KEY, allow_private_addresses=True, address_lookup=loopback,
                              ca_file=str(ca))
    try:
        answer = await client.get_json(f"keys.test:{serving.port}", "/_matrix/key/v2/server")
        assert answer["server_name"] == fake.server_name
        with pytest.raises(FederationError, match="Hostname mismatch"):
            await client.get_json(f"other.test:{serving.port}", "/_matrix/key/v2/server")
        with pytest.raises(FederationError):
            await client.get_json(f"127.0.0.1:{serving.port}", "/_matrix/key/v2/server")
    finally:
        await client.close()
