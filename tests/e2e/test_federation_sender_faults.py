"""Faults of the federation sender, with a real Myelin process (the single
process) and a fake remote server in the test.

The fake server (TLS on loopback, its own signing key) joins a room of a
Myelin user over federation (make_join/send_join), then records every
``/send`` transaction it accepts, counting a transaction ID seen again as
the same transaction, as a receiver must. Myelin is killed with SIGKILL
during a burst of messages and started again: every event of the room
reaches the remote exactly once."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast
from urllib.parse import quote

import httpx
import pytest
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common.http import ServingApp, json_response
from federationapi.client import FederationClient
from federationapi.internal.context import FederationContext
from federationapi.internal.membership import event_from_template, make_membership, send_membership
from tests.component.federationapi.conftest import FakeKeyServer, serve_tls
from tests.e2e.harness import RunningHomeserver, free_port, start_monolith

pytestmark = pytest.mark.e2e
V3 = "/_matrix/client/v3"
# Each /send is answered this long after it was recorded, so that a kill
# often finds a transaction the remote has but the sender has not seen answered.
SEND_DELAY_SECONDS = 0.2


@dataclass
class RecordingRemote:
    keys: FakeKeyServer = field(default_factory=FakeKeyServer)
    serving: ServingApp | None = None
    txn_ids_seen: list[str] = field(default_factory=list)
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def server_name(self) -> str:
        return self.keys.server_name

    def add_send_route(self, bp: Blueprint) -> None:
        async def send(request: Request, txn_id: str) -> HTTPResponse:
            self.txn_ids_seen.append(txn_id)
            self.accepted.setdefault(txn_id, request.json)
            self.changed.set()
            await asyncio.sleep(SEND_DELAY_SECONDS)
            return json_response({"pdus": {}})

        bp.add_route(send, "/_matrix/federation/v1/send/<txn_id>", methods=["PUT"])

    def pdu_counts(self) -> Counter[str]:
        """How many accepted transactions carried each event (by its body's
        marker: event IDs of v3+ rooms are not in the PDU)."""
        return Counter(str(pdu.get("content", {}).get("body")) for body in self.accepted.values()
                       for pdu in body.get("pdus", []) if pdu.get("type") == "m.room.message")

    async def wait_for(self, condition: Any, timeout: float = 60.0) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def remote(tmp_path: Path) -> AsyncIterator[RecordingRemote]:
    fake = RecordingRemote()
    fake.keys.valid_until_ts = int(time.time() * 1000) + 24 * 3600 * 1000
    fake.keys.extra_routes.append(fake.add_send_route)
    fake.serving = await serve_tls(fake.keys.blueprint(), tmp_path)
    fake.keys.server_name = f"localhost:{fake.serving.port}"
    yield fake
    await fake.serving.stop()


@dataclass
class Deployment:
    hs: RunningHomeserver
    # The process that runs the federation sender.
    sender_process: str


@pytest.fixture
def myelin(tmp_path: Path) -> Iterator[Deployment]:
    port = free_port()
    hs = start_monolith(tmp_path / "myelin", "--server-name", f"localhost:{port}", "--federation-port", str(port),
                        "--insecure-federation-for-tests")
    # Its name is the federation port's (the harness names it after the client port).
    hs.server_name = f"localhost:{port}"
    try:
        yield Deployment(hs, "monolith")
    finally:
        hs.stop()


async def join_from_remote(remote: RecordingRemote, myelin_name: str, room_id: str, user_id: str) -> None:
    client = FederationClient(remote.server_name, remote.keys.key, verify_tls=False, allow_private_addresses=True)
    context = cast(FederationContext, SimpleNamespace(client=client, server_name=remote.server_name,
                                                      signing_key=remote.keys.key))
    try:
        template = await make_membership(context, myelin_name, "join", room_id, user_id, "join", versions=True)
        event = event_from_template(context, template, {"membership": "join"})
        await send_membership(context, myelin_name, "join", event)
    finally:
        await client.close()


def restart(deployment: Deployment) -> None:
    name = deployment.sender_process
    deployment.hs.start(name, *([] if name == "monolith" else [name]))
    deployment.hs.wait_ready(name, deployment.hs.ports[name], http=True)


async def test_kill_9_during_a_burst_loses_nothing_and_sends_nothing_twice(
        myelin: Deployment, remote: RecordingRemote) -> None:
    """The process running the sender is killed right after the burst's last send."""
    hs = myelin.hs
    async with httpx.AsyncClient(base_url=hs.base_url, timeout=30) as http:
        r = await http.post(f"{V3}/register", json={"username": "alice", "password": "a-long-password",
                                                     "auth": {"type": "m.login.dummy"}})
        assert r.status_code == 200, r.text
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        r = await http.post(f"{V3}/createRoom", headers=headers, json={"preset": "public_chat"})
        assert r.status_code == 200, r.text
        room_id = r.json()["room_id"]
        await join_from_remote(remote, hs.server_name, room_id, f"@bob:{remote.server_name}")

        async def send(body: str) -> None:
            r = await http.put(f"{V3}/rooms/{quote(room_id)}/send/m.room.message/{uuid.uuid4().hex}",
                               headers=headers, json={"msgtype": "m.text", "body": body})
            assert r.status_code == 200, r.text

        await send("warm-up")
        await remote.wait_for(lambda: "warm-up" in remote.pdu_counts())
        # The burst, with the process killed in the middle of it.
        sent: list[str] = []
        for i in range(40):
            await send(f"burst-{i}")
            sent.append(f"burst-{i}")
        hs.kill(myelin.sender_process, signal.SIGKILL)
        delivered_before_kill = set(remote.pdu_counts())

    await asyncio.to_thread(restart, myelin)
    async with httpx.AsyncClient(base_url=hs.base_url, timeout=30) as http:
        for i in range(5):
            r = await http.put(f"{V3}/rooms/{quote(room_id)}/send/m.room.message/{uuid.uuid4().hex}",
                               headers=headers, json={"msgtype": "m.text", "body": f"after-{i}"})
            assert r.status_code == 200, r.text
            sent.append(f"after-{i}")
    expected = {"warm-up", *sent}
    # The kill came before the burst was delivered: the restart had to finish it.
    assert not expected <= delivered_before_kill
    await remote.wait_for(lambda: expected <= set(remote.pdu_counts()))
    counts = remote.pdu_counts()
    assert set(counts) == expected
    assert all(n == 1 for n in counts.values()), {b: n for b, n in counts.items() if n != 1}
    print(f"{len(remote.txn_ids_seen)} /send requests, {len(remote.accepted)} transactions, "
          f"{len(delivered_before_kill)} of {len(expected)} events delivered before the kill")
