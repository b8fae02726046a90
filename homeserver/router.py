"""The split deployment's front door: one base URL for clients, each request
forwarded to the component that serves its path (``homeserver/routes.py``).

It holds no state, so several can run behind a load balancer. It is a plain
asyncio HTTP/1.1 proxy on the httptools parser: every client request crosses
it on the way in and its response on the way out, so its cost is added to
every call a client makes; a framework's routing, request objects and
buffered bodies are not paid for here.

The flow of one request:

1. ``_ClientConnection.data_received`` feeds the client's bytes to its
   parser. The parser's callbacks (``on_url``, ``on_header``, ...) fill a
   ``_Request`` at the end of ``requests``, the connection's queue of
   requests in arrival order (several when the client pipelines).
2. ``_pump`` looks at the first request of the queue, the one being
   answered. Once its head is complete it is started: its component chosen
   by path, an idle pooled connection to that component taken (or a new one
   opened), and the request head and whatever body has arrived written to it
   in one write. Later body bytes are forwarded as they arrive, so bodies
   stream through (bounded by transport flow control) instead of being
   buffered.
3. ``_UpstreamConnection.data_received`` feeds the component's bytes to a
   response parser whose callbacks write the response, with its own framing
   (content length, or chunked), to the client.
4. When the response is complete the component's connection goes back to
   the pool, the request leaves the queue, and the next pipelined request,
   if any, is started: responses go back in request order.

Errors: a request the router cannot parse, or with a head or body over the
limits, is answered with the spec's JSON error and the connection closed. A
component that is down, or that closes before answering, gives the spec's
JSON error with 503 (``errors.Unavailable``); one that closes in the middle
of a response closes the client's connection (its status line has gone
already). A client that goes away closes the component's connection too,
which ends a long-poll there.
"""

from __future__ import annotations

import asyncio
import http
import logging
import time
from collections import deque
from collections.abc import Mapping
from typing import cast

import httptools
import orjson

from common import errors
from common.config import Config
from common.http import CORS_HEADERS, MAX_REQUEST_BYTES, split_host_port
from homeserver.routes import component_for_path

logger = logging.getLogger(__name__)

# The components with an HTTP front, which the routing table can name.
ROUTED_COMPONENTS = ("clientapi", "syncapi", "federationapi", "mediaapi")

# A request line and headers together; larger heads get 431.
MAX_HEAD_BYTES = 16 * 1024
# A client connection with no request for this long is closed.
CLIENT_IDLE_SECONDS = 75.0
# A component that has not begun its answer after this long is given up on
# (503, as a component that is down). Long-polls (/sync?timeout=) are held
# for as long as they take below it.
RESPONSE_TIMEOUT_SECONDS = 600.0
# How often both are looked at: one timer for all connections, not one per
# request.
TIMEOUT_CHECK_SECONDS = 5.0
# A pooled connection idle for longer is not reused: the components close
# theirs after 75 s (common.http's KEEP_ALIVE_TIMEOUT), and reusing one the
# component is closing at that moment would fail the request.
POOL_IDLE_SECONDS = 30.0
# Idle connections kept per component; more are closed when released.
POOL_MAX_IDLE = 256
CONNECT_TIMEOUT_SECONDS = 5.0
# How long a connection closed after a bad or unfinished request still
# reads (and drops) what the client sends, so that it gets the response.
LINGER_SECONDS = 2.0
# Bytes a client may send ahead (pipelined requests, or a body while the
# component's connection is being opened) before the router stops reading.
MAX_READ_AHEAD_BYTES = 256 * 1024
# A body up to this size is forwarded with its head, in one write, once it
# has all arrived; a larger one streams.
MAX_COALESCED_BODY_BYTES = 64 * 1024

# Hop-by-hop headers are for one connection only and are not forwarded
# (RFC 9110 7.6.1), nor is anything the router sets or frames itself.
_REQUEST_HEADERS_NOT_FORWARDED = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate", b"proxy-authorization",
    b"te", b"trailer", b"trailers", b"transfer-encoding", b"upgrade", b"expect", b"x-forwarded-for",
})
_RESPONSE_HEADERS_NOT_FORWARDED = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate", b"proxy-authorization",
    b"te", b"trailer", b"trailers", b"transfer-encoding", b"upgrade",
})
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_LAST_CHUNK = b"0\r\n\r\n"


def _listed_in_connection(value: bytes, not_forwarded: frozenset[bytes]) -> set[bytes]:
    """The header names a Connection header lists (hop-by-hop as well) that
    are not left out anyway: usually none ("keep-alive", "close")."""
    return {token.strip().lower() for token in value.split(b",")} - not_forwarded - {b"close"}


def _header_lines(headers: list[tuple[bytes, bytes]], leave_out: set[bytes] | frozenset[bytes]) -> list[bytes]:
    lines: list[bytes] = []
    for name, value in headers:
        if name.lower() not in leave_out:
            lines += [name, b": ", value, b"\r\n"]
    return lines


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def error_response_bytes(error: errors.MatrixError, *, close: bool) -> bytes:
    """A whole HTTP response carrying the spec's JSON error, as
    ``common.http.error_response`` gives it."""
    body = orjson.dumps(error.to_json())
    lines = [b"HTTP/1.1 %d %s\r\n" % (error.status, http.HTTPStatus(error.status).phrase.encode()),
             b"content-type: application/json\r\n",
             b"content-length: %d\r\n" % len(body)]
    lines += [b"%s: %s\r\n" % (name.encode(), value.encode()) for name, value in CORS_HEADERS.items()]
    if close:
        lines.append(b"connection: close\r\n")
    lines += [b"\r\n", body]
    return b"".join(lines)


class _Reject(Exception):
    """Raised from a parser callback: the request is answered with ``error``
    and the connection closed."""

    def __init__(self, error: errors.MatrixError) -> None:
        super().__init__(str(error))
        self.error = error


class _Request:
    """One client request, from its first byte until its response is sent."""

    __slots__ = (
        "body", "buffered", "chunked", "complete", "content_length", "end_sent", "error",
        "expect_continue", "forwarded_headers", "has_host", "head_bytes", "head_complete", "head_sent",
        "headers", "http11", "keep_alive", "method", "received", "response_started", "started", "url",
    )

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.head_complete = False
        self.method = b""
        self.http11 = True
        self.keep_alive = True
        self.content_length: int | None = None
        self.chunked = False
        self.expect_continue = False
        # The header lines the component gets.
        self.forwarded_headers = b""
        self.has_host = False
        # Body bytes received and not yet forwarded.
        self.body: list[bytes] = []
        self.buffered = 0
        self.received = 0
        self.complete = False
        # Set when the router answers the request itself and then closes.
        self.error: errors.MatrixError | None = None
        self.started = False
        self.head_sent = False
        self.end_sent = False
        self.response_started = False

    @property
    def path(self) -> str:
        return self.url.partition(b"?")[0].decode("latin-1")

    def read_head(self, parser: httptools.HttpRequestParser) -> None:
        """Once the headers are in: the request's framing, and the header
        lines the component gets (one pass over the headers)."""
        self.method = parser.get_method()
        self.http11 = parser.get_http_version() == "1.1"
        self.keep_alive = parser.should_keep_alive()
        lines: list[bytes] = []
        listed: set[bytes] = set()
        has_host = False
        for name, value in self.headers:
            lower = name.lower()
            if lower in _REQUEST_HEADERS_NOT_FORWARDED:
                if lower == b"connection":
                    listed |= _listed_in_connection(value, _REQUEST_HEADERS_NOT_FORWARDED)
                elif lower == b"transfer-encoding":
                    self.chunked = True
                elif lower == b"expect":
                    self.expect_continue = value.strip().lower() == b"100-continue"
                continue
            if lower == b"content-length":
                # The parser has checked it is a number, and that there is no
                # Transfer-Encoding beside it.
                self.content_length = int(value)
                if self.content_length > MAX_REQUEST_BYTES:
                    raise _Reject(errors.TooLarge("Request too large"))
            elif lower == b"host":
                has_host = True
            lines += [name, b": ", value, b"\r\n"]
        if listed:
            lines = _header_lines(self.headers, _REQUEST_HEADERS_NOT_FORWARDED | listed)
        self.has_host = has_host
        self.forwarded_headers = b"".join(lines)
        self.head_complete = True

    def upstream_head(self, peer_ip: bytes, upstream_host: bytes) -> bytes:
        """The request line and headers as the component gets them."""
        return b"".join((self.method, b" ", self.url, b" HTTP/1.1\r\n", self.forwarded_headers,
                         b"" if self.has_host else b"host: %b\r\n" % upstream_host,
                         b"x-forwarded-for: ", peer_ip, b"\r\n",
                         b"transfer-encoding: chunked\r\n\r\n" if self.chunked else b"\r\n"))


class _ClientConnection(asyncio.Protocol):
    """One client's connection: parses its requests and answers them in order."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer_ip = b""
        # Requests in arrival order; the first is the one being answered.
        self.requests: deque[_Request] = deque()
        # The request whose bytes the parser is in (the last of ``requests``).
        self.parsing: _Request | None = None
        self.upstream: _UpstreamConnection | None = None
        self.connecting: asyncio.Task[None] | None = None
        # Since when the connection has waited for a request (None while
        # one is being answered); the router closes it after a while.
        self.idle_since: float | None = time.monotonic()
        # Since when the first request has been forwarded.
        self.answering_since: float | None = None
        self.linger_timer: asyncio.TimerHandle | None = None
        # Why reading is paused (read-ahead full, component slow, request
        # rejected); reading resumes when no reason is left.
        self.read_pauses: set[str] = set()
        self.writing_paused = False
        self.closed = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports do not derive
        # from asyncio's classes.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer_ip = str(peer[0]).encode() if isinstance(peer, tuple) else b""
        self.router.clients.add(self)

    def data_received(self, data: bytes) -> None:
        if self.closed or "rejected" in self.read_pauses:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Upgrades (h2c, WebSocket) are not offered: the request is
            # answered as a plain one, then the connection closes.
            if self.parsing is not None:
                self.parsing.keep_alive = False
            elif self.requests:
                self.requests[-1].keep_alive = False
            self._pause_reading("rejected")
        except httptools.HttpParserCallbackError as e:
            cause = e.__context__
            self._reject(cause.error if isinstance(cause, _Reject)
                         else errors.MatrixError("Malformed HTTP request", http_status=400))
        except httptools.HttpParserError:
            self._reject(errors.MatrixError("Malformed HTTP request", http_status=400))
        self._pump()

    def pause_writing(self) -> None:
        # The client reads more slowly than the component answers.
        self.writing_paused = True
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.upstream is not None:
            self.upstream.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.router.clients.discard(self)
        if self.linger_timer is not None:
            self.linger_timer.cancel()
        self._drop_component_connection()

    def _drop_component_connection(self) -> None:
        """Stops a connect in progress and closes the component connection in
        use. Mid-request (a long-poll, say) that also tells the component
        nobody is waiting."""
        if self.connecting is not None:
            self.connecting.cancel()
        if self.upstream is not None:
            upstream, self.upstream = self.upstream, None
            upstream.detach_and_close()

    # httptools callbacks

    def on_message_begin(self) -> None:
        request = _Request()
        self.requests.append(request)
        self.parsing = request

    def on_url(self, url: bytes) -> None:
        request = self._parsing()
        request.url += url
        request.head_bytes += len(url)
        if request.head_bytes > MAX_HEAD_BYTES:
            raise _Reject(errors.TooLarge("Request head too large", http_status=431))

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self._parsing()
        request.headers.append((name, value))
        request.head_bytes += len(name) + len(value) + 4
        if request.head_bytes > MAX_HEAD_BYTES:
            raise _Reject(errors.TooLarge("Request head too large", http_status=431))

    def on_headers_complete(self) -> None:
        self._parsing().read_head(self.parser)

    def on_body(self, body: bytes) -> None:
        request = self._parsing()
        request.received += len(body)
        if request.received > MAX_REQUEST_BYTES:
            raise _Reject(errors.TooLarge("Request too large"))
        request.body.append(body)
        request.buffered += len(body)

    def on_message_complete(self) -> None:
        self._parsing().complete = True
        self.parsing = None

    def _parsing(self) -> _Request:
        assert self.parsing is not None
        return self.parsing

    # The request flow

    def _pump(self) -> None:
        """Moves the first request on: starts it, or forwards its body."""
        if self.closed or not self.requests:
            return
        request = self.requests[0]
        if request.error is not None:
            self._answer_error(request, request.error, close=True)
            return
        if not request.started:
            if not request.head_complete or self._awaiting_small_body(request):
                return
            self._start(request)
            if self.closed or not self.requests or self.requests[0] is not request:
                # Answered at once (no such component), and what follows
                # has been moved on already.
                return
        if self.upstream is not None:
            self._forward_request_bytes(request)
        # Stop reading once too much is waiting to be forwarded.
        if sum(queued.buffered for queued in self.requests) > MAX_READ_AHEAD_BYTES:
            self._pause_reading("read-ahead")
        else:
            self._resume_reading("read-ahead")

    @staticmethod
    def _awaiting_small_body(request: _Request) -> bool:
        """Whether to wait for the rest of a small body before forwarding.
        Clients often send a head and its body in two writes; forwarded as
        they come, the component would be woken twice for one request."""
        return (not request.complete and request.content_length is not None
                and request.content_length <= MAX_COALESCED_BODY_BYTES and not request.expect_continue)

    def _start(self, request: _Request) -> None:
        request.started = True
        self.idle_since = None
        self.answering_since = time.monotonic()
        component = component_for_path(request.path)
        address = self.router.upstreams.get(component)
        if address is None:
            self._answer_error(request, errors.Unrecognized(f"no {component} in this deployment"),
                               close=False)
            return
        if request.expect_continue and not request.complete:
            assert self.transport is not None
            self.transport.write(_CONTINUE)
        upstream = self.router.pool.take(component)
        if upstream is not None:
            self._attach(upstream)
        else:
            self.connecting = asyncio.get_running_loop().create_task(self._connect(component, address))

    async def _connect(self, component: str, address: tuple[str, int]) -> None:
        try:
            upstream = await self.router.pool.connect(component, address)
        except (OSError, TimeoutError) as e:
            self.connecting = None
            logger.warning("connecting to %s at %s:%d failed: %s", component, *address, e)
            if not self.closed and self.requests:
                self._answer_error(self.requests[0], errors.Unavailable(f"{component} is unavailable"),
                                   close=False)
            return
        self.connecting = None
        if self.closed:
            self.router.pool.put(upstream)
            return
        self._attach(upstream)
        self._pump()

    def _attach(self, upstream: _UpstreamConnection) -> None:
        request = self.requests[0]
        self.upstream = upstream
        upstream.attach(self, request)
        if self.writing_paused:
            upstream.pause_reading()

    def _forward_request_bytes(self, request: _Request) -> None:
        upstream = self.upstream
        assert upstream is not None
        out: list[bytes] = []
        if not request.head_sent:
            out.append(request.upstream_head(self.peer_ip, upstream.host_header))
            request.head_sent = True
        if request.body:
            if request.chunked:
                out += [_chunk(part) for part in request.body]
            else:
                out += request.body
            request.body.clear()
            request.buffered = 0
        if request.complete and not request.end_sent:
            if request.chunked:
                out.append(_LAST_CHUNK)
            request.end_sent = True
        if out:
            upstream.write(b"".join(out) if len(out) > 1 else out[0])

    def response_bytes(self, data: bytes) -> None:
        """Part of the current request's response, from its component."""
        if self.transport is not None and not self.closed:
            self.requests[0].response_started = True
            self.transport.write(data)

    def response_complete(self, upstream: _UpstreamConnection, reusable: bool) -> None:
        """The component has answered the current request in full."""
        request = self.requests.popleft()
        self.upstream = None
        if reusable and request.end_sent:
            self.router.pool.put(upstream)
        else:
            upstream.detach_and_close()
        self._resume_reading("upstream")
        self._next(request, close=not request.complete or upstream.close_client)

    def upstream_failed(self, component: str) -> None:
        """The component closed the connection before answering in full."""
        self.upstream = None
        self._resume_reading("upstream")
        request = self.requests[0]
        if request.response_started:
            # The status line has gone: only closing tells the client.
            self._close()
            return
        logger.warning("%s closed the connection before answering %s", component, request.path)
        self._answer_error(request, errors.Unavailable(f"{component} is unavailable"), close=False)

    def _answer_error(self, request: _Request, error: errors.MatrixError, *, close: bool) -> None:
        # The body of a request not wholly read would be taken for the next
        # request: the connection closes instead.
        close = close or not request.complete or not request.keep_alive
        if self.upstream is not None:
            upstream, self.upstream = self.upstream, None
            upstream.detach_and_close()
        if request.response_started:
            self._close()
            return
        assert self.transport is not None
        self.transport.write(error_response_bytes(error, close=close))
        self.requests.popleft()
        self._next(request, close=close)

    def _next(self, finished: _Request, *, close: bool) -> None:
        """After a response: the next request, or waiting for one, or closing."""
        if close or not finished.keep_alive:
            self._close(unread_input=not finished.complete or finished.error is not None)
            return
        self.idle_since = time.monotonic()
        self.answering_since = None
        self._pump()

    def _close(self, *, unread_input: bool = False) -> None:
        transport = self.transport
        if transport is None or self.closed:
            return
        self.closed = True
        # Nothing more is answered: the rest of the queue is dropped.
        self.requests.clear()
        self._drop_component_connection()
        if unread_input and transport.can_write_eof():
            # Closing a socket with bytes not read resets the connection, and
            # the client could lose the response written just before. It is
            # told that nothing more comes (FIN) and what it still sends is
            # read and dropped, for a short while.
            transport.write_eof()
            transport.resume_reading()
            self.linger_timer = asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)
        else:
            transport.close()

    def _reject(self, error: errors.MatrixError) -> None:
        """A request that cannot be parsed or is over a limit: answered (in
        its turn), then the connection closes; nothing more is read."""
        request = self.parsing
        if request is None:
            request = _Request()
            self.requests.append(request)
        request.error = error
        self.parsing = None
        self._pause_reading("rejected")

    def _pause_reading(self, reason: str) -> None:
        if not self.read_pauses and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self.read_pauses.add(reason)

    def _resume_reading(self, reason: str) -> None:
        if reason in self.read_pauses:
            self.read_pauses.discard(reason)
            if not self.read_pauses and self.transport is not None and not self.closed:
                self.transport.resume_reading()

    def upstream_write_paused(self, paused: bool) -> None:
        # The component reads the body more slowly than the client sends it.
        if paused:
            self._pause_reading("upstream")
        else:
            self._resume_reading("upstream")

    def check_timeouts(self, now: float) -> None:
        if self.idle_since is not None and now - self.idle_since > CLIENT_IDLE_SECONDS:
            self._close()
        elif (self.answering_since is not None and now - self.answering_since > RESPONSE_TIMEOUT_SECONDS
              and self.requests and not self.requests[0].response_started):
            request = self.requests[0]
            component = component_for_path(request.path)
            logger.warning("%s did not answer %s in %d s", component, request.path, RESPONSE_TIMEOUT_SECONDS)
            self._answer_error(request, errors.Unavailable(f"{component} did not answer in time"), close=False)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class _UpstreamConnection(asyncio.Protocol):
    """A keep-alive connection to a component: one request at a time, its
    response written to the client as it is parsed."""

    def __init__(self, component: str, address: tuple[str, int], pool: _UpstreamPool) -> None:
        self.component = component
        self.host_header = f"{address[0]}:{address[1]}".encode()
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.client: _ClientConnection | None = None
        self.idle_since = 0.0
        self.closed = False
        # The response being relayed.
        self.head_request = False
        self.client_http11 = True
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.interim = False
        self.chunk_to_client = False
        self.until_close = False
        self.keep_alive = True
        self.close_client = False
        self.head_written = False
        self.complete = False
        self.out: list[bytes] = []

    def attach(self, client: _ClientConnection, request: _Request) -> None:
        self.client = client
        self.head_request = request.method == b"HEAD"
        self.client_http11 = request.http11
        self.reason = b""
        self.headers = []
        self.interim = False
        self.chunk_to_client = False
        self.until_close = False
        self.keep_alive = True
        self.close_client = False
        self.head_written = False
        self.complete = False

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def detach_and_close(self) -> None:
        self.client = None
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports do not derive
        # from asyncio's classes.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is None or self.complete:
            # Bytes nobody asked for: the connection cannot be trusted.
            self.detach_and_close()
            self.pool.discard(self)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            logger.warning("%s sent a malformed response: %s", self.component, e)
            self.out.clear()
            self.detach_and_close()
            client.upstream_failed(self.component)
            return
        if self.out:
            out, self.out = self.out, []
            client.response_bytes(b"".join(out) if len(out) > 1 else out[0])
        if self.complete:
            self.client = None
            client.response_complete(self, self.keep_alive and not self.head_request)

    def pause_writing(self) -> None:
        if self.client is not None:
            self.client.upstream_write_paused(True)

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client.upstream_write_paused(False)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.discard(self)
        client, self.client = self.client, None
        if client is None or self.complete:
            return
        if self.until_close and self.head_written:
            # The body of a response without a length ends with the connection.
            client.response_bytes(_LAST_CHUNK if self.chunk_to_client else b"")
            self.complete = True
            client.response_complete(self, False)
        else:
            client.upstream_failed(self.component)

    # httptools callbacks

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            # An interim response (the router answers Expect itself): skipped.
            self.interim = True
            self.headers = []
            self.reason = b""
            return
        self.keep_alive = self.parser.should_keep_alive()
        lines = [b"HTTP/1.1 %d %b\r\n" % (status, self.reason)]
        listed: set[bytes] = set()
        has_length = chunked = False
        for name, value in self.headers:
            lower = name.lower()
            if lower in _RESPONSE_HEADERS_NOT_FORWARDED:
                if lower == b"connection":
                    listed |= _listed_in_connection(value, _RESPONSE_HEADERS_NOT_FORWARDED)
                chunked = chunked or lower == b"transfer-encoding"
                continue
            has_length = has_length or lower == b"content-length"
            lines += [name, b": ", value, b"\r\n"]
        if listed:
            lines[1:] = _header_lines(self.headers, _RESPONSE_HEADERS_NOT_FORWARDED | listed)
        has_body = not (self.head_request or status in (204, 304))
        if has_body and not has_length:
            self.until_close = not chunked
            if self.client_http11:
                self.chunk_to_client = True
                lines.append(b"transfer-encoding: chunked\r\n")
            else:
                # An HTTP/1.0 client knows the body's end by the connection's.
                self.close_client = True
        client = self.client
        assert client is not None
        request = client.requests[0]
        if not request.keep_alive or self.close_client:
            self.close_client = True
            lines.append(b"connection: close\r\n")
        elif not request.http11:
            lines.append(b"connection: keep-alive\r\n")
        lines.append(b"\r\n")
        self.out.append(b"".join(lines))
        self.head_written = True
        if self.head_request:
            # The component sends no body after a HEAD, but the parser would
            # wait for one: the response ends here (and the connection is
            # not reused).
            self.complete = True

    def on_body(self, body: bytes) -> None:
        self.out.append(_chunk(body) if self.chunk_to_client else body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        if self.chunk_to_client:
            self.out.append(_LAST_CHUNK)
        self.complete = True


class _UpstreamPool:
    """Idle keep-alive connections to each component, most recent first."""

    def __init__(self) -> None:
        self.idle: dict[str, list[_UpstreamConnection]] = {}

    def take(self, component: str) -> _UpstreamConnection | None:
        idle = self.idle.get(component)
        now = time.monotonic()
        while idle:
            upstream = idle.pop()
            if not upstream.closed and now - upstream.idle_since < POOL_IDLE_SECONDS:
                return upstream
            upstream.detach_and_close()
        return None

    def put(self, upstream: _UpstreamConnection) -> None:
        idle = self.idle.setdefault(upstream.component, [])
        if upstream.closed or len(idle) >= POOL_MAX_IDLE:
            upstream.detach_and_close()
            return
        upstream.client = None
        # Its client may have paused it; an idle connection must be read
        # to see the component close it.
        upstream.resume_reading()
        upstream.idle_since = time.monotonic()
        idle.append(upstream)

    def discard(self, upstream: _UpstreamConnection) -> None:
        idle = self.idle.get(upstream.component)
        if idle and upstream in idle:
            idle.remove(upstream)

    async def connect(self, component: str, address: tuple[str, int]) -> _UpstreamConnection:
        loop = asyncio.get_running_loop()
        _, upstream = await asyncio.wait_for(
            loop.create_connection(lambda: _UpstreamConnection(component, address, self), *address),
            CONNECT_TIMEOUT_SECONDS)
        return upstream

    def close(self) -> None:
        for idle in self.idle.values():
            for upstream in idle:
                upstream.detach_and_close()
        self.idle.clear()


class Router:
    """The router's listener, its client connections and its pool of
    connections to the components."""

    def __init__(self, upstreams: Mapping[str, tuple[str, int]]) -> None:
        # Component name -> (host, port) of its HTTP front.
        self.upstreams = dict(upstreams)
        self.pool = _UpstreamPool()
        self.clients: set[_ClientConnection] = set()
        self.server: asyncio.Server | None = None
        self.timeout_check: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self, address: str) -> None:
        """Listens on ``address`` ("host:port"; port 0 picks a free one)."""
        host, port = split_host_port(address)
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _ClientConnection(self), host, port,
                                               reuse_address=True, backlog=1024)
        self.port = self.server.sockets[0].getsockname()[1]
        self.timeout_check = loop.create_task(self._check_timeouts())

    async def _check_timeouts(self) -> None:
        while True:
            await asyncio.sleep(TIMEOUT_CHECK_SECONDS)
            now = time.monotonic()
            for client in list(self.clients):
                client.check_timeouts(now)

    async def close(self) -> None:
        if self.timeout_check is not None:
            self.timeout_check.cancel()
        if self.server is not None:
            self.server.close()
        for client in list(self.clients):
            client.close()
        self.pool.close()
        if self.server is not None:
            await self.server.wait_closed()


def upstreams_of(config: Config) -> dict[str, tuple[str, int]]:
    return {name: split_host_port(config.address_of(name).http)
            for name in ROUTED_COMPONENTS if config.address_of(name).http}


async def run_router(config: Config) -> None:
    router = Router(upstreams_of(config))
    await router.start(config.client_listen)
    try:
        await asyncio.Event().wait()
    finally:
        await router.close()
