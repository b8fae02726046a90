"""The access token cache of the user API's gRPC client (userapi/grpc/token_cache.py)
and the revocation stream that keeps it right (WatchTokenRevocations).

Two GrpcUserAPIClients on their own channels stand for two front processes
(two client API instances, or a client API and a sync API)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from myelin.userapi.v1 import userapi_pb2 as pb
from myelin.userapi.v1 import userapi_pb2_grpc as pb_grpc

from common import errors
from userapi.component import UserAPIComponent
from userapi.grpc.client import GrpcUserAPIClient
from userapi.grpc.server import serve_grpc
from userapi.grpc.token_cache import TokenCache
from userapi.internal.revocations import TokenRevocations
from userapi.internal.userapi import UserAPIInternal

# -- the cache alone ------------------------------------------------------------


def device(user_id: str = "@a:x", device_id: str = "D1", *, cacheable: bool = True) -> pb.Device:
    return pb.Device(user_id=user_id, device_id=device_id, cacheable=cacheable)


def live_cache(**kwargs: Any) -> TokenCache:
    cache = TokenCache(**kwargs)
    cache.apply(pb.TokenRevocation(subscribed=True))
    return cache


def test_nothing_is_kept_before_the_stream_is_subscribed() -> None:
    cache = TokenCache()
    cache.put("t", device(), cache.begin())
    cache.apply(pb.TokenRevocation(subscribed=True))
    assert cache.get("t") is None
    cache.put("t", device(), cache.begin())
    assert cache.get("t") == device()


def test_a_lookup_in_flight_across_a_revocation_is_not_kept() -> None:
    cache = live_cache()
    began = cache.begin()
    # The revocation is applied while the user API's (stale) answer travels.
    cache.apply(pb.TokenRevocation(user_id="@a:x", device_ids=["D1"]))
    cache.put("t", device(), began)
    assert cache.get("t") is None
    cache.put("t", device(), cache.begin())
    assert cache.get("t") is not None


def test_revocations_drop_the_devices_named_or_every_device() -> None:
    cache = live_cache()
    for token, who in (("t1", device("@a:x", "D1")), ("t2", device("@a:x", "D2")), ("t3", device("@b:x", "D1"))):
        cache.put(token, who, cache.begin())
    cache.apply(pb.TokenRevocation(user_id="@a:x", device_ids=["D1"]))
    assert (cache.get("t1"), cache.get("t2") is not None, cache.get("t3") is not None) == (None, True, True)
    cache.apply(pb.TokenRevocation(user_id="@a:x"))
    assert (cache.get("t2"), cache.get("t3") is not None) == (None, True)
    cache.revoke_localpart("b")
    assert cache.get("t3") is None and len(cache) == 0


def test_heartbeats_change_nothing_and_all_users_drops_everything() -> None:
    cache = live_cache()
    cache.put("t", device(), cache.begin())
    cache.apply(pb.TokenRevocation())
    assert cache.get("t") is not None
    cache.apply(pb.TokenRevocation(all_users=True))
    assert cache.get("t") is None


def test_a_broken_stream_forgets_everything_until_subscribed_again() -> None:
    cache = live_cache()
    cache.put("t", device(), cache.begin())
    cache.disconnected()
    assert cache.get("t") is None
    cache.put("t", device(), cache.begin())
    assert len(cache) == 0
    cache.apply(pb.TokenRevocation(subscribed=True))
    assert cache.get("t") is None


def test_expiring_tokens_are_not_kept_and_answers_age_out() -> None:
    cache = live_cache(max_age_seconds=0.05)
    cache.put("expiring", device(cacheable=False), cache.begin())
    assert cache.get("expiring") is None
    cache.put("t", device(), cache.begin())
    assert cache.get("t") is not None
    time.sleep(0.06)
    assert cache.get("t") is None and len(cache) == 0


def test_bounded_least_recently_used_first() -> None:
    cache = live_cache(max_entries=2)
    for token in ("t1", "t2"):
        cache.put(token, device(device_id=token), cache.begin())
    cache.get("t1")
    cache.put("t3", device(device_id="t3"), cache.begin())
    assert (cache.get("t1") is not None, cache.get("t2"), cache.get("t3") is not None) == (True, None, True)


def test_answers_are_copies() -> None:
    cache = live_cache()
    cache.put("t", device(), cache.begin())
    answer = cache.get("t")
    assert answer is not None
    answer.user_id = "@mallory:x"
    assert cache.get("t") == device()


# -- over gRPC, against the real user API -------------------------------------------------


class CountingUserAPI:
    """The real user API, counting the token lookups that reach it."""

    def __init__(self, impl: UserAPIInternal) -> None:
        self._impl = impl
        self.lookups = 0
        self.revocations = impl.revocations

    async def query_access_token(self, req: pb.QueryAccessTokenRequest) -> pb.Device:
        self.lookups += 1
        return await self._impl.query_access_token(req)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._impl, name)


@dataclass
class Fronts:
    api: CountingUserAPI
    # Two front processes, each with its own channel and cache.
    one: GrpcUserAPIClient
    two: GrpcUserAPIClient
    server: grpc.aio.Server
    server_address: str


@pytest.fixture
async def fronts(userapi_component: UserAPIComponent) -> AsyncIterator[Fronts]:
    assert isinstance(userapi_component.api, UserAPIInternal)
    api = CountingUserAPI(userapi_component.api)
    server, port = await serve_grpc(api, "127.0.0.1:0")  # type: ignore[arg-type]
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(2)]
    clients = [GrpcUserAPIClient(channel) for channel in channels]
    try:
        yield Fronts(api, clients[0], clients[1], server, f"127.0.0.1:{port}")
    finally:
        for client in clients:
            await client.close()
        for channel in channels:
            await channel.close()
        await server.stop(None)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def login(api: Any, localpart: str, **kwargs: Any) -> pb.Device:
    user_id = f"@{localpart}:test.myelin"
    try:
        await api.perform_account_creation(pb.PerformAccountCreationRequest(localpart=localpart, password="pw"))
    except errors.UserInUse:
        pass
    created: pb.Device = await api.perform_device_creation(
        pb.PerformDeviceCreationRequest(user_id=user_id, **kwargs))
    return created


async def whoami(client: GrpcUserAPIClient, token: str) -> pb.Device:
    return await client.query_access_token(pb.QueryAccessTokenRequest(access_token=token))


async def cached_by(client: GrpcUserAPIClient, token: str) -> None:
    """Looks the token up until the client answers it from memory."""
    cache = client.token_cache
    assert cache is not None

    async def kept() -> bool:
        await whoami(client, token)
        return cache.get(token) is not None
    await eventually(kept)


async def refused(client: GrpcUserAPIClient, token: str) -> bool:
    try:
        await whoami(client, token)
    except errors.UnknownToken:
        return True
    return False


async def test_cached_lookups_skip_the_user_api(fronts: Fronts) -> None:
    token = (await login(fronts.api, "cal")).access_token
    await cached_by(fronts.one, token)
    before = fronts.api.lookups
    for _ in range(20):
        assert (await whoami(fronts.one, token)).user_id == "@cal:test.myelin"
    assert fronts.api.lookups == before


async def test_logout_is_refused_at_once_here_and_after_the_stream_elsewhere(fronts: Fronts) -> None:
    token = (await login(fronts.api, "lou", device_id="PHONE")).access_token
    await cached_by(fronts.one, token)
    await cached_by(fronts.two, token)
    # Front one logs the device out (POST /logout).
    await fronts.one.perform_device_deletion(pb.PerformDeviceDeletionRequest(
        user_id="@lou:test.myelin", device_ids=["PHONE"]))
    assert await refused(fronts.one, token)
    # Front two applied the revocation before the call answered.
    assert await refused(fronts.two, token)


@pytest.mark.parametrize("revoke", ["password", "deactivation", "new_login_same_device", "all_devices"])
async def test_every_revoking_change_reaches_other_fronts(fronts: Fronts, revoke: str) -> None:
    token = (await login(fronts.api, "pat", device_id="LAPTOP")).access_token
    await cached_by(fronts.two, token)
    if revoke == "password":
        await fronts.one.perform_password_update(pb.PerformPasswordUpdateRequest(
            localpart="pat", new_password="new", log_out_devices=True, except_device_id="OTHER"))
    elif revoke == "deactivation":
        await fronts.one.perform_account_deactivation(pb.PerformAccountDeactivationRequest(localpart="pat"))
    elif revoke == "new_login_same_device":
        await fronts.one.perform_device_creation(pb.PerformDeviceCreationRequest(
            user_id="@pat:test.myelin", device_id="LAPTOP"))
    else:
        await fronts.one.perform_device_deletion(pb.PerformDeviceDeletionRequest(user_id="@pat:test.myelin"))
    assert await refused(fronts.one, token)
    assert await refused(fronts.two, token)


async def test_a_rename_reaches_other_fronts(fronts: Fronts) -> None:
    token = (await login(fronts.api, "ren", device_id="TAB")).access_token
    await cached_by(fronts.two, token)
    await fronts.one.perform_device_update(pb.PerformDeviceUpdateRequest(
        user_id="@ren:test.myelin", device_id="TAB", display_name="tablet"))
    assert (await whoami(fronts.two, token)).display_name == "tablet"


async def test_tokens_that_expire_are_always_asked(fronts: Fronts, userapi_component: UserAPIComponent) -> None:
    token = (await login(fronts.api, "exp", refresh_token=True)).access_token
    plain = (await login(fronts.api, "exp")).access_token
    await cached_by(fronts.one, plain)
    before = fronts.api.lookups
    await whoami(fronts.one, token)
    await whoami(fronts.one, token)
    assert fronts.api.lookups == before + 2


async def test_losing_the_user_api_forgets_every_token(fronts: Fronts) -> None:
    token = (await login(fronts.api, "gon")).access_token
    await cached_by(fronts.one, token)
    cache = fronts.one.token_cache
    assert cache is not None
    await fronts.server.stop(None)

    async def forgotten() -> bool:
        return not cache.live and cache.get(token) is None
    await eventually(forgotten, timeout=2.0)
    with pytest.raises(errors.MatrixError):
        await whoami(fronts.one, token)


async def test_a_user_api_that_publishes_no_revocations_is_always_asked(
        userapi_component: UserAPIComponent) -> None:
    impl = userapi_component.api
    assert isinstance(impl, UserAPIInternal)

    class WithoutRevocations:
        lookups = 0

        async def query_access_token(self, req: pb.QueryAccessTokenRequest) -> pb.Device:
            self.lookups += 1
            return await impl.query_access_token(req)

    api = WithoutRevocations()
    server, port = await serve_grpc(api, "127.0.0.1:0")  # type: ignore[arg-type]
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    client = GrpcUserAPIClient(channel)
    try:
        token = (await login(impl, "old")).access_token
        for _ in range(5):
            await whoami(client, token)
            await asyncio.sleep(0.05)
        assert api.lookups == 5
        assert client.token_cache is not None and not client.token_cache.live
    finally:
        await client.close()
        await channel.close()
        await server.stop(None)


async def test_publish_waits_for_every_watcher_and_cuts_off_a_silent_one() -> None:
    revocations = TokenRevocations(ack_timeout=0.2)
    with revocations.watch() as prompt, revocations.watch() as silent:

        async def acknowledge() -> None:
            revocation = await prompt.next(1.0)
            assert revocation is not None and revocation.user_id == "@a:x"
            prompt.acknowledge(revocation.sequence)

        acknowledging = asyncio.create_task(acknowledge())
        started = asyncio.get_running_loop().time()
        await revocations.publish("@a:x", ["D1"])
        waited = asyncio.get_running_loop().time() - started
        await acknowledging
        # It waited for the silent one until cutting it off; the prompt one stays.
        assert 0.15 <= waited < 1.0
        assert silent.cut_off.is_set() and not prompt.cut_off.is_set()
        # A watcher acknowledging is waited for no longer than it takes.
        acknowledging = asyncio.create_task(acknowledge())
        with revocations.watch():
            pass
        started = asyncio.get_running_loop().time()
        await revocations.publish("@a:x")
        await acknowledging
        assert asyncio.get_running_loop().time() - started < 0.15


async def test_a_front_that_does_not_acknowledge_is_cut_off(fronts: Fronts) -> None:
    fronts.api.revocations._ack_timeout = 0.2
    token = (await login(fronts.api, "sil", device_id="PC")).access_token
    await cached_by(fronts.one, token)
    # A watcher that reads nothing and acknowledges nothing.
    channel = grpc.aio.insecure_channel(fronts.server_address)
    try:
        silent = pb_grpc.UserAPIStub(channel).WatchTokenRevocations()
        assert (await silent.read()).subscribed
        await fronts.one.perform_device_deletion(pb.PerformDeviceDeletionRequest(
            user_id="@sil:test.myelin", device_ids=["PC"]))
        assert await refused(fronts.one, token)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            while True:
                await asyncio.wait_for(silent.read(), 2.0)
        assert ended.value.code() == grpc.StatusCode.ABORTED
    finally:
        await channel.close()


async def test_a_login_to_a_new_device_waits_for_no_front(userapi_component: UserAPIComponent) -> None:
    impl = userapi_component.api
    assert isinstance(impl, UserAPIInternal)
    impl.revocations._ack_timeout = 0.5
    with impl.revocations.watch() as silent:
        started = asyncio.get_running_loop().time()
        await login(impl, "neu")
        assert asyncio.get_running_loop().time() - started < 0.4
        assert not silent.cut_off.is_set()
        # A client-chosen device ID may be an existing device's: published.
        await login(impl, "neu", device_id="MINE")
        assert silent.cut_off.is_set()


# -- closing the client ----------------------------------------------------------


class _HeldStream:
    """A revocation stream whose next message the test hands over."""

    def __init__(self) -> None:
        self.pending: asyncio.Future[pb.TokenRevocation] | None = None
        self.reading = asyncio.Event()

    async def read(self) -> pb.TokenRevocation:
        self.pending = asyncio.get_running_loop().create_future()
        self.reading.set()
        return await self.pending

    async def write(self, ack: pb.TokenRevocationAck) -> None:
        pass

    def cancel(self) -> None:
        pass


class _HeldStub:
    def __init__(self) -> None:
        self.stream = _HeldStream()

    async def QueryAccessToken(self, req: pb.QueryAccessTokenRequest) -> pb.Device:
        return device()

    def WatchTokenRevocations(self) -> _HeldStream:
        return self.stream


async def test_close_ends_the_stream_even_when_a_message_lands_with_the_cancellation() -> None:
    # The teardown of a front raced the stream's first message: close()
    # cancelled the follower just as its read completed, the cancellation was
    # swallowed (asyncio.wait_for on Python 3.11 answers the result instead),
    # and close() waited for a follower that never ended.
    channel = grpc.aio.insecure_channel("127.0.0.1:9")
    client = GrpcUserAPIClient(channel)
    stub = _HeldStub()
    client._stub = stub
    try:
        await whoami(client, "token")
        await asyncio.wait_for(stub.stream.reading.wait(), 5)
        assert stub.stream.pending is not None
        # In one turn of the loop: close() cancels the follower, and the
        # read it awaits completes.
        closing = asyncio.ensure_future(client.close())
        stub.stream.pending.set_result(pb.TokenRevocation(subscribed=True))
        done, _ = await asyncio.wait({closing}, timeout=5)
        assert closing in done, "close() did not return"
        closing.result()
        # Closed for good: later lookups go to the user API and are not kept.
        await whoami(client, "token")
        assert client.token_cache is not None and client.token_cache.get("token") is None
    finally:
        await channel.close()


async def test_a_token_created_here_needs_no_lookup(fronts: Fronts) -> None:
    await cached_by(fronts.one, (await login(fronts.one, "warm")).access_token)  # the stream is followed
    before = fronts.api.lookups
    created = await login(fronts.one, "newbie")
    device = await whoami(fronts.one, created.access_token)
    assert (device.user_id, device.device_id) == ("@newbie:test.myelin", created.device_id)
    assert fronts.api.lookups == before
    # Another front asks; a logout reaches this one as before.
    await whoami(fronts.two, created.access_token)
    assert fronts.api.lookups == before + 1
    await fronts.two.perform_device_deletion(pb.PerformDeviceDeletionRequest(
        user_id="@newbie:test.myelin", device_ids=[created.device_id]))
    assert await refused(fronts.one, created.access_token)


async def test_a_created_token_is_not_kept_across_a_revocation_or_with_a_refresh_token(fronts: Fronts) -> None:
    await cached_by(fronts.one, (await login(fronts.one, "warm")).access_token)
    create = fronts.one._stub.PerformDeviceCreation

    async def revoked_meanwhile(req: pb.PerformDeviceCreationRequest) -> pb.Device:
        answer: pb.Device = await create(req)
        assert fronts.one.token_cache is not None
        fronts.one.token_cache.revoke("@someone:else.example")  # a logout elsewhere lands mid-call
        return answer

    fronts.one._stub.PerformDeviceCreation = revoked_meanwhile  # type: ignore[method-assign]
    try:
        raced = await login(fronts.one, "raced")
    finally:
        fronts.one._stub.PerformDeviceCreation = create  # type: ignore[method-assign]
    before = fronts.api.lookups
    await whoami(fronts.one, raced.access_token)
    assert fronts.api.lookups == before + 1
    refreshable = await login(fronts.one, "refresher", refresh_token=True)
    assert refreshable.refresh_token
    await whoami(fronts.one, refreshable.access_token)
    assert fronts.api.lookups == before + 2
