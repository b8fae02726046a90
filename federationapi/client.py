"""The outbound federation HTTP client.

Every request goes to a server *name*: ``ServerResolver`` finds where it is
(server-server-api "Resolving server names": IP literal, explicit port,
``/.well-known/matrix/server`` with caching, SRV ``_matrix-fed._tcp`` then
the deprecated ``_matrix._tcp``, then port 8448), the address is looked up
and refused when it is private/loopback/link-local (unless the config
allows it), and the request is made over TLS to that address with the
certificate checked for, and the SNI and ``Host`` header set to, the name
the spec says. Every request is signed with ``X-Matrix``.

    client = FederationClient(server_name, signing_key)
    keys = await client.get_json("other.example", "/_matrix/key/v2/server")
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from common.config import Config
from matrixlib.federation_auth import sign_request
from matrixlib.ids import InvalidIdentifierError
from matrixlib.server_names import (
    DEFAULT_FEDERATION_PORT,
    WELL_KNOWN_ERROR_CACHE_SECONDS,
    WellKnownError,
    is_forbidden_address,
    is_ip_literal,
    parse_well_known,
    split_host,
    well_known_cache_seconds,
)
from matrixlib.signing import SigningKey

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 30.0
WELL_KNOWN_TIMEOUT_SECONDS = 10.0
MAX_WELL_KNOWN_REDIRECTS = 5
MAX_RESPONSE_BYTES = 100 * 1024 * 1024
USER_AGENT = "Myelin"
_MAX_POOLED_CONNECTIONS = 256


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON.
    raise ValueError(name)


class FederationError(Exception):
    """A federation request could not be made or did not succeed."""


class DestinationRefused(FederationError):
    """The destination resolves only to addresses federation may not use."""


class HttpResponseError(FederationError):
    """The remote server answered with an HTTP error status."""

    def __init__(self, status: int, body: bytes, destination: str) -> None:
        self.status = status
        self.body = body
        self.destination = destination
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            parsed = None
        self.json: Any = parsed
        super().__init__(f"{destination} answered HTTP {status}: {body[:200]!r}")


@dataclass(frozen=True)
class ResolvedServer:
    """Where to connect for a server name: ``host`` (a host name to look up,
    or an IP literal without brackets) and ``port``; the ``Host`` header; and
    the name the certificate must be valid for (also the SNI, unless an IP)."""

    host: str
    port: int
    host_header: str
    tls_name: str


@dataclass(frozen=True)
class SrvTarget:
    host: str
    port: int


SrvLookup = Callable[[str], Awaitable[list[SrvTarget]]]
AddressLookup = Callable[[str, int], Awaitable[list[str]]]
WellKnownLookup = Callable[[str], Awaitable[tuple[str | None, float]]]


class DnsSrvLookup:
    """SRV targets of a name with dnspython (lowest priority first, weighted
    at random within a priority), or [] when there is no such record. The
    resolver defaults to the system's configuration."""

    def __init__(self, resolver: Any = None) -> None:
        self._resolver = resolver

    async def __call__(self, name: str) -> list[SrvTarget]:
        import dns.asyncresolver
        import dns.exception
        import dns.resolver

        try:
            resolver = self._resolver or dns.asyncresolver.get_default_resolver()
            answer = await resolver.resolve(name, "SRV")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers,
                dns.exception.Timeout, dns.resolver.NoResolverConfiguration):
            return []
        # Within a priority, a higher weight is more likely first (RFC 2782).
        records = sorted(answer, key=lambda r: (r.priority, -random.random() ** (1.0 / (r.weight + 1))))
        targets = [SrvTarget(str(r.target).rstrip("."), int(r.port)) for r in records]
        # "." as the only target means the service is decidedly not available.
        return [t for t in targets if t.host]


dns_srv_lookup = DnsSrvLookup()


async def system_address_lookup(host: str, port: int) -> list[str]:
    """The addresses (IPv6 and IPv4) the system resolver gives for ``host``."""
    if is_ip_literal(host):
        return [host.strip("[]")]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise FederationError(f"cannot resolve {host}: {e}") from None
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in seen:
            seen.append(address)
    return seen


class ServerResolver:
    """Server discovery with a cache of ``/.well-known`` answers. The
    lookups are injectable, so tests run without real DNS."""

    def __init__(self, *, well_known: WellKnownLookup, srv_lookup: SrvLookup = dns_srv_lookup,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._well_known = well_known
        self._srv_lookup = srv_lookup
        self._clock = clock
        self._well_known_cache: dict[str, tuple[str | None, float]] = {}

    async def resolve(self, server_name: str) -> ResolvedServer:
        try:
            host, port = split_host(server_name)
        except InvalidIdentifierError as e:
            raise FederationError(str(e)) from None
        # 1. An IP literal; 2. a host name with an explicit port.
        if is_ip_literal(host) or port is not None:
            return ResolvedServer(host, port or DEFAULT_FEDERATION_PORT, server_name, host)
        # 3. Delegation through /.well-known.
        delegated = await self.well_known_server(host)
        if delegated is not None:
            d_host, d_port = split_host(delegated)
            if is_ip_literal(d_host) or d_port is not None:
                return ResolvedServer(d_host, d_port or DEFAULT_FEDERATION_PORT, delegated, d_host)
            found = await self._srv(d_host)
            if found is not None:
                return ResolvedServer(found.host, found.port, d_host, d_host)
            return ResolvedServer(d_host, DEFAULT_FEDERATION_PORT, d_host, d_host)
        # 4./5. SRV records of the name itself; 6. port 8448.
        found = await self._srv(host)
        if found is not None:
            return ResolvedServer(found.host, found.port, host, host)
        return ResolvedServer(host, DEFAULT_FEDERATION_PORT, host, host)

    async def _srv(self, host: str) -> SrvTarget | None:
        for service in ("_matrix-fed._tcp", "_matrix._tcp"):
            targets = await self._srv_lookup(f"{service}.{host}")
            if targets:
                return targets[0]
        return None

    async def well_known_server(self, host: str) -> str | None:
        """The delegated server name of ``host``, from the cache when fresh."""
        now = self._clock()
        cached = self._well_known_cache.get(host)
        if cached is not None and cached[1] > now:
            return cached[0]
        server, cache_seconds = await self._well_known(host)
        if cache_seconds > 0:
            self._well_known_cache[host] = (server, now + cache_seconds)
        else:
            self._well_known_cache.pop(host, None)
        return server


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes


class FederationClient:
    """Signed HTTPS requests to other homeservers by server name."""

    def __init__(self, server_name: str, signing_key: SigningKey, *, verify_tls: bool = True,
                 allow_private_addresses: bool = False, resolver: ServerResolver | None = None,
                 address_lookup: AddressLookup = system_address_lookup,
                 timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS, well_known_port: int = 443,
                 ca_file: str | None = None) -> None:
        """``ca_file``: trust these certificate authorities instead of the
        system's (for private federations and tests)."""
        self.server_name = server_name
        self._signing_key = signing_key
        self._verify_tls = verify_tls
        self._allow_private = allow_private_addresses
        self._address_lookup = address_lookup
        self._timeout = timeout_seconds
        self._well_known_port = well_known_port
        self.resolver = resolver or ServerResolver(well_known=self.fetch_well_known)
        self._ssl_context = ssl.create_default_context(cafile=ca_file)
        if not verify_tls:
            self._ssl_context.check_hostname = False
            self._ssl_context.verify_mode = ssl.CERT_NONE
        self._clients: OrderedDict[tuple[str, int, str], httpx.AsyncClient] = OrderedDict()

    @classmethod
    def from_config(cls, config: Config, signing_key: SigningKey) -> FederationClient:
        return cls(config.server_name, signing_key, verify_tls=config.federation_verify_tls,
                   allow_private_addresses=config.federation_allow_private_addresses)

    async def close(self) -> None:
        clients = list(self._clients.values())
        self._clients.clear()
        for client in clients:
            await client.aclose()

    # -- the public calls -----------------------------------------------------------

    async def get_json(self, destination: str, path: str, query: Mapping[str, Any] | None = None) -> Any:
        return await self.request_json("GET", destination, path, query=query)

    async def put_json(self, destination: str, path: str, content: Any,
                       query: Mapping[str, Any] | None = None) -> Any:
        return await self.request_json("PUT", destination, path, query=query, content=content)

    async def post_json(self, destination: str, path: str, content: Any,
                        query: Mapping[str, Any] | None = None) -> Any:
        return await self.request_json("POST", destination, path, query=query, content=content)

    async def request_json(self, method: str, destination: str, path: str, *,
                           query: Mapping[str, Any] | None = None, content: Any = None) -> Any:
        """Makes a signed request and answers the parsed JSON body; raises
        ``HttpResponseError`` for an error status, ``FederationError`` when
        the server cannot be reached or answers something that is not JSON."""
        if destination == self.server_name:
            raise FederationError("refusing to send a federation request to ourselves")
        uri = path
        if query:
            uri += "?" + urlencode(query, doseq=True)
        body = None if content is None else json.dumps(content, separators=(",", ":"),
                                                        ensure_ascii=False).encode("utf-8")
        authorization = sign_request(self._signing_key, method=method, uri=uri, origin=self.server_name,
                                     destination=destination, content=content)
        headers = {"Authorization": authorization, "User-Agent": USER_AGENT}
        if body is not None:
            headers["Content-Type"] = "application/json"
        target = await self.resolver.resolve(destination)
        response = await self._send(target, method, uri, headers, body)
        if response.status >= 300:
            raise HttpResponseError(response.status, response.body, destination)
        try:
            return json.loads(response.body, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError):
            raise FederationError(f"{destination} answered {path} with something that is not JSON") from None

    async def get_raw(self, destination: str, path: str, query: Mapping[str, Any] | None = None) -> RawResponse:
        """A signed GET answered with the raw response (media is not JSON);
        ``HttpResponseError`` for an error status."""
        if destination == self.server_name:
            raise FederationError("refusing to send a federation request to ourselves")
        uri = path + ("?" + urlencode(query, doseq=True) if query else "")
        authorization = sign_request(self._signing_key, method="GET", uri=uri, origin=self.server_name,
                                     destination=destination, content=None)
        target = await self.resolver.resolve(destination)
        response = await self._send(target, "GET", uri, {"Authorization": authorization, "User-Agent": USER_AGENT},
                                    None)
        if response.status >= 300:
            raise HttpResponseError(response.status, response.body, destination)
        return response

    # -- well-known -------------------------------------------------------------------

    async def fetch_well_known(self, host: str) -> tuple[str | None, float]:
        """``GET https://<host>/.well-known/matrix/server``: the delegated
        name (None when there is none) and how long to cache the answer."""
        target = ResolvedServer(host, self._well_known_port, host if self._well_known_port == 443
                                else f"{host}:{self._well_known_port}", host)
        path = "/.well-known/matrix/server"
        try:
            for _ in range(MAX_WELL_KNOWN_REDIRECTS + 1):
                response = await self._send(target, "GET", path, {}, None, timeout=WELL_KNOWN_TIMEOUT_SECONDS)
                if response.status in (301, 302, 303, 307, 308) and "location" in response.headers:
                    target, path = self._redirect_target(target, path, response.headers["location"])
                    continue
                if response.status != 200:
                    raise WellKnownError(f"HTTP {response.status}")
                return parse_well_known(response.body), well_known_cache_seconds(response.headers)
            raise WellKnownError("too many redirects")
        except (WellKnownError, FederationError) as e:
            logger.info("no usable /.well-known/matrix/server for %s: %s", host, e)
            return None, float(WELL_KNOWN_ERROR_CACHE_SECONDS)

    def _redirect_target(self, current: ResolvedServer, path: str, location: str) -> tuple[ResolvedServer, str]:
        parts = urlsplit(location)
        if parts.scheme and parts.scheme != "https":
            raise WellKnownError(f"redirect to a non-HTTPS URL {location!r}")
        new_path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if not parts.hostname:
            return current, new_path
        port = parts.port or 443
        host_header = parts.hostname if port == 443 else f"{parts.hostname}:{port}"
        return ResolvedServer(parts.hostname, port, host_header, parts.hostname), new_path

    # -- the transport ------------------------------------------------------------------

    async def _send(self, target: ResolvedServer, method: str, uri: str, headers: dict[str, str],
                    body: bytes | None, *, timeout: float | None = None) -> RawResponse:
        addresses = await self._address_lookup(target.host, target.port)
        allowed = [a for a in addresses if self._allow_private or not is_forbidden_address(a)]
        if not allowed:
            raise DestinationRefused(f"{target.host} resolves only to addresses federation may not use")
        last_error: Exception | None = None
        for address in allowed:
            client = self._client_for(address, target.port, target.tls_name)
            url_host = f"[{address}]" if ":" in address else address
            request = client.build_request(
                method, f"https://{url_host}:{target.port}{uri}", headers={**headers, "Host": target.host_header},
                content=body, timeout=timeout or self._timeout,
                # The certificate is checked for (and the SNI names) the
                # server name, not the address we connect to; Python sends no
                # SNI when that name is an IP address, as the spec asks.
                extensions={"sni_hostname": target.tls_name},
            )
            try:
                response = await client.send(request, stream=True)
                try:
                    chunks = []
                    size = 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > MAX_RESPONSE_BYTES:
                            raise FederationError(f"response from {target.host_header} is too large")
                        chunks.append(chunk)
                finally:
                    await response.aclose()
                return RawResponse(response.status_code, {k.lower(): v for k, v in response.headers.items()},
                                   b"".join(chunks))
            except httpx.HTTPError as e:
                last_error = e
                logger.info("federation request to %s (%s) failed: %r", target.host_header, address, e)
        raise FederationError(f"cannot reach {target.host_header}: {last_error!r}")

    def _client_for(self, address: str, port: int, tls_name: str) -> httpx.AsyncClient:
        # One pool per (address, port, certificate name): a connection made
        # for one server name must not be reused for another on the same
        # address.
        key = (address, port, tls_name)
        client = self._clients.get(key)
        if client is not None:
            self._clients.move_to_end(key)
            return client
        client = httpx.AsyncClient(verify=self._ssl_context, follow_redirects=False, trust_env=False)
        self._clients[key] = client
        if len(self._clients) > _MAX_POOLED_CONNECTIONS:
            _, oldest = self._clients.popitem(last=False)
            asyncio.get_running_loop().create_task(oldest.aclose())
        return client
