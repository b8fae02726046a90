"""Password hashing of the user API (real default scrypt cost)."""

from __future__ import annotations

from userapi.internal.passwords import DEFAULT_PARAMS, ScryptParams, hash_password, verify_password


def test_default_hash_round_trip() -> None:
    stored = hash_password("pässword")
    scheme, n, r, p, _salt, _digest = stored.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", DEFAULT_PARAMS.n, DEFAULT_PARAMS.r, DEFAULT_PARAMS.p)
    assert verify_password("pässword", stored)
    assert not verify_password("password", stored)


def test_salt_is_random() -> None:
    params = ScryptParams(n=2**10)
    assert hash_password("same", params) != hash_password("same", params)


def test_parameters_travel_with_the_hash() -> None:
    stored = hash_password("pw", ScryptParams(n=2**11, r=4, p=2))
    assert verify_password("pw", stored)


def test_malformed_hash_never_matches() -> None:
    for stored in ["", "scrypt$1$2", "bcrypt$x$y$z$a$b", "scrypt$1024$8$1$!!!$???"]:
        assert not verify_password("pw", stored)
