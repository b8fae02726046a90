"""Two Myelin single processes with federation ports: each fetches the
other's keys over TLS (through its notary API, which fetches directly from
the other server and re-signs), and keeps serving them once the other is
gone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from matrixlib.signing import decode_verify_key, verify_json
from tests.e2e.harness import RunningHomeserver, free_port, start_monolith

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
