"""Rate limits: per user for sends, per IP for login and registration."""

from __future__ import annotations

import pytest

from clientapi.internal.ratelimit import TokenBucketLimiter
from common import errors
from common.config import RateLimit, RateLimits
from tests.component.clientapi.conftest import HarnessFactory

V3 = "/_matrix/client/v3"
SLOW = RateLimit(per_second=0.01, burst=2)


def limits(**chosen: RateLimit) -> RateLimits:
    generous = RateLimit(per_second=1000, burst=1000)
    return RateLimits(enabled=True, send_per_user=chosen.get("send", generous),
                      login_per_ip=chosen.get("login", generous),
                      register_per_ip=chosen.get("register", generous))


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
