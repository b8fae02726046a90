"""``m.login.token`` tokens from POST /v1/login/get_token (login_token.yaml):
short-lived, for one login only.

A token carries its user, expiry and a random nonce, MACed with the
server's secret; the nonces of used tokens are remembered until the
tokens expire, which makes each token single-use in this process (a
deployment running several client API instances would need them shared:
the lifetime bounds what a replay could reach).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable

# As Synapse: two minutes.
LOGIN_TOKEN_LIFETIME_MS = 2 * 60 * 1000
_PURPOSE = b"myelin login token\x00"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LoginTokens:
    def __init__(self, secret: str, *, lifetime_ms: int = LOGIN_TOKEN_LIFETIME_MS,
                 clock: Callable[[], float] = time.time) -> None:
        self._key = hashlib.sha256(_PURPOSE + secret.encode("utf-8")).digest()
        self.lifetime_ms = lifetime_ms
        self._clock = clock
        # nonce -> expiry (ms) of the tokens already used
        self._used: dict[str, int] = {}

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def issue(self, user_id: str) -> str:
        payload = json.dumps({"sub": user_id, "exp": self._now_ms() + self.lifetime_ms,
                              "n": secrets.token_urlsafe(12)}, separators=(",", ":")).encode()
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()
        return f"{_b64(payload)}.{_b64(mac)}"

    def consume(self, token: str) -> str | None:
        """The user the token logs in, once; None when it is not ours, was
        altered, has expired or was used."""
        encoded_payload, _, encoded_mac = token.partition(".")
        try:
            payload, mac = _unb64(encoded_payload), _unb64(encoded_mac)
        except (ValueError, UnicodeEncodeError):
            return None
        if not hmac.compare_digest(mac, hmac.new(self._key, payload, hashlib.sha256).digest()):
            return None
        try:
            claims = json.loads(payload)
        except ValueError:
            return None
        user_id, expires, nonce = claims.get("sub"), claims.get("exp"), claims.get("n")
        now = self._now_ms()
        if not isinstance(user_id, str) or not isinstance(expires, int) or not isinstance(nonce, str):
            return None
        self._used = {n: exp for n, exp in self._used.items() if exp > now}
        if expires <= now or nonce in self._used:
            return None
        self._used[nonce] = expires
        return user_id
