"""Test helpers for end-to-end encryption keys: real ed25519 keys and
signatures, as a client makes them (device keys, one-time keys, cross-signing)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import nacl.signing

from matrixlib.signing import SigningKey, encode_verify_key, sign_json


def new_key(version: str | None = None) -> SigningKey:
    """An ed25519 key; without ``version`` its ID is ``ed25519:<public key>``
    (as cross-signing keys are named)."""
    nacl_key = nacl.signing.SigningKey.generate()
    return SigningKey(version or encode_verify_key(nacl_key.verify_key), nacl_key)


def public(key: SigningKey) -> str:
    return encode_verify_key(key.verify_key)


@dataclass
class ClientDevice:
    """A device's identity key and what it uploads."""
    user_id: str
    device_id: str
    key: SigningKey = field(init=False)

    def __post_init__(self) -> None:
        self.key = new_key(self.device_id)

    def device_keys(self) -> dict[str, Any]:
        return sign_json({
            "user_id": self.user_id, "device_id": self.device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {f"curve25519:{self.device_id}": "curve" + self.device_id,
                     f"ed25519:{self.device_id}": public(self.key)},
        }, self.user_id, self.key)

    def one_time_keys(self, *ids: str) -> dict[str, Any]:
        return {f"signed_curve25519:{i}": sign_json({"key": f"otk-{i}"}, self.user_id, self.key) for i in ids}

    def fallback_key(self, key_id: str) -> dict[str, Any]:
        return {f"signed_curve25519:{key_id}": sign_json({"key": f"fb-{key_id}", "fallback": True},
                                                          self.user_id, self.key)}


@dataclass
class CrossSigning:
    user_id: str
    master: SigningKey = field(default_factory=new_key)
    self_signing: SigningKey = field(default_factory=new_key)
    user_signing: SigningKey = field(default_factory=new_key)

    def master_key(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "usage": ["master"], "keys": {self.master.key_id: public(self.master)}}

    def self_signing_key(self, signer: SigningKey | None = None) -> dict[str, Any]:
        return sign_json({"user_id": self.user_id, "usage": ["self_signing"],
                          "keys": {self.self_signing.key_id: public(self.self_signing)}},
                         self.user_id, signer or self.master)

    def user_signing_key(self) -> dict[str, Any]:
        return sign_json({"user_id": self.user_id, "usage": ["user_signing"],
                          "keys": {self.user_signing.key_id: public(self.user_signing)}}, self.user_id, self.master)
