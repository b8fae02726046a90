"""User-interactive authentication sessions: ``m.login.dummy`` for
``/register``, ``m.login.password`` for deleting devices.

Every flow here has one stage, so a session needs no server-side state: its
ID carries when it was issued and an HMAC under the server's secret, and
any client API instance can check it. A session is bound to what it
authorises (``purpose``: e.g. the user and the devices to delete), so it
cannot be replayed for another request.
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
SESSION_TTL_SECONDS = 60 * 60


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

    def challenge(self, session: str | None = None, *, stage: str = DUMMY, purpose: str = "") -> dict[str, Any]:
        """The 401 body that lists the flows."""
        return {"session": session or self.new_session(purpose), "flows": [{"stages": [stage]}], "params": {}}
