"""User-interactive authentication (content/client-server-api, "User-Interactive
Authentication API"): ``m.login.dummy`` for ``/register``, ``m.login.password``
for deleting devices, changing the password and deactivating the account.

Every flow here has one stage, so a session needs no server-side state: its
ID carries when it was issued and an HMAC under the server's secret, and
any client API instance can check it. A session is bound to the request it
was started for (``purpose``: the method and path, and what they act on,
e.g. the user and the devices to delete), so it cannot be replayed for
another request, and it expires after ``SESSION_TTL_SECONDS``. An unknown,
expired or rebound session gets the 401 with the flows again (and a new
session) and ``M_UNKNOWN``; a failed stage the 401 with that stage's error
(``M_FORBIDDEN`` for a wrong password), ``completed`` listing what is done.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from typing import Any

DUMMY = "m.login.dummy"
PASSWORD = "m.login.password"
# As Synapse's default session timeout.
SESSION_TTL_SECONDS = 15 * 60


def request_purpose(method: str, path: str, *details: str) -> str:
    """What a session is bound to: the request's method and path (with the
    API version left out: r0 and v3 are the same endpoint) and ``details``."""
    for prefix in ("/_matrix/client/v3/", "/_matrix/client/r0/", "/_matrix/client/unstable/"):
        if path.startswith(prefix):
            path = path[len(prefix):]
            break
    return "\n".join((method.upper(), path, *details))


class SessionSigner:
    def __init__(self, secret: str, *, clock: Callable[[], float] = time.time) -> None:
        self._key = hashlib.sha256(("myelin-uia:" + secret).encode()).digest()
        self._clock = clock

    def _mac(self, payload: str, purpose: str) -> str:
        message = f"{payload}\n{purpose}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()[:18]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def new_session(self, purpose: str = "") -> str:
        payload = f"{int(self._clock())}.{secrets.token_urlsafe(12)}"
        return f"{payload}.{self._mac(payload, purpose)}"

    def is_valid(self, session: str, purpose: str = "") -> bool:
        payload, _, mac = session.rpartition(".")
        issued, _, _ = payload.partition(".")
        if not payload or not issued.isdigit():
            return False
        if not hmac.compare_digest(mac, self._mac(payload, purpose)):
            return False
        return 0 <= self._clock() - int(issued) <= SESSION_TTL_SECONDS

    def challenge(self, session: str | None = None, *, stage: str = DUMMY, purpose: str = "",
                  errcode: str | None = None, error: str | None = None) -> dict[str, Any]:
        """The 401 body that lists the flows (with a failed stage's error)."""
        body: dict[str, Any] = {"session": session or self.new_session(purpose),
                                "flows": [{"stages": [stage]}], "params": {}, "completed": []}
        if errcode is not None:
            body["errcode"] = errcode
            body["error"] = error or ""
        return body

    def unknown_session(self, *, stage: str, purpose: str) -> dict[str, Any]:
        """The 401 body for a session that is unknown, expired or bound to another request."""
        return self.challenge(stage=stage, purpose=purpose, errcode="M_UNKNOWN",
                              error="Unknown or expired session, or one started for another request")
