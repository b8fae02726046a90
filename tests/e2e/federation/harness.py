"""Federating peers on loopback for the interop suite, and real users on them.

Two pairings: two Myelin single processes (each its own data directory,
SQLite databases and self-signed TLS certificate, federation on the port of
its server name ``localhost:P``), and one Myelin with one Synapse (from
PyPI, in bench/.work/synapse-venv, with the settings of
shared/INTEROP-NOTES.md). Both are started once per test module
(``myelin_pair``, ``myelin_and_synapse``) and shared by its tests, which
register fresh users so they do not see each other's rooms.

``Peer`` is what a scenario needs to know of a server; ``User`` is one
account on it, driven through matrix-nio where nio's parser copes (login,
sends, state, typing, receipts, to-device) and raw JSON over httpx where it
does not (``/sync`` with v12 room IDs, stripped invite state, keys).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import nio
import pytest
import yaml

from bench.synapse import ensure_synapse_installed
from homeserver.tls import ensure_self_signed_certificate
from tests.e2e.harness import RunningHomeserver, free_port, start_monolith

V3 = "/_matrix/client/v3"
PASSWORD = "correct horse battery staple"
SYNC_FILTER = json.dumps({"room": {"timeline": {"limit": 500}}})


@dataclass
class Peer:
    """A federating homeserver under test."""

    kind: str  # "myelin" or "synapse"
    server_name: str
    client_url: str
    federation_port: int
    stop: Callable[[], None]
    log_path: Path

    def log_tail(self, lines: int = 80) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


# -- Myelin ------------------------------------------------------------------------


def start_myelin_peer(workdir: Path) -> Peer:
    """A Myelin single process whose server name is localhost:<federation port>."""
    port = free_port()
    server_name = f"localhost:{port}"
    hs = start_monolith(workdir, "--server-name", server_name, "--federation-port", str(port),
                        "--insecure-federation-for-tests")
    return myelin_peer(hs, server_name, port)


def myelin_peer(hs: RunningHomeserver, server_name: str, federation_port: int) -> Peer:
    return Peer("myelin", server_name, hs.base_url, federation_port, hs.stop, hs.workdir / "monolith.log")


# -- Synapse -----------------------------------------------------------------------

_UNLIMITED = {"per_second": 100000, "burst_count": 100000}


@dataclass
class SynapsePeer:
    server_name: str
    federation_port: int
    client_url: str
    process: subprocess.Popen[bytes]
    workdir: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def as_peer(self) -> Peer:
        return Peer("synapse", self.server_name, self.client_url, self.federation_port, self.stop,
                    self.workdir / "synapse.log")


def synapse_overrides(workdir: Path, federation_port: int, client_port: int) -> dict[str, Any]:
    """Synapse's settings for a loopback peer (shared/INTEROP-NOTES.md): TLS
    on the federation port with a self-signed pair, peers' certificates not
    checked, loopback allowed, no trusted key servers, open registration,
    public rooms over federation, rate limits out of the way."""
    cert, key = ensure_self_signed_certificate(workdir, "localhost")
    overrides: dict[str, Any] = {
        "listeners": [
            {"port": federation_port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": True,
             "resources": [{"names": ["federation"], "compress": False}]},
            {"port": client_port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
             "resources": [{"names": ["client"], "compress": False}]},
        ],
        "tls_certificate_path": str(cert),
        "tls_private_key_path": str(key),
        "federation_verify_certificates": False,
        "ip_range_blacklist": [],
        "ip_range_whitelist": ["127.0.0.1"],
        "trusted_key_servers": [],
        "database": {"name": "sqlite3", "args": {"database": str(workdir / "homeserver.db")}},
        "enable_registration": True,
        "enable_registration_without_verification": True,
        "bcrypt_rounds": 4,
        "report_stats": False,
        "presence": {"enabled": True},
        "allow_public_rooms_over_federation": True,
        "room_list_publication_rules": [{"action": "allow"}],
        "alias_creation_rules": [{"action": "allow"}],
        "enable_media_repo": True,
        "url_preview_enabled": False,
    }
    for name in ("rc_message", "rc_registration", "rc_room_creation", "rc_presence", "rc_admin_redaction",
                 "rc_3pid_validation", "rc_third_party_invite", "rc_key_requests", "rc_media_create",
                 "rc_delayed_event_mgmt", "rc_reports", "rc_joins_per_room"):
        overrides[name] = _UNLIMITED
    # Sections with nested shapes take the nested form.
    overrides["rc_login"] = {"address": _UNLIMITED, "account": _UNLIMITED, "failed_attempts": _UNLIMITED}
    overrides["rc_joins"] = {"local": _UNLIMITED, "remote": _UNLIMITED}
    overrides["rc_invites"] = {"per_room": _UNLIMITED, "per_user": _UNLIMITED, "per_issuer": _UNLIMITED}
    overrides["rc_federation"] = {"window_size": 1000, "sleep_limit": 100000, "sleep_delay": 1,
                                  "reject_limit": 100000, "concurrent": 100000}
    return overrides


def start_synapse_peer(workdir: Path) -> SynapsePeer:
    """Synapse with its federation listener on TLS on the port of its server
    name, and plain HTTP for clients on another port."""
    python = ensure_synapse_installed()
    workdir.mkdir(parents=True, exist_ok=True)
    federation_port, client_port = free_port(), free_port()
    server_name = f"localhost:{federation_port}"
    config = workdir / "homeserver.yaml"
    subprocess.run([str(python), "-m", "synapse.app.homeserver", "--server-name", server_name,
                    "--config-path", str(config), "--generate-config", "--report-stats=no",
                    "--data-directory", str(workdir)], check=True, capture_output=True, cwd=workdir)
    override_path = workdir / "overrides.yaml"
    override_path.write_text(yaml.safe_dump(synapse_overrides(workdir, federation_port, client_port)))
    log = (workdir / "synapse.log").open("ab")
    process = subprocess.Popen([str(python), "-m", "synapse.app.homeserver", "-c", str(config),
                                "-c", str(override_path)], cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    peer = SynapsePeer(server_name, federation_port, f"http://127.0.0.1:{client_port}", process, workdir)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"synapse exited:\n{(workdir / 'synapse.log').read_text()[-3000:]}")
        try:
            if httpx.get(peer.client_url + "/_matrix/client/versions", timeout=2).status_code == 200:
                return peer
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    peer.stop()
    raise RuntimeError("synapse did not start in 120 s")


# -- module-scoped pairings ----------------------------------------------------------


def _start_both(first: Callable[[], Peer], second: Callable[[], Peer]) -> tuple[Peer, Peer]:
    """Starts two peers at once (each start mostly waits on its process);
    if either fails, the other is stopped."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(first), pool.submit(second)]
        wait(futures)
    failures = [failure for future in futures if (failure := future.exception()) is not None]
    if failures:
        for future in futures:
            if future.exception() is None:
                future.result().stop()
        raise failures[0]
    return futures[0].result(), futures[1].result()


def _stop_both(first: Peer, second: Peer) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(first.stop), pool.submit(second.stop)]:
            future.result()


@pytest.fixture(scope="module")
def myelin_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Peer, Peer]]:
    """Two Myelin single processes that federate with each other."""
    workdir = tmp_path_factory.mktemp("myelin-pair")
    first, second = _start_both(lambda: start_myelin_peer(workdir / "a"), lambda: start_myelin_peer(workdir / "b"))
    try:
        yield first, second
    finally:
        _stop_both(first, second)


@pytest.fixture(scope="module")
def myelin_and_synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Peer, Peer]]:
    """One Myelin single process and one Synapse that federate with each other."""
    workdir = tmp_path_factory.mktemp("myelin-synapse")
    myelin, synapse = _start_both(lambda: start_myelin_peer(workdir / "myelin"),
                                  lambda: start_synapse_peer(workdir / "synapse").as_peer())
    try:
        yield myelin, synapse
    finally:
        _stop_both(myelin, synapse)


# -- users -------------------------------------------------------------------------


@dataclass
class SyncView:
    """What a user has seen through /sync so far, accumulated across calls."""

    since: str | None = None
    timeline: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    state: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    ephemeral: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    invites: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    left: set[str] = field(default_factory=set)
    to_device: list[dict[str, Any]] = field(default_factory=list)
    device_lists_changed: set[str] = field(default_factory=set)

    def absorb(self, body: dict[str, Any]) -> None:
        self.since = body["next_batch"]
        rooms = body.get("rooms", {})
        for room_id, room in rooms.get("join", {}).items():
            self.left.discard(room_id)
            self.invites.pop(room_id, None)
            self.timeline.setdefault(room_id, []).extend(room.get("timeline", {}).get("events", []))
            self.state.setdefault(room_id, []).extend(room.get("state", {}).get("events", []))
            self.ephemeral.setdefault(room_id, []).extend(room.get("ephemeral", {}).get("events", []))
        for room_id, room in rooms.get("invite", {}).items():
            self.invites[room_id] = room.get("invite_state", {}).get("events", [])
        for room_id, room in rooms.get("leave", {}).items():
            self.left.add(room_id)
            self.invites.pop(room_id, None)
            self.timeline.setdefault(room_id, []).extend(room.get("timeline", {}).get("events", []))
        self.to_device.extend(body.get("to_device", {}).get("events", []))
        self.device_lists_changed.update(body.get("device_lists", {}).get("changed", []))

    def messages(self, room_id: str) -> list[dict[str, Any]]:
        return [e for e in self.timeline.get(room_id, []) if e["type"] == "m.room.message"]

    def bodies(self, room_id: str) -> list[str]:
        return [e["content"].get("body", "") for e in self.messages(room_id)]

    def membership_of(self, room_id: str, user_id: str) -> str | None:
        """The last membership of user_id seen in the room's timeline or state."""
        found: str | None = None
        for event in [*self.state.get(room_id, []), *self.timeline.get(room_id, [])]:
            if event["type"] == "m.room.member" and event.get("state_key") == user_id:
                found = event["content"].get("membership")
        return found


class User:
    """One account on a peer: a matrix-nio client plus raw JSON requests."""

    def __init__(self, peer: Peer, client: nio.AsyncClient) -> None:
        self.peer = peer
        self.nio = client
        self.user_id: str = client.user_id
        self.device_id: str = client.device_id
        self.view = SyncView()
        self.http = httpx.AsyncClient(base_url=peer.client_url, timeout=90,
                                      headers={"Authorization": f"Bearer {client.access_token}"})

    async def close(self) -> None:
        await self.http.aclose()
        await self.nio.close()

    async def request(self, method: str, path: str, body: Any = None,
                      params: dict[str, str] | None = None) -> httpx.Response:
        return await self.http.request(method, path, json=body, params=params)

    async def ok(self, method: str, path: str, body: Any = None,
                 params: dict[str, str] | None = None) -> dict[str, Any]:
        """The JSON of a request that must answer 200."""
        response = await self.request(method, path, body, params)
        assert response.status_code == 200, (
            f"{method} {path} on {self.peer.kind}: {response.status_code} {response.text}")
        result: dict[str, Any] = response.json()
        return result

    async def sync_once(self, timeout_ms: int = 1000) -> dict[str, Any]:
        params = {"timeout": str(timeout_ms), "filter": SYNC_FILTER}
        if self.view.since:
            params["since"] = self.view.since
        body = await self.ok("GET", f"{V3}/sync", params=params)
        self.view.absorb(body)
        return body

    async def sync_until(self, done: Callable[[SyncView], bool], what: str, timeout: float = 30.0) -> SyncView:
        """Syncs until ``done(view)`` holds; fails naming ``what`` after ``timeout`` s."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not done(self.view):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{self.user_id} on {self.peer.kind} never saw {what}")
            await self.sync_once()
        return self.view

    async def create_room(self, **body: Any) -> str:
        room_id: str = (await self.ok("POST", f"{V3}/createRoom", body))["room_id"]
        return room_id

    async def send_text(self, room_id: str, text: str) -> str:
        sent = await self.nio.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": text})
        assert isinstance(sent, nio.RoomSendResponse), f"send on {self.peer.kind}: {sent}"
        event_id: str = sent.event_id
        return event_id

    async def put_state(self, room_id: str, event_type: str, content: dict[str, Any], state_key: str = "") -> str:
        sent = await self.nio.room_put_state(room_id, event_type, content, state_key)
        assert isinstance(sent, nio.RoomPutStateResponse), f"state on {self.peer.kind}: {sent}"
        event_id: str = sent.event_id
        return event_id

    async def get_state(self, room_id: str, event_type: str, state_key: str = "") -> httpx.Response:
        return await self.request("GET", f"{V3}/rooms/{quote(room_id)}/state/{event_type}/{quote(state_key)}")

    async def join(self, room_id_or_alias: str, via: list[str] | None = None) -> str:
        """Joins by ID or alias (through ``via`` servers), answers the room ID."""
        params = httpx.QueryParams([("server_name", server) for server in via or []])
        response = await self.http.post(f"{V3}/join/{quote(room_id_or_alias)}", json={}, params=params)
        assert response.status_code == 200, f"join on {self.peer.kind}: {response.status_code} {response.text}"
        room_id: str = response.json()["room_id"]
        return room_id

    async def invite(self, room_id: str, user_id: str) -> None:
        invited = await self.nio.room_invite(room_id, user_id)
        assert isinstance(invited, nio.RoomInviteResponse), f"invite on {self.peer.kind}: {invited}"

    async def leave(self, room_id: str) -> None:
        left = await self.nio.room_leave(room_id)
        assert isinstance(left, nio.RoomLeaveResponse), f"leave on {self.peer.kind}: {left}"

    async def room_messages(self, room_id: str, *, limit: int = 30, max_pages: int = 50) -> list[dict[str, Any]]:
        """Every event /messages gives backwards from now, newest first."""
        events: list[dict[str, Any]] = []
        token: str | None = None
        for _ in range(max_pages):
            params = {"dir": "b", "limit": str(limit)}
            if token:
                params["from"] = token
            page = await self.ok("GET", f"{V3}/rooms/{quote(room_id)}/messages", params=params)
            events.extend(page["chunk"])
            if not page.get("end") or not page["chunk"]:
                break
            token = page["end"]
        return events

    async def joined_members(self, room_id: str) -> set[str]:
        body = await self.ok("GET", f"{V3}/rooms/{quote(room_id)}/joined_members")
        return set(body["joined"])


async def register_user(peer: Peer, prefix: str) -> User:
    """A new account on the peer (both steps of the m.login.dummy flow, as
    Synapse wants), logged in with matrix-nio."""
    localpart = f"{prefix}{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=peer.client_url, timeout=60) as http:
        body: dict[str, Any] = {"username": localpart, "password": PASSWORD, "inhibit_login": True,
                                "auth": {"type": "m.login.dummy"}}
        r = await http.post(f"{V3}/register", json=body)
        if r.status_code == 401:
            body["auth"]["session"] = r.json()["session"]
            r = await http.post(f"{V3}/register", json=body)
        assert r.status_code == 200, f"register on {peer.kind}: {r.text}"
    client = nio.AsyncClient(peer.client_url, localpart)
    logged_in = await client.login(PASSWORD, device_name=f"{localpart}'s laptop")
    assert isinstance(logged_in, nio.LoginResponse), f"login on {peer.kind}: {logged_in}"
    user = User(peer, client)
    # From here on every /sync is incremental, so rooms left show up in them.
    await user.sync_once(timeout_ms=0)
    return user
