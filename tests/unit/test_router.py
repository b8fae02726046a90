"""homeserver/router.py with real sockets: a client (httpx, or raw bytes where
framing matters) talks to the router, which forwards to fake components
(asyncio servers speaking HTTP/1.1 by hand, so each can misbehave)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httptools
import httpx
import orjson
import pytest

from common import errors
from homeserver import router as router_module
from homeserver.router import Router

# A fake component's handler: the parsed request in, raw response bytes out
# (written by the handler itself through the writer).
Handler = Callable[["ParsedRequest", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class ParsedRequest:
    method: str = ""
    url: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    complete: bool = False

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        return values[0] if values else None


class _RequestCollector:
    """httptools callbacks filling ParsedRequests."""

    def __init__(self) -> None:
        self.requests: list[ParsedRequest] = []
        self.parser = httptools.HttpRequestParser(self)

    def on_message_begin(self) -> None:
        self.requests.append(ParsedRequest())

    def on_url(self, url: bytes) -> None:
        self.requests[-1].url += url.decode()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.requests[-1].headers.append((name.decode(), value.decode()))

    def on_headers_complete(self) -> None:
        self.requests[-1].method = self.parser.get_method().decode()

    def on_body(self, body: bytes) -> None:
        self.requests[-1].body += body

    def on_message_complete(self) -> None:
        self.requests[-1].complete = True


def json_response(value: object, status: int = 200, extra: bytes = b"") -> bytes:
    body = orjson.dumps(value)
    return (b"HTTP/1.1 %d OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%b\r\n%b"
            % (status, len(body), extra, body))


async def echo(request: ParsedRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers with what it received (the body as its SHA-256 and length)."""
    writer.write(json_response({
        "method": request.method, "url": request.url, "headers": request.headers,
        "body_sha256": hashlib.sha256(request.body).hexdigest(), "body_length": len(request.body),
    }))


class FakeComponent:
    """An HTTP/1.1 server on a free port, keep-alive, answering each request
    with ``handler`` (echo by default)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.handler: Handler = echo
        self.connections = 0
        self.requests: list[ParsedRequest] = []
        self.disconnected = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.port = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.connections += 1
        collector = _RequestCollector()
        answered = 0
        try:
            while True:
                while len(collector.requests) <= answered or not collector.requests[answered].complete:
                    data = await reader.read(65536)
                    if not data:
                        self.disconnected.set()
                        return
                    collector.parser.feed_data(data)
                request = collector.requests[answered]
                answered += 1
                self.requests.append(request)
                await self.handler(request, reader, writer)
                await writer.drain()
                if writer.is_closing():
                    return
        except (ConnectionError, asyncio.CancelledError):
            self.disconnected.set()
        finally:
            writer.close()
            self.tasks.discard(task)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await self.server.wait_closed()


@dataclass
class Deployment:
    router: Router
    components: dict[str, FakeComponent]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.router.port}"


@pytest.fixture
async def deployment() -> AsyncIterator[Deployment]:
    components = {name: FakeComponent(name) for name in ("clientapi", "syncapi", "mediaapi", "federationapi")}
    for component in components.values():
        await component.start()
    router = Router({name: ("127.0.0.1", component.port) for name, component in components.items()})
    await router.start("127.0.0.1:0")
    yield Deployment(router, components)
    await router.close()
    for component in components.values():
        await component.stop()


async def raw_exchange(port: int, data: bytes, *, until_close: bool = True,
                       expect: bytes | None = None) -> bytes:
    """Sends raw bytes to the router; what comes back, until the router closes
    (or until ``expect`` has been seen)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        received = b""
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            received += chunk
            if not chunk or (expect is not None and expect in received):
                return received
    finally:
        writer.close()


class _ResponseCollector:
    def __init__(self) -> None:
        self.responses: list[tuple[int, list[tuple[bytes, bytes]], bytearray]] = []
        self.parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        self.responses.append((0, [], bytearray()))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.responses[-1][1].append((name.lower(), value))

    def on_headers_complete(self) -> None:
        _, headers, body = self.responses[-1]
        self.responses[-1] = (self.parser.get_status_code(), headers, body)

    def on_body(self, body: bytes) -> None:
        self.responses[-1][2].extend(body)


def parse_responses(data: bytes) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    collector = _ResponseCollector()
    collector.parser.feed_data(data)
    return [(status, dict(headers), bytes(body)) for status, headers, body in collector.responses]


# Routing


@pytest.mark.parametrize(("path", "component"), [
    ("/_matrix/client/v3/sync?timeout=0", "syncapi"),
    ("/_matrix/client/v3/rooms/!a:b/messages?dir=b", "syncapi"),
    ("/_matrix/client/v3/rooms/!a:b/send/m.room.message/t1", "clientapi"),
    ("/_matrix/media/v3/upload", "mediaapi"),
    ("/_matrix/client/v1/media/download/a/b", "mediaapi"),
    ("/_matrix/federation/v1/version", "federationapi"),
    ("/.well-known/matrix/server", "federationapi"),
    ("/", "clientapi"),
])
async def test_requests_reach_the_component_of_their_path(deployment: Deployment, path: str,
                                                          component: str) -> None:
    async with httpx.AsyncClient(base_url=deployment.url) as client:
        response = await client.get(path)
    assert response.status_code == 200
    assert response.json()["url"] == path
    assert [len(c.requests) for c in deployment.components.values()] == [
        1 if c.name == component else 0 for c in deployment.components.values()]


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
async def test_every_method_is_forwarded_with_its_body(deployment: Deployment, method: str) -> None:
    body = b'{"msgtype": "m.text"}' if method in ("POST", "PUT", "PATCH") else b""
    async with httpx.AsyncClient(base_url=deployment.url) as client:
        response = await client.request(method, "/_matrix/client/v3/x", content=body)
    assert response.json()["method"] == method
    assert response.json()["body_sha256"] == hashlib.sha256(body).hexdigest()


async def test_head_gets_the_headers_and_no_body(deployment: Deployment) -> None:
    async def head_answer(request: ParsedRequest, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n")

    deployment.components["mediaapi"].handler = head_answer
    request = b"HEAD /_matrix/media/v3/download/a/b HTTP/1.1\r\nhost: x\r\n\r\n"
    data = await raw_exchange(deployment.router.port, request + b"GET /_matrix/client/v3/y HTTP/1.1\r\n"
                              b"host: x\r\nconnection: close\r\n\r\n")
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"content-length: 1234" in head
    # The next response follows at once: no body was sent or waited for.
    assert rest.startswith(b"HTTP/1.1 200")
    assert b'"/_matrix/client/v3/y"' in rest


async def test_a_component_not_deployed_is_m_unrecognized(deployment: Deployment) -> None:
    del deployment.router.upstreams["mediaapi"]
    async with httpx.AsyncClient(base_url=deployment.url) as client:
        response = await client.get("/_matrix/media/v3/config")
    assert (response.status_code, response.json()["errcode"]) == (404, "M_UNRECOGNIZED")


# Connections


async def test_keep_alive_both_sides(deployment: Deployment) -> None:
    async with httpx.AsyncClient(base_url=deployment.url) as client:
        for i in range(20):
            response = await client.get(f"/_matrix/client/v3/n{i}")
            assert response.json()["url"] == f"/_matrix/client/v3/n{i}"
    # One client connection, one pooled connection to the component.
    assert deployment.components["clientapi"].connections == 1
    assert len(deployment.components["clientapi"].requests) == 20


async def test_pipelined_requests_are_answered_in_order(deployment: Deployment) -> None:
    async def slow_first(request: ParsedRequest, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        if request.url.endswith("slow"):
            await asyncio.sleep(0.3)
        await echo(request, reader, writer)

    for component in deployment.components.values():
        component.handler = slow_first
    requests = (b"GET /_matrix/client/v3/sync?slow HTTP/1.1\r\nhost: x\r\n\r\n"
                b"PUT /_matrix/client/v3/a HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc"
                b"GET /_matrix/media/v3/b HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    responses = parse_responses(await raw_exchange(deployment.router.port, requests))
    assert [orjson.loads(body)["url"] for _, _, body in responses] == [
        "/_matrix/client/v3/sync?slow", "/_matrix/client/v3/a", "/_matrix/media/v3/b"]
    assert orjson.loads(responses[1][2])["body_length"] == 3


async def test_http_1_0_client_gets_close_delimited_answers(deployment: Deployment) -> None:
    data = await raw_exchange(deployment.router.port, b"GET /_matrix/client/v3/old HTTP/1.0\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200")
    assert b"connection: close" in data.lower()
    assert b'"/_matrix/client/v3/old"' in data


async def test_a_stale_pooled_connection_is_not_used(deployment: Deployment) -> None:
    async def answer_and_close(request: ParsedRequest, reader: asyncio.StreamReader,
                               writer: asyncio.StreamWriter) -> None:
        # Keep-alive as far as the headers say, then closed when idle (as a
        # component restarting does).
        await echo(request, reader, writer)
        await writer.drain()
        writer.close()

    deployment.components["clientapi"].handler = answer_and_close
    async with httpx.AsyncClient(base_url=deployment.url) as client:
        for _ in range(3):
            assert (await client.get("/_matrix/client/v3/x")).status_code == 200
            await asyncio.sleep(0.05)
    assert deployment.components["clientapi"].connections == 3


# Bodies


async def test_a_chunked_request_body_is_forwarded(deployment: Deployment) -> None:
    parts = [b"x" * 1000, b"y" * 70000, b"z"]
    chunked = b"".join(b"%x\r\n%b\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"
    data = await raw_exchange(deployment.router.port,
                              b"POST /_matrix/media/v3/upload HTTP/1.1\r\nhost: x\r\n"
                              b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n" + chunked)
    [(status, _, body)] = parse_responses(data)
    assert status == 200
    assert orjson.loads(body)["body_sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()
    assert deployment.components["mediaapi"].requests[0].header("transfer-encoding") == "chunked"


async def test_a_chunked_response_is_forwarded_chunked(deployment: Deployment) -> None:
    async def chunked_answer(request: ParsedRequest, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for part in (b"hello ", b"streamed ", b"world"):
            writer.write(b"%x\r\n%b\r\n" % (len(part), part))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")

    deployment.components["mediaapi"].handler = chunked_answer
    async with httpx.AsyncClient(base_url=deployment.url) as client:
        response = await client.get("/_matrix/media/v3/download/a/b")
        assert response.headers["transfer-encoding"] == "chunked"
        assert response.content == b"hello streamed world"
        # The connection is still good afterwards.
        assert (await client.get("/_matrix/media/v3/x")).status_code == 200


async def test_a_response_without_length_reaches_the_client_chunked(deployment: Deployment) -> None:
    async def until_close(request: ParsedRequest, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nthe body ends with the connection")
        await writer.drain()
        writer.close()

    deployment.components["clientapi"].handler = until_close
    async with httpx.AsyncClient(base_url=deployment.url) as client:
        response = await client.get("/_matrix/client/v3/x")
        assert response.content == b"the body ends with the connection"
        assert response.headers["transfer-encoding"] == "chunked"
        deployment.components["clientapi"].handler = echo
        assert (await client.get("/_matrix/client/v3/y")).json()["url"] == "/_matrix/client/v3/y"


async def test_big_bodies_stream_both_ways(deployment: Deployment) -> None:
    payload = bytes(range(256)) * (24 * 4096)  # 24 MiB

    async def big_answer(request: ParsedRequest, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        if request.method == "GET":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(payload))
            for offset in range(0, len(payload), 1 << 20):
                writer.write(payload[offset:offset + (1 << 20)])
                await writer.drain()
        else:
            await echo(request, reader, writer)

    deployment.components["mediaapi"].handler = big_answer
    async with httpx.AsyncClient(base_url=deployment.url) as client:
        uploaded = await client.post("/_matrix/media/v3/upload", content=payload)
        assert uploaded.json()["body_sha256"] == hashlib.sha256(payload).hexdigest()
        downloaded = await client.get("/_matrix/media/v3/download/a/b")
        assert downloaded.content == payload


async def test_expect_100_continue_is_answered_by_the_router(deployment: Deployment) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", deployment.router.port)
    writer.write(b"PUT /_matrix/media/v3/upload/a/b HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n"
                 b"expect: 100-continue\r\nconnection: close\r\n\r\n")
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert interim.startswith(b"HTTP/1.1 100")
    writer.write(b"12345")
    [(status, _, body)] = parse_responses(await asyncio.wait_for(reader.read(), 5))
    writer.close()
    assert status == 200 and orjson.loads(body)["body_length"] == 5
    assert deployment.components["mediaapi"].requests[0].header("expect") is None


async def test_a_declared_body_over_the_limit_is_413(deployment: Deployment) -> None:
    data = await raw_exchange(deployment.router.port,
                              b"POST /_matrix/media/v3/upload HTTP/1.1\r\nhost: x\r\n"
                              b"content-length: %d\r\n\r\nabc" % (100 * 1024 * 1024 + 1))
    [(status, headers, body)] = parse_responses(data)
    assert (status, orjson.loads(body)["errcode"]) == (413, "M_TOO_LARGE")
    assert headers[b"connection"] == b"close"
    assert deployment.components["mediaapi"].requests == []


async def test_a_chunked_body_over_the_limit_is_413(deployment: Deployment,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(router_module, "MAX_REQUEST_BYTES", 100_000)
    async def body() -> AsyncIterator[bytes]:
        # httpx sends a body of unknown length chunked.
        for _ in range(5):
            yield b"a" * 30_000

    async with httpx.AsyncClient(base_url=deployment.url) as client:
        response = await client.post("/_matrix/media/v3/upload", content=body())
    assert (response.status_code, response.json()["errcode"]) == (413, "M_TOO_LARGE")


# Headers


async def test_hop_by_hop_headers_stay_on_their_hop(deployment: Deployment) -> None:
    async def answer_with_hop_headers(request: ParsedRequest, reader: asyncio.StreamReader,
                                      writer: asyncio.StreamWriter) -> None:
        writer.write(json_response({"headers": request.headers},
                                   extra=b"keep-alive: timeout=5\r\nconnection: x-private\r\n"
                                         b"x-private: 1\r\nx-public: 2\r\n"))

    deployment.components["clientapi"].handler = answer_with_hop_headers
    async with httpx.AsyncClient(base_url=deployment.url) as client:
        response = await client.get("/_matrix/client/v3/x", headers={
            "connection": "keep-alive, x-secret", "x-secret": "s", "keep-alive": "300", "te": "trailers",
            "proxy-authorization": "Basic eA==", "x-forwarded-for": "6.6.6.6",
            "authorization": "Bearer token", "user-agent": "test"})
    forwarded = {name.lower(): value for name, value in response.json()["headers"]}
    assert forwarded["x-forwarded-for"] == "127.0.0.1"
    assert forwarded["authorization"] == "Bearer token"
    assert forwarded["user-agent"] == "test"
    assert forwarded["host"] == f"127.0.0.1:{deployment.router.port}"
    for name in ("connection", "x-secret", "keep-alive", "te", "proxy-authorization"):
        assert name not in forwarded
    assert response.headers["x-public"] == "2"
    assert "x-private" not in response.headers and "keep-alive" not in response.headers


# Long-polls


async def test_a_long_poll_does_not_hold_up_other_requests(deployment: Deployment) -> None:
    async def hold(request: ParsedRequest, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(1)
        await echo(request, reader, writer)

    deployment.components["syncapi"].handler = hold
    async with httpx.AsyncClient(base_url=deployment.url, timeout=10) as client:
        poll = asyncio.create_task(client.get("/_matrix/client/v3/sync?timeout=1000"))
        await asyncio.sleep(0.1)
        quick = await client.get("/_matrix/client/v3/account/whoami")
        assert quick.status_code == 200
        # Answered while the long-poll is still held.
        assert not poll.done()
        assert (await poll).status_code == 200


async def test_a_client_leaving_a_long_poll_releases_the_component_connection(
        deployment: Deployment) -> None:
    async def hold_forever(request: ParsedRequest, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
        # The component notices the router's connection closing.
        if not await reader.read(1):
            deployment.components["syncapi"].disconnected.set()
            writer.close()

    deployment.components["syncapi"].handler = hold_forever
    _, writer = await asyncio.open_connection("127.0.0.1", deployment.router.port)
    writer.write(b"GET /_matrix/client/v3/sync?timeout=600000 HTTP/1.1\r\nhost: x\r\n\r\n")
    await writer.drain()
    for _ in range(100):
        if deployment.components["syncapi"].requests:
            break
        await asyncio.sleep(0.01)
    writer.close()
    await asyncio.wait_for(deployment.components["syncapi"].disconnected.wait(), 5)
    assert deployment.router.pool.idle.get("syncapi", []) == []


# Failures


async def test_a_component_that_is_down_is_503(deployment: Deployment) -> None:
    await deployment.components["syncapi"].stop()
    async with httpx.AsyncClient(base_url=deployment.url) as client:
        response = await client.get("/_matrix/client/v3/sync")
        assert (response.status_code, response.json()["errcode"]) == (503, errors.Unavailable.errcode)
        # The client's connection still serves other requests.
        assert (await client.get("/_matrix/client/v3/x")).status_code == 200


async def test_a_component_closing_before_answering_is_503(deployment: Deployment) -> None:
    async def close_at_once(request: ParsedRequest, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        writer.close()

    deployment.components["clientapi"].handler = close_at_once
    async with httpx.AsyncClient(base_url=deployment.url) as client:
        response = await client.put("/_matrix/client/v3/x", content=b"{}")
    assert (response.status_code, response.json()["errcode"]) == (503, errors.Unavailable.errcode)


async def test_a_component_closing_mid_response_closes_the_client_connection(
        deployment: Deployment) -> None:
    async def half_answer(request: ParsedRequest, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")
        await writer.drain()
        writer.close()

    deployment.components["clientapi"].handler = half_answer
    async with httpx.AsyncClient(base_url=deployment.url) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get("/_matrix/client/v3/x")
        deployment.components["clientapi"].handler = echo
        assert (await client.get("/_matrix/client/v3/y")).status_code == 200


async def test_a_malformed_response_is_503(deployment: Deployment) -> None:
    async def garbage(request: ParsedRequest, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")

    deployment.components["clientapi"].handler = garbage
    async with httpx.AsyncClient(base_url=deployment.url) as client:
        response = await client.get("/_matrix/client/v3/x")
    assert (response.status_code, response.json()["errcode"]) == (503, errors.Unavailable.errcode)


@pytest.mark.parametrize("request_bytes", [
    b"GARBAGE\r\n\r\n",
    b"GET /x HTTP/9.9\r\n\r\n",
    b"GET /x HTTP/1.1\r\nbad header line\r\n\r\n",
    b"POST /x HTTP/1.1\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
])
async def test_malformed_requests_are_400_and_closed(deployment: Deployment, request_bytes: bytes) -> None:
    data = await raw_exchange(deployment.router.port, request_bytes)
    [(status, headers, body)] = parse_responses(data)
    assert status == 400 and orjson.loads(body)["errcode"] == "M_UNKNOWN"
    assert headers[b"connection"] == b"close"
    # Others are still served.
    async with httpx.AsyncClient(base_url=deployment.url) as client:
        assert (await client.get("/_matrix/client/v3/x")).status_code == 200


async def test_a_head_over_the_limit_is_431_and_closed(deployment: Deployment) -> None:
    data = await raw_exchange(deployment.router.port, b"GET /x HTTP/1.1\r\nx-big: "
                              + b"a" * (router_module.MAX_HEAD_BYTES + 1) + b"\r\n\r\n")
    [(status, _, body)] = parse_responses(data)
    assert status == 431 and orjson.loads(body)["errcode"] == "M_TOO_LARGE"
    assert deployment.components["clientapi"].requests == []


async def test_a_bad_request_after_a_good_one_is_answered_in_turn(deployment: Deployment) -> None:
    data = await raw_exchange(deployment.router.port,
                              b"GET /_matrix/client/v3/first HTTP/1.1\r\nhost: x\r\n\r\nGARBAGE\r\n\r\n")
    responses = parse_responses(data)
    assert [status for status, _, _ in responses] == [200, 400]


async def test_an_idle_client_connection_is_closed(deployment: Deployment,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(router_module, "CLIENT_IDLE_SECONDS", 0.3)
    monkeypatch.setattr(router_module, "TIMEOUT_CHECK_SECONDS", 0.05)
    router = Router(deployment.router.upstreams)
    await router.start("127.0.0.1:0")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
        writer.write(b"GET /_matrix/client/v3/x HTTP/1.1\r\nhost: x\r\n\r\n")
        assert (await asyncio.wait_for(reader.readuntil(b"}"), 5)).startswith(b"HTTP/1.1 200")
        # Kept open while it is used, closed once idle for long enough.
        started = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert asyncio.get_running_loop().time() - started >= 0.1
        writer.close()
    finally:
        await router.close()


@pytest.mark.parametrize("path", [
    "/_matrix/client/v3/sync", "/_matrix/client/r0/sync", "/_matrix/client/v3/syncx",
    "/_matrix/client/v3/rooms/!a:b/messages", "/_matrix/client/v3/rooms/!a:b/send/m.room.message/1",
    "/_matrix/client/v3/rooms/!a:b/context/$e", "/_matrix/client/v3/rooms/!a:b/forget",
    "/_matrix/client/v1/rooms/!a/relations/$e/m.thread/m.room.message", "/_matrix/client/v3/events",
    "/_matrix/client/v3/user/@a:b/filter/1", "/_matrix/client/v3/user/@a:b/account_data/x",
    "/_matrix/client/v3/presence/@a:b/status", "/_matrix/client/v3/keys/changes",
    "/_matrix/client/v3/keys/query", "/_matrix/media/v3/upload", "/_matrix/client/v1/media/config",
    "/_matrix/federation/v1/send/1", "/_matrix/key/v2/server", "/.well-known/matrix/server",
    "/.well-known/matrix/client", "/", "/_matrix/client/versions", "/x/_matrix/client/v3/sync",
])
def test_the_one_pattern_routes_as_the_table_does(path: str) -> None:
    from homeserver.routes import DEFAULT_COMPONENT, ROUTES, component_for_path

    first_match = next((route.component for route in ROUTES if route.pattern.search(path)), DEFAULT_COMPONENT)
    assert component_for_path(path) == first_match


async def test_a_small_body_sent_after_its_head_is_forwarded_with_it(deployment: Deployment) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", deployment.router.port)
    writer.write(b"PUT /_matrix/client/v3/x HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n"
                 b"connection: close\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(0.2)
    # The head alone is not forwarded: the component would wake for half a request.
    assert deployment.components["clientapi"].connections == 0
    writer.write(b"{}")
    [(status, _, body)] = parse_responses(await asyncio.wait_for(reader.read(), 5))
    writer.close()
    assert status == 200 and orjson.loads(body)["body_length"] == 2


def _router_buffered_bytes(router: Router) -> int:
    """What the router holds in its transports' write buffers, both sides."""
    total = 0
    for client in router.clients:
        if client.transport is not None:
            total += client.transport.get_write_buffer_size()
        if client.upstream is not None and client.upstream.transport is not None:
            total += client.upstream.transport.get_write_buffer_size()
    return total


async def test_a_slow_reader_does_not_make_the_router_buffer_a_download(deployment: Deployment) -> None:
    size = 128 * 1024 * 1024
    sent = 0

    async def big_download(request: ParsedRequest, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
        block = b"d" * (1 << 20)
        for _ in range(size >> 20):
            writer.write(block)
            await writer.drain()
            sent += len(block)

    deployment.components["mediaapi"].handler = big_download
    reader, writer = await asyncio.open_connection("127.0.0.1", deployment.router.port, limit=1 << 16)
    writer.write(b"GET /_matrix/media/v3/download/a/b HTTP/1.1\r\nhost: x\r\n\r\n")
    await reader.readuntil(b"\r\n\r\n")
    # The client reads nothing for a while: the component is held back
    # (through the router) instead of the router taking it all in.
    await asyncio.sleep(0.5)
    # (Loopback socket buffers can hold tens of MiB between the three.)
    assert sent < size
    assert _router_buffered_bytes(deployment.router) < 2 * 1024 * 1024
    received = 0
    while received < size:
        received += len(await asyncio.wait_for(reader.read(1 << 20), 5))
    writer.close()
    assert received == size


async def test_a_slow_component_does_not_make_the_router_buffer_an_upload(deployment: Deployment) -> None:
    size = 64 * 1024 * 1024
    upload_started = asyncio.Event()
    release = asyncio.Event()

    async def slow_reader(request: ParsedRequest, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        writer.write(json_response({"body_length": len(request.body)}))

    component = deployment.components["mediaapi"]
    component.handler = slow_reader
    original_serve = component._serve

    async def serve_late(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upload_started.set()
        await release.wait()
        await original_serve(reader, writer)

    component._serve = serve_late  # type: ignore[method-assign]
    await component.stop()
    await component.start()
    deployment.router.upstreams["mediaapi"] = ("127.0.0.1", component.port)
    sent = 0

    async def upload() -> bytes:
        nonlocal sent
        reader, writer = await asyncio.open_connection("127.0.0.1", deployment.router.port)
        writer.write(b"POST /_matrix/media/v3/upload HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n"
                     b"connection: close\r\n\r\n" % size)
        block = b"u" * (1 << 20)
        for _ in range(size >> 20):
            writer.write(block)
            await writer.drain()
            sent += len(block)
        data = await reader.read()
        writer.close()
        return data

    uploading = asyncio.create_task(upload())
    await asyncio.wait_for(upload_started.wait(), 5)
    await asyncio.sleep(0.5)
    assert sent < size
    assert _router_buffered_bytes(deployment.router) < 2 * 1024 * 1024
    assert sum(client.requests[0].buffered for client in deployment.router.clients if client.requests) \
        <= router_module.MAX_READ_AHEAD_BYTES + (1 << 20)
    release.set()
    [(status, _, body)] = parse_responses(await asyncio.wait_for(uploading, 10))
    assert status == 200 and orjson.loads(body)["body_length"] == size


def test_the_router_runs_on_uvloop() -> None:
    # uvloop's transports are not asyncio's classes; the router must not care.
    import uvloop

    async def scenario() -> list[int]:
        component = FakeComponent("clientapi")
        await component.start()
        router = Router({"clientapi": ("127.0.0.1", component.port)})
        await router.start("127.0.0.1:0")
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as client:
                statuses = [(await client.put(f"/_matrix/client/v3/n{i}", content=b"{}")).status_code
                            for i in range(3)]
            data = await raw_exchange(router.port, b"GARBAGE\r\n\r\n")
            statuses.append(parse_responses(data)[0][0])
            return [*statuses, component.connections]
        finally:
            await router.close()
            await component.stop()

    assert uvloop.run(scenario()) == [200, 200, 200, 400, 1]


async def test_a_request_answered_by_the_router_lets_the_next_pipelined_one_through(
        deployment: Deployment) -> None:
    del deployment.router.upstreams["mediaapi"]
    # A pooled connection to the client API, taken at once by the PUT.
    async with httpx.AsyncClient(base_url=deployment.url) as client:
        assert (await client.get("/_matrix/client/v3/warm")).status_code == 200
    requests = (b"GET /_matrix/media/v3/config HTTP/1.1\r\nhost: x\r\n\r\n"
                b"PUT /_matrix/client/v3/a HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc"
                b"GET /_matrix/client/v3/b HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    responses = parse_responses(await raw_exchange(deployment.router.port, requests))
    assert [status for status, _, _ in responses] == [404, 200, 200]
    assert [orjson.loads(body).get("body_length") for _, _, body in responses[1:]] == [3, 0]
    assert [request.url for request in deployment.components["clientapi"].requests] == [
        "/_matrix/client/v3/warm", "/_matrix/client/v3/a", "/_matrix/client/v3/b"]


async def test_many_clients_at_once_leave_nothing_behind(deployment: Deployment) -> None:
    # One httpx client with up to 25 connections: 25 clients to the router.
    limits = httpx.Limits(max_connections=25, max_keepalive_connections=25)
    async with httpx.AsyncClient(base_url=deployment.url, limits=limits) as client:
        async def put(number: int) -> str:
            url: str = (await client.put(f"/_matrix/client/v3/r{number}", content=b"{}")).json()["url"]
            return url

        answers = await asyncio.gather(*(put(number) for number in range(100)))
    assert answers == [f"/_matrix/client/v3/r{number}" for number in range(100)]
    for _ in range(100):
        if not deployment.router.clients:
            break
        await asyncio.sleep(0.01)
    assert deployment.router.clients == set()
    # Component connections: no more than the clients at once, all idle now.
    idle = deployment.router.pool.idle["clientapi"]
    assert len(idle) == deployment.components["clientapi"].connections <= 25
    assert all(upstream.client is None and not upstream.closed for upstream in idle)


async def test_a_component_silent_past_the_response_timeout_is_503(deployment: Deployment,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(router_module, "RESPONSE_TIMEOUT_SECONDS", 0.5)
    monkeypatch.setattr(router_module, "TIMEOUT_CHECK_SECONDS", 0.05)
    router = Router(deployment.router.upstreams)
    await router.start("127.0.0.1:0")

    async def silent_on_sync(request: ParsedRequest, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
        if "timeout=300" in request.url:
            # A long-poll answered within the timeout.
            await asyncio.sleep(0.3)
            await echo(request, reader, writer)
        elif not await reader.read(1):
            deployment.components["syncapi"].disconnected.set()

    deployment.components["syncapi"].handler = silent_on_sync
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as client:
            assert (await client.get("/_matrix/client/v3/sync?timeout=300")).status_code == 200
            started = asyncio.get_running_loop().time()
            response = await client.get("/_matrix/client/v3/sync?timeout=100000")
            assert (response.status_code, response.json()["errcode"]) == (503, errors.Unavailable.errcode)
            assert 0.5 <= asyncio.get_running_loop().time() - started < 3
            # The component's connection was closed; the client's still serves.
            await asyncio.wait_for(deployment.components["syncapi"].disconnected.wait(), 5)
            assert (await client.get("/_matrix/client/v3/x")).status_code == 200
    finally:
        await router.close()
