"""Server access control lists (``m.room.server_acl``, client-server API
"Server Access Control Lists").

A server name is matched without its port against the ``deny`` globs
first, then the ``allow`` globs (``*`` and ``?`` wildcards); a server that
no ``allow`` glob matches is refused. IP literals are refused when
``allow_ip_literals`` is false. Matching ignores case, as Synapse does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from matrixlib.server_names import is_ip_literal, split_host


def _glob_regex(glob: str) -> re.Pattern[str]:
    parts = ("." if ch == "?" else ".*" if ch == "*" else re.escape(ch) for ch in glob)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _globs(content: Mapping[str, Any], key: str) -> list[re.Pattern[str]]:
    value = content.get(key)
    if not isinstance(value, list):
        return []
    return [_glob_regex(glob) for glob in value if isinstance(glob, str)]


def server_allowed_by_acl(content: Mapping[str, Any], server_name: str) -> bool:
    """Whether the ACL event content lets ``server_name`` take part."""
    try:
        host, _ = split_host(server_name)
    except ValueError:
        return False
    allow_ip_literals = content.get("allow_ip_literals", True)
    if allow_ip_literals is False and is_ip_literal(host):
        return False
    if any(pattern.fullmatch(host) for pattern in _globs(content, "deny")):
        return False
    return any(pattern.fullmatch(host) for pattern in _globs(content, "allow"))
