"""Password hashing: scrypt with a random salt, parameters stored with the hash.

The stored form is ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``, so the cost
can be raised later without breaking existing hashes. Hashing is slow on
purpose (tens of milliseconds), so callers run it in a thread.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass

SCHEME = "scrypt"


@dataclass(frozen=True)
class ScryptParams:
    # n=2**15, r=8 needs 32 MiB and about 50-100 ms per hash on a current core.
    n: int = 2**15
    r: int = 8
    p: int = 1
    salt_bytes: int = 16
    hash_bytes: int = 32


DEFAULT_PARAMS = ScryptParams()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    # maxmem must exceed 128 * n * r bytes; allow twice that.
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=256 * n * r + 1024 * 1024, dklen=length)


def hash_password(password: str, params: ScryptParams = DEFAULT_PARAMS) -> str:
    salt = secrets.token_bytes(params.salt_bytes)
    digest = _scrypt(password, salt, params.n, params.r, params.p, params.hash_bytes)
    return f"{SCHEME}${params.n}${params.r}${params.p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (a ``hash_password`` result).
    A malformed stored hash never matches."""
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != SCHEME:
            return False
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(digest_b64, validate=True)
        actual = _scrypt(password, salt, int(n), int(r), int(p), len(expected))
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(actual, expected)


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def burn_time_like_a_check(password: str) -> None:
    """Checked when the account does not exist, so that a wrong user and a
    wrong password take the same time."""
    verify_password(password, _dummy_hash())
