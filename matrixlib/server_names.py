"""Server discovery, the pure parts: which steps of "Resolving server names"
apply to a name, reading a ``/.well-known/matrix/server`` answer, and how long
to cache it.

Spec: server-server-api "Resolving server names". The I/O (HTTPS, DNS)
lives in ``federationapi/client.py``.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping

from matrixlib.ids import InvalidIdentifierError, parse_server_name

DEFAULT_FEDERATION_PORT = 8448
# Cache times for /.well-known answers (seconds): the spec's recommended
# default and maximum, and for failures the hour it suggests.
WELL_KNOWN_DEFAULT_CACHE_SECONDS = 24 * 3600
WELL_KNOWN_MAX_CACHE_SECONDS = 48 * 3600
WELL_KNOWN_ERROR_CACHE_SECONDS = 3600
# A well-known body bigger than this is not a well-known body.
WELL_KNOWN_MAX_BYTES = 50 * 1024


class WellKnownError(ValueError):
    """The /.well-known answer is not valid: skip to the SRV step."""


def split_host(server_name: str) -> tuple[str, int | None]:
    """Host (IPv6 without brackets) and optional port of a server name;
    raises ``InvalidIdentifierError``."""
    host, port = parse_server_name(server_name)
    if host.startswith("["):
        host = host[1:-1]
    return host, port


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def parse_well_known(body: bytes) -> str:
    """The delegated server name (``m.server``) of a well-known body."""
    if len(body) > WELL_KNOWN_MAX_BYTES:
        raise WellKnownError("well-known body too large")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WellKnownError("well-known body is not JSON") from None
    if not isinstance(data, dict):
        raise WellKnownError("well-known body is not an object")
    server = data.get("m.server")
    if not isinstance(server, str):
        raise WellKnownError("well-known has no m.server string")
    try:
        parse_server_name(server)
    except InvalidIdentifierError:
        raise WellKnownError(f"m.server {server!r} is not a server name") from None
    return server


_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)


def well_known_cache_seconds(headers: Mapping[str, str]) -> float:
    """How long to cache a successful well-known answer: ``Cache-Control``
    max-age (no-store/no-cache: not at all), else the default; at most the
    maximum. ``headers`` keys are lower-case."""
    cache_control = headers.get("cache-control", "")
    directives = {part.strip().split("=", 1)[0].lower() for part in cache_control.split(",")}
    if "no-store" in directives or "no-cache" in directives:
        return 0.0
    match = _MAX_AGE.search(cache_control)
    if match:
        return float(min(int(match.group(1)), WELL_KNOWN_MAX_CACHE_SECONDS))
    return float(WELL_KNOWN_DEFAULT_CACHE_SECONDS)


def is_forbidden_address(address: str) -> bool:
    """Addresses federation must not connect to unless the operator allows
    it: private, loopback, link-local, multicast, reserved, unspecified."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
                or ip.is_reserved or ip.is_unspecified)
