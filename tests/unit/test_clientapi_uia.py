"""Stateless UIA sessions of /register."""

from __future__ import annotations

from clientapi.internal.uia import SESSION_TTL_SECONDS, SessionSigner


def test_sessions_verify_and_expire() -> None:
    now = [1_000_000.0]
    signer = SessionSigner("secret", clock=lambda: now[0])
    session = signer.new_session()
    assert signer.is_valid(session)
    assert SessionSigner("secret", clock=lambda: now[0]).is_valid(session)  # another instance
    assert not SessionSigner("other secret", clock=lambda: now[0]).is_valid(session)
    issued, nonce, mac = session.split(".")
    assert not signer.is_valid(f"{int(issued) + 1}.{nonce}.{mac}")
    assert not signer.is_valid("")
    assert not signer.is_valid("garbage")
    now[0] += SESSION_TTL_SECONDS + 1
    assert not signer.is_valid(session)


def test_sessions_are_bound_to_their_purpose() -> None:
    signer = SessionSigner("secret")
    session = signer.new_session("delete_devices\n@a:x\nDEV1")
    assert signer.is_valid(session, "delete_devices\n@a:x\nDEV1")
    assert not signer.is_valid(session, "delete_devices\n@a:x\nDEV2")
    assert not signer.is_valid(session)
    assert signer.challenge(session, stage="m.login.password")["flows"] == [{"stages": ["m.login.password"]}]
