"""The client side of the benchmarks: plain Matrix client-server calls over
httpx, the same for every server under test."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

PASSWORD = "bench-password-123"
T = TypeVar("T")


@dataclass
class Account:
    user_id: str
    access_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def new_client(base_url: str, connections: int = 100) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=300,
                             limits=httpx.Limits(max_connections=connections,
                                                 max_keepalive_connections=connections))


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


async def bounded(concurrency: int, jobs: Iterable[Callable[[], Awaitable[T]]]) -> list[T]:
    """Runs ``jobs`` with at most ``concurrency`` at a time; results in order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(job: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await job()

    return list(await asyncio.gather(*(one(job) for job in jobs)))


def _checked(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise RuntimeError(f"{response.request.method} {response.request.url.path}: "
                           f"{response.status_code} {response.text[:300]}")
    return response.json()


async def register(http: httpx.AsyncClient, localpart: str) -> Account:
    auth: dict[str, str] = {"type": "m.login.dummy"}
    body: dict[str, Any] = {"username": localpart, "password": PASSWORD, "auth": auth}
    response = await http.post("/_matrix/client/v3/register", json=body)
    if response.status_code == 401:  # a server that insists on the two-step flow
        auth["session"] = response.json()["session"]
        response = await http.post("/_matrix/client/v3/register", json=body)
    data = _checked(response)
    return Account(data["user_id"], data["access_token"])


async def login(http: httpx.AsyncClient, user_id: str) -> Account:
    """A new device (and access token) for ``user_id``."""
    data = _checked(await http.post("/_matrix/client/v3/login", json={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id},
        "password": PASSWORD}))
    return Account(user_id, data["access_token"])


async def create_room(http: httpx.AsyncClient, account: Account, **body: Any) -> str:
    data = _checked(await http.post("/_matrix/client/v3/createRoom", json=body, headers=account.headers))
    room_id: str = data["room_id"]
    return room_id


async def join(http: httpx.AsyncClient, account: Account, room_id: str) -> None:
    _checked(await http.post(f"/_matrix/client/v3/join/{room_id}", json={}, headers=account.headers))


async def send_text(http: httpx.AsyncClient, account: Account, room_id: str, body: str) -> str:
    data = _checked(await http.put(
        f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{uuid.uuid4().hex}",
        json={"msgtype": "m.text", "body": body}, headers=account.headers))
    event_id: str = data["event_id"]
    return event_id


async def sync(http: httpx.AsyncClient, account: Account, **params: str) -> Any:
    return _checked(await http.get("/_matrix/client/v3/sync", params=params, headers=account.headers))


async def timed_sync(http: httpx.AsyncClient, account: Account, **params: str) -> tuple[float, Any]:
    started = time.perf_counter()
    body = await sync(http, account, **params)
    return time.perf_counter() - started, body


async def settled_sync(http: httpx.AsyncClient, account: Account, rooms: int) -> Any:
    """A full /sync once it shows ``rooms`` joined rooms (a read model may
    trail the writes by a moment)."""
    deadline = time.monotonic() + 300
    while True:
        body = await sync(http, account, timeout="0", filter=timeline_filter(1, fresh=True))
        joined = len(body.get("rooms", {}).get("join", {}))
        if joined >= rooms:
            return body
        if time.monotonic() > deadline:
            raise RuntimeError(f"/sync shows {joined} rooms, expected {rooms}")
        await asyncio.sleep(0.2)


def timeline_filter(limit: int, *, lazy_members: bool = False, fresh: bool = False) -> str:
    """An inline /sync filter. ``fresh``: one no other request has used, so
    that a server's cache of recent /sync answers (Synapse keeps each for a
    while) cannot answer a poll with what it answered before."""
    timeline: dict[str, Any] = {"limit": limit}
    if fresh:
        timeline["not_types"] = [f"bench.nonce.{uuid.uuid4().hex}"]
    room: dict[str, Any] = {"timeline": timeline}
    if lazy_members:
        room["state"] = {"lazy_load_members": True}
    return json.dumps({"room": room})


async def messages(http: httpx.AsyncClient, account: Account, room_id: str, from_token: str,
                   limit: int) -> Any:
    return _checked(await http.get(f"/_matrix/client/v3/rooms/{room_id}/messages",
                                   params={"dir": "b", "from": from_token, "limit": str(limit)},
                                   headers=account.headers))
