"""OpenID tokens (client-server "OpenID", server-server "OpenID"): a
client asks its server for a token (POST /user/{userId}/openid/request_token)
and hands it to a third party, which asks the server who it belongs to
(GET /_matrix/federation/v1/openid/userinfo).

The tokens are self-contained, as nothing else needs to find them: the
user ID and expiry, MACed with the server's secret (``macaroon_secret``,
the same in every process of a deployment), so the client API issues them
and the federation API checks them without sharing a table.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

# As Synapse: an hour.
OPENID_TOKEN_LIFETIME_MS = 60 * 60 * 1000
_PURPOSE = b"myelin openid token\x00"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class OpenIDTokens:
    def __init__(self, secret: str, *, lifetime_ms: int = OPENID_TOKEN_LIFETIME_MS) -> None:
        self._key = hashlib.sha256(_PURPOSE + secret.encode("utf-8")).digest()
        self.lifetime_ms = lifetime_ms

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()

    def issue(self, user_id: str, *, now_ms: int | None = None) -> str:
        """A token for ``user_id``, valid for ``lifetime_ms``."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        payload = json.dumps({"sub": user_id, "exp": now + self.lifetime_ms}, separators=(",", ":")).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def user_of(self, token: str, *, now_ms: int | None = None) -> str | None:
        """The user the token was issued to; None when it is not one of
        ours, was altered, or has expired."""
        encoded_payload, _, encoded_mac = token.partition(".")
        try:
            payload, mac = _unb64(encoded_payload), _unb64(encoded_mac)
        except (ValueError, UnicodeEncodeError):
            return None
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            claims = json.loads(payload)
        except ValueError:
            return None
        now = int(time.time() * 1000) if now_ms is None else now_ms
        user_id, expires = claims.get("sub"), claims.get("exp")
        if not isinstance(user_id, str) or not isinstance(expires, int) or expires <= now:
            return None
        return user_id
