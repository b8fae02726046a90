"""Rate limits: per user for sends, joins, invites and room creation; per
IP for login and registration; per account for logins and failed logins.
Each refusal is 429 M_LIMIT_EXCEEDED with retry_after_ms and changes
nothing."""

from __future__ import annotations

import httpx
import pytest

from clientapi.internal.ratelimit import TokenBucketLimiter
from common import errors
from common.config import RateLimit, RateLimits
from tests.component.clientapi.conftest import Harness, HarnessFactory

V3 = "/_matrix/client/v3"
SLOW = RateLimit(per_second=0.01, burst=2)


def limits(**chosen: RateLimit) -> RateLimits:
    generous = RateLimit(per_second=1000, burst=1000)
    return RateLimits(enabled=True, send_per_user=chosen.get("send", generous),
                      login_per_ip=chosen.get("login", generous),
                      register_per_ip=chosen.get("register", generous),
                      login_per_account=chosen.get("login_account", generous),
                      failed_login_per_account=chosen.get("failed_login", generous),
                      join_per_user=chosen.get("join", generous),
                      invite_per_user=chosen.get("invite", generous),
                      room_creation_per_user=chosen.get("room_creation", generous))


def assert_limited(response: httpx.Response) -> None:
    assert (response.status_code, response.json()["errcode"]) == (429, "M_LIMIT_EXCEEDED"), response.text
    assert response.json()["retry_after_ms"] > 0


async def test_send_limit_per_user(make_harness: HarnessFactory) -> None:
    harness = await make_harness(rate_limits=limits(send=RateLimit(per_second=0.01, burst=3)))
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    room_id = await harness.create_room(alice, preset="public_chat")  # one token
    statuses = [(await harness.send(alice, room_id, {"body": str(i)}, f"t{i}")).status_code for i in range(3)]
    assert statuses == [200, 200, 429]
    response = await harness.send(alice, room_id, {"body": "again"}, "t9")
    assert response.json()["errcode"] == "M_LIMIT_EXCEEDED"
    assert response.json()["retry_after_ms"] > 0
    # A retry of a transaction that already succeeded is not a new send.
    assert (await harness.send(alice, room_id, {"body": "0"}, "t0")).status_code == 200
    # Bob has his own bucket.
    join = await harness.http.post(f"{V3}/rooms/{room_id}/join", json={}, headers=bob.headers)
    assert join.status_code == 200


async def test_login_limit_per_ip(make_harness: HarnessFactory) -> None:
    harness = await make_harness(rate_limits=limits(login=SLOW))
    await harness.register("carol", "pw")
    body = {"type": "m.login.password", "user": "carol", "password": "wrong"}
    statuses = [(await harness.http.post(f"{V3}/login", json=body)).status_code for _ in range(3)]
    assert statuses == [403, 403, 429]


async def test_register_limit_per_ip(make_harness: HarnessFactory) -> None:
    harness = await make_harness(rate_limits=limits(register=SLOW))
    statuses = [(await harness.http.post(f"{V3}/register", json={"username": f"u{i}"})).status_code
                for i in range(3)]
    assert statuses == [401, 401, 429]


async def test_limits_off(make_harness: HarnessFactory) -> None:
    off = limits(login=SLOW)
    off.enabled = False
    harness = await make_harness(rate_limits=off)
    body = {"type": "m.login.password", "user": "nobody", "password": "x"}
    for _ in range(5):
        assert (await harness.http.post(f"{V3}/login", json=body)).status_code == 403


def test_bucket_refills() -> None:
    now = [0.0]
    limiter = TokenBucketLimiter(RateLimit(per_second=2.0, burst=2), clock=lambda: now[0])
    limiter.check("a")
    limiter.check("a")
    with pytest.raises(errors.LimitExceeded) as caught:
        limiter.check("a")
    assert caught.value.retry_after_ms == 500
    limiter.check("b")
    now[0] = 0.5
    limiter.check("a")
    with pytest.raises(errors.LimitExceeded):
        limiter.check("a")
    now[0] = 100.0
    limiter.check("a")
    limiter.check("a")  # the bucket holds no more than the burst
    with pytest.raises(errors.LimitExceeded):
        limiter.check("a")


async def test_login_limit_per_forwarded_ip(make_harness: HarnessFactory) -> None:
    """Behind a proxy on loopback, the limit is per client, not per proxy."""
    harness = await make_harness(rate_limits=limits(login=SLOW))
    body = {"type": "m.login.password", "user": "nobody", "password": "wrong"}

    async def attempt(client_ip: str) -> int:
        response = await harness.http.post(f"{V3}/login", json=body, headers={"X-Forwarded-For": client_ip})
        return response.status_code

    assert [await attempt("203.0.113.7") for _ in range(3)] == [403, 403, 429]
    assert await attempt("198.51.100.9") == 403
    # The entry the nearest proxy added is the one that counts.
    assert await attempt("198.51.100.9, 203.0.113.7") == 429


async def login_from(harness: Harness, ip: str, user: str, password: str) -> httpx.Response:
    return await harness.http.post(f"{V3}/login", headers={"X-Forwarded-For": ip}, json={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password})


async def test_login_limit_per_account_whatever_the_address(make_harness: HarnessFactory) -> None:
    harness = await make_harness(rate_limits=limits(login_account=SLOW))
    await harness.register("dora", "pw-dora")
    await harness.register("eve", "pw-eve")
    assert (await login_from(harness, "203.0.113.1", "dora", "pw-dora")).status_code == 200
    assert (await login_from(harness, "203.0.113.2", "@dora:client.test", "pw-dora")).status_code == 200
    assert_limited(await login_from(harness, "203.0.113.3", "DORA", "pw-dora"))
    assert (await login_from(harness, "203.0.113.3", "eve", "pw-eve")).status_code == 200


async def test_failed_logins_per_account(make_harness: HarnessFactory) -> None:
    harness = await make_harness(rate_limits=limits(failed_login=SLOW))
    await harness.register("fay", "pw-fay")
    # Good passwords use nothing.
    for _ in range(3):
        assert (await login_from(harness, "203.0.113.1", "fay", "pw-fay")).status_code == 200
    assert (await login_from(harness, "203.0.113.1", "fay", "wrong")).status_code == 403
    assert (await login_from(harness, "203.0.113.2", "fay", "wrong")).status_code == 403
    # No failures left: refused before the password is checked, even a right one.
    assert_limited(await login_from(harness, "203.0.113.3", "fay", "pw-fay"))
    await harness.register("gus", "pw-gus")
    assert (await login_from(harness, "203.0.113.3", "gus", "pw-gus")).status_code == 200


async def test_room_creation_join_and_invite_limits_per_user(make_harness: HarnessFactory) -> None:
    harness = await make_harness(rate_limits=limits(room_creation=SLOW, join=SLOW, invite=SLOW))
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    rooms = [await harness.create_room(alice, preset="public_chat") for _ in range(2)]
    refused = await harness.http.post(f"{V3}/createRoom", json={"name": "third"}, headers=alice.headers)
    assert_limited(refused)
    joined = await harness.http.get(f"{V3}/joined_rooms", headers=alice.headers)
    assert sorted(joined.json()["joined_rooms"]) == sorted(rooms)
    # Bob has his own room creation bucket.
    rooms.append(await harness.create_room(bob, preset="public_chat"))

    for room_id in rooms[:2]:
        response = await harness.http.post(f"{V3}/rooms/{room_id}/join", json={}, headers=bob.headers)
        assert response.status_code == 200, response.text
    assert_limited(await harness.http.post(f"{V3}/join/{rooms[0]}", json={}, headers=bob.headers))

    carol = await harness.register("carol")
    dave = await harness.register("dave")
    erin = await harness.register("erin")
    for invitee in (carol, dave):
        response = await harness.http.post(f"{V3}/rooms/{rooms[0]}/invite", json={"user_id": invitee.user_id},
                                           headers=alice.headers)
        assert response.status_code == 200, response.text
    assert_limited(await harness.http.post(f"{V3}/rooms/{rooms[0]}/invite", json={"user_id": erin.user_id},
                                           headers=alice.headers))
    state = await harness.http.get(f"{V3}/rooms/{rooms[0]}/state/m.room.member/{erin.user_id}",
                                   headers=alice.headers)
    assert state.status_code == 404
