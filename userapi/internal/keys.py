"""End-to-end encryption keys in the user API: device keys, one-time and
fallback keys, cross-signing keys and signatures, remote users' device
lists, and server-side key backup
(content/client-server-api/modules/end_to_end_encryption.md).

Every change to a user's devices or keys is published on
``userapi.device_list_update`` after it is stored, one user's changes one at
a time so the log has them in the order stored.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from myelin.userapi.v1 import device_list_log_pb2 as dl_pb
from myelin.userapi.v1 import userapi_pb2 as pb

from common import errors
from common.keyed_locks import KeyedLocks
from matrixlib.signing import SignatureError, decode_verify_key, verify_json
from userapi.producers import DeviceListProducer
from userapi.storage.keys_database import BackupKeyRow, DeviceKeysRow, KeysDatabase, Signatures, StreamStep

logger = logging.getLogger(__name__)

MASTER = "master"
SELF_SIGNING = "self_signing"
USER_SIGNING = "user_signing"
CROSS_SIGNING_TYPES = (MASTER, SELF_SIGNING, USER_SIGNING)


def _now_ms() -> int:
    return int(time.time() * 1000)


def dump_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _load_object(data: bytes | str, what: str) -> dict[str, Any] | None:
    """The JSON object in ``data``; None when empty."""
    if not data:
        return None
    try:
        value = json.loads(data)
    except ValueError:
        raise errors.NotJSON(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise errors.BadJSON(f"{what} must be an object")
    return value


def _stripped(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}


def _ed25519_key(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """(key ID, public key) of a cross-signing key's single ed25519 key."""
    keys = obj.get("keys")
    if not isinstance(keys, Mapping):
        return None
    for key_id, public in keys.items():
        if isinstance(key_id, str) and key_id.startswith("ed25519:") and isinstance(public, str):
            return key_id, public
    return None


def _signatures_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An object's ``signatures``, or nothing when it is not an object."""
    signatures = obj.get("signatures")
    return signatures if isinstance(signatures, dict) else {}


def _with_signatures(obj: dict[str, Any], sigs: Signatures | None, *,
                     visible: Iterable[str] | None = None) -> dict[str, Any]:
    """``obj`` with the stored signatures merged in (only those of the users
    in ``visible`` when given)."""
    if not sigs:
        return obj
    allowed = None if visible is None else set(visible)
    merged = {user: dict(by_key) for user, by_key in _signatures_of(obj).items() if isinstance(by_key, Mapping)}
    for (origin_user, origin_key), signature in sigs.items():
        if allowed is not None and origin_user not in allowed:
            continue
        merged.setdefault(origin_user, {})[origin_key] = signature
    return {**obj, "signatures": merged}


def _key_backup_data(value: Any, where: str) -> tuple[int, int, bool, dict[str, Any]]:
    if not isinstance(value, Mapping):
        raise errors.BadJSON(f"{where} must be an object")
    index, forwarded, verified, data = (value.get("first_message_index"), value.get("forwarded_count"),
                                        value.get("is_verified"), value.get("session_data"))
    if (not isinstance(index, int) or isinstance(index, bool) or not isinstance(forwarded, int)
            or isinstance(forwarded, bool) or not isinstance(verified, bool) or not isinstance(data, dict)):
        raise errors.BadJSON(f"{where} needs first_message_index, forwarded_count, is_verified and session_data")
    return index, forwarded, verified, data


def _better_backup_key(new: BackupKeyRow, old: BackupKeyRow | None) -> bool:
    """The spec's rule for which of two backed-up keys of a session is kept:
    verified over unverified, then the lower first message index, then the
    lower forwarded count."""
    if old is None:
        return True
    if new.is_verified != old.is_verified:
        return new.is_verified
    if new.first_message_index != old.first_message_index:
        return new.first_message_index < old.first_message_index
    return new.forwarded_count < old.forwarded_count


def _version_number(version: str) -> int:
    """A backup version string as stored; unknown (NotFound) when it is not ours."""
    if not version.isdigit() or len(version) > 18:
        raise errors.NotFound(f"Unknown backup version {version!r}")
    return int(version)


class KeysInternal:
    """The key verbs of ``userapi.api.KeysAPI``; mixed into ``UserAPIInternal``."""

    def __init__(self, keys_db: KeysDatabase, server_name: str,
                 device_list_producer: DeviceListProducer | None) -> None:
        self._keys = keys_db
        self._keys_server_name = server_name
        self._device_list_producer = device_list_producer
        # user ID -> [lock, holders and waiters]
        self._device_list_locks: KeyedLocks[str] = KeyedLocks()

    def _is_local(self, user_id: str) -> bool:
        return user_id.endswith(":" + self._keys_server_name)

    def _device_list_lock(self, user_id: str) -> AbstractAsyncContextManager[None]:
        return self._device_list_locks.hold(user_id)

    async def _publish(self, update: dl_pb.DeviceListUpdate) -> None:
        if self._device_list_producer is None:
            return
        update.origin_local = self._is_local(update.user_id)
        update.ts_ms = _now_ms()
        # After the commit: a failure fails the request, and the client's retry publishes again.
        await self._device_list_producer.send(update)

    async def _device_keys_object(self, user_id: str, device_id: str) -> tuple[dict[str, Any] | None, str]:
        """(the device's keys with their signatures, its display name)."""
        rows = [r for r in await self._keys.device_keys_for_users([user_id]) if r.device_id == device_id]
        if not rows or not rows[0].key_json:
            return None, rows[0].display_name if rows else ""
        sigs = await self._keys.signatures_for([(user_id, device_id)])
        obj = _with_signatures(json.loads(rows[0].key_json), sigs.get((user_id, device_id)), visible=[user_id])
        return obj, rows[0].display_name

    async def _publish_device(self, user_id: str, device_id: str, step: StreamStep, *, deleted: bool = False,
                              display_name: str | None = None) -> None:
        keys_obj, stored_name = (None, "") if deleted else await self._device_keys_object(user_id, device_id)
        await self._publish(dl_pb.DeviceListUpdate(
            user_id=user_id, kind=dl_pb.DeviceListUpdate.DEVICE, device_id=device_id, stream_id=step.stream_id,
            prev_ids=[step.prev_id] if step.prev_id else [], deleted=deleted,
            device_display_name=stored_name if display_name is None else display_name,
            device_keys_json=dump_json(keys_obj).encode() if keys_obj else b""))

    async def _publish_signing_keys(self, user_id: str) -> None:
        keys = await self._cross_signing_objects(user_id, requester=user_id)
        await self._publish(dl_pb.DeviceListUpdate(
            user_id=user_id, kind=dl_pb.DeviceListUpdate.SIGNING_KEYS,
            master_key_json=dump_json(keys[MASTER]).encode() if MASTER in keys else b"",
            self_signing_key_json=dump_json(keys[SELF_SIGNING]).encode() if SELF_SIGNING in keys else b""))

    # -- hooks for the device verbs ---------------------------------------------------

    async def device_list_changed(self, user_id: str, device_id: str, display_name: str | None = None) -> None:
        """A device was added or renamed."""
        async with self._device_list_lock(user_id):
            step = await self._keys.bump_device_list(user_id)
            await self._publish_device(user_id, device_id, step, display_name=display_name)

    async def devices_deleted(self, user_id: str, device_ids: Iterable[str]) -> None:
        """The devices are gone: their keys go too, and each is published as deleted."""
        chosen = sorted(set(device_ids))
        if not chosen:
            return
        async with self._device_list_lock(user_id):
            await self._keys.delete_devices_keys(user_id, chosen)
            for device_id in chosen:
                step = await self._keys.bump_device_list(user_id)
                await self._publish_device(user_id, device_id, step, deleted=True)

    # -- upload, query, claim ----------------------------------------------------------

    async def perform_upload_keys(self, req: pb.PerformUploadKeysRequest) -> pb.OneTimeKeyCounts:
        device_keys = _load_object(req.device_keys_json, "device_keys")
        one_time = _load_object(req.one_time_keys_json, "one_time_keys") or {}
        fallback = _load_object(req.fallback_keys_json, "fallback_keys") or {}
        if device_keys is not None:
            if device_keys.get("user_id") != req.user_id or device_keys.get("device_id") != req.device_id:
                raise errors.InvalidParam("device_keys must be for the device that uploads them")
            if not isinstance(device_keys.get("keys"), dict) or not isinstance(device_keys.get("algorithms"), list):
                raise errors.BadJSON("device_keys needs algorithms and keys")
        for name, keys in (("one_time_keys", one_time), ("fallback_keys", fallback)):
            for key_id, key in keys.items():
                if ":" not in key_id or not isinstance(key, dict | str):
                    raise errors.BadJSON(f"{name}: {key_id!r} is not '<algorithm>:<key id>' with a key")
        one_time_json = {key_id: dump_json(key) for key_id, key in one_time.items()}
        existing = await self._keys.existing_one_time_keys(req.user_id, req.device_id, list(one_time_json))
        for key_id, key_json in existing.items():
            if key_json != one_time_json[key_id]:
                raise errors.InvalidParam(f"One time key {key_id} already exists with other content")
        await self._keys.store_one_time_keys(req.user_id, req.device_id, one_time_json)
        await self._keys.store_fallback_keys(req.user_id, req.device_id,
                                             {key_id: dump_json(key) for key_id, key in fallback.items()})
        if device_keys is not None:
            # The server keeps what it was given, without anything a client put in unsigned.
            stored = {k: v for k, v in device_keys.items() if k != "unsigned"}
            async with self._device_list_lock(req.user_id):
                step = await self._keys.store_device_keys(req.user_id, req.device_id, dump_json(stored))
                if step is not None:
                    await self._publish_device(req.user_id, req.device_id, step)
        return await self.query_one_time_key_counts(
            pb.QueryOneTimeKeyCountsRequest(user_id=req.user_id, device_id=req.device_id))

    async def query_one_time_key_counts(self, req: pb.QueryOneTimeKeyCountsRequest) -> pb.OneTimeKeyCounts:
        counts, unused = await self._keys.key_counts(req.user_id, req.device_id)
        return pb.OneTimeKeyCounts(one_time_key_counts=counts, unused_fallback_key_types=unused)

    async def _cross_signing_objects(self, user_id: str, *, requester: str) -> dict[str, dict[str, Any]]:
        return (await self._cross_signing_for_users([user_id], requester=requester)).get(user_id, {})

    async def _cross_signing_for_users(self, user_ids: list[str], *, requester: str
                                       ) -> dict[str, dict[str, dict[str, Any]]]:
        """user ID -> key type -> key with its signatures (those of the user
        and of the requester); another user's user-signing key is left out.
        Two reads whatever the number of users."""
        found = await self._keys.cross_signing_keys_for_users(user_ids)
        objects = {user_id: {key_type: json.loads(key_json) for key_type, key_json in by_type.items()
                             if key_type != USER_SIGNING or user_id == requester}
                   for user_id, by_type in found.items()}
        targets = [(user_id, key[1]) for user_id, by_type in objects.items()
                   for key in map(_ed25519_key, by_type.values()) if key is not None]
        sigs = await self._keys.signatures_for(targets)
        for user_id, by_type in objects.items():
            for key_type, obj in list(by_type.items()):
                key = _ed25519_key(obj)
                if key is not None:
                    by_type[key_type] = _with_signatures(obj, sigs.get((user_id, key[1])),
                                                         visible=[user_id, requester])
        return objects

    async def query_keys(self, req: pb.QueryKeysRequest) -> pb.QueryKeysResponse:
        wanted = {u.user_id: set(u.device_ids) for u in req.users}
        rows = await self._keys.device_keys_for_users(list(wanted))
        rows = [r for r in rows if r.key_json and (not wanted[r.user_id] or r.device_id in wanted[r.user_id])]
        sigs = await self._keys.signatures_for([(r.user_id, r.device_id) for r in rows])
        device_keys: dict[str, dict[str, Any]] = {
            user_id: {} for user_id in wanted if self._is_local(user_id) or any(r.user_id == user_id for r in rows)}
        for row in rows:
            obj = _with_signatures(json.loads(row.key_json), sigs.get((row.user_id, row.device_id)),
                                   visible=[row.user_id])
            if row.display_name:
                obj["unsigned"] = {"device_display_name": row.display_name}
            device_keys.setdefault(row.user_id, {})[row.device_id] = obj
        by_type: dict[str, dict[str, Any]] = {key_type: {} for key_type in CROSS_SIGNING_TYPES}
        cross = await self._cross_signing_for_users(list(wanted), requester=req.requesting_user_id)
        for user_id, keys in cross.items():
            for key_type, obj in keys.items():
                by_type[key_type][user_id] = obj
        return pb.QueryKeysResponse(
            device_keys_json=dump_json(device_keys).encode(),
            master_keys_json=dump_json(by_type[MASTER]).encode(),
            self_signing_keys_json=dump_json(by_type[SELF_SIGNING]).encode(),
            user_signing_keys_json=dump_json(by_type[USER_SIGNING]).encode())

    async def perform_claim_keys(self, req: pb.PerformClaimKeysRequest) -> pb.PerformClaimKeysResponse:
        claimed: dict[str, dict[str, dict[str, Any]]] = {}
        for claim in req.claims:
            taken = await self._keys.claim_key(claim.user_id, claim.device_id, claim.algorithm)
            if taken is None:
                continue
            key_id, key_json = taken
            claimed.setdefault(claim.user_id, {}).setdefault(claim.device_id, {})[key_id] = json.loads(key_json)
        return pb.PerformClaimKeysResponse(one_time_keys_json=dump_json(claimed).encode())

    # -- cross-signing ---------------------------------------------------------------------

    def _check_cross_signing_key(self, obj: dict[str, Any], user_id: str, usage: str) -> tuple[str, str]:
        key = _ed25519_key(obj)
        uses = obj.get("usage")
        if obj.get("user_id") != user_id or not isinstance(uses, list) or usage not in uses or key is None:
            raise errors.InvalidParam(f"the {usage} key must be the user's, with usage {usage!r} and an ed25519 key")
        return key

    async def perform_upload_device_signing_keys(
            self, req: pb.PerformUploadDeviceSigningKeysRequest) -> pb.PerformUploadDeviceSigningKeysResponse:
        given = {MASTER: _load_object(req.master_key_json, "master_key"),
                 SELF_SIGNING: _load_object(req.self_signing_key_json, "self_signing_key"),
                 USER_SIGNING: _load_object(req.user_signing_key_json, "user_signing_key")}
        uploads = {key_type: obj for key_type, obj in given.items() if obj is not None}
        if not uploads:
            return pb.PerformUploadDeviceSigningKeysResponse()
        master = uploads.get(MASTER)
        if master is None:
            stored = (await self._keys.cross_signing_keys_for_users([req.user_id])).get(req.user_id, {})
            if MASTER not in stored:
                raise errors.MissingParam("No master signing key is available")
            master = json.loads(stored[MASTER])
        master_key_id, master_public = self._check_cross_signing_key(master, req.user_id, MASTER)
        device_ids = {r.device_id for r in await self._keys.device_keys_for_users([req.user_id])}
        for key_type, obj in uploads.items():
            _, public = self._check_cross_signing_key(obj, req.user_id, key_type)
            if public in device_ids:
                raise errors.Forbidden("Key ID in use")
            if key_type != MASTER:
                try:
                    verify_json(obj, req.user_id, master_key_id, decode_verify_key(master_public))
                except SignatureError as e:
                    raise errors.InvalidSignature(f"Invalid signature on the {key_type} key: {e}") from None
        async with self._device_list_lock(req.user_id):
            await self._keys.store_cross_signing_keys(req.user_id, {k: dump_json(v) for k, v in uploads.items()})
            await self._publish_signing_keys(req.user_id)
        return pb.PerformUploadDeviceSigningKeysResponse()

    async def perform_upload_signatures(
            self, req: pb.PerformUploadSignaturesRequest) -> pb.PerformUploadSignaturesResponse:
        signed = _load_object(req.signed_objects_json, "signatures") or {}
        signer = req.user_id
        own = (await self._keys.cross_signing_keys_for_users([signer])).get(signer, {})
        own_keys = {key_type: json.loads(key_json) for key_type, key_json in own.items()}
        failures: dict[str, dict[str, Any]] = {}
        rows: list[tuple[str, str, str, str, str]] = []
        changed_devices: dict[str, set[str]] = {}
        changed_signing: set[str] = set()

        def fail(user_id: str, key_id: str, errcode: str, error: str) -> None:
            failures.setdefault(user_id, {})[key_id] = {"errcode": errcode, "error": error}

        for target_user, by_key in signed.items():
            if not isinstance(by_key, dict):
                raise errors.BadJSON("signatures must map users to key IDs to objects")
            target_devices = {r.device_id: json.loads(r.key_json)
                              for r in await self._keys.device_keys_for_users([target_user]) if r.key_json}
            target_cross = {key_type: json.loads(key_json) for key_type, key_json in (
                await self._keys.cross_signing_keys_for_users([target_user])).get(target_user, {}).items()}
            for key_id, obj in by_key.items():
                if not isinstance(obj, dict):
                    fail(target_user, key_id, "M_INVALID_PARAM", "not an object")
                    continue
                stored: dict[str, Any] | None = target_devices.get(key_id)
                signing_keys: list[tuple[str, str]] = []
                is_device = stored is not None
                if target_user == signer and stored is not None:
                    # The user's self-signing key signs their own devices.
                    found = _ed25519_key(own_keys.get(SELF_SIGNING, {}))
                    signing_keys = [found] if found else []
                else:
                    master = target_cross.get(MASTER)
                    found_master = _ed25519_key(master) if master else None
                    if master is not None and found_master is not None and found_master[1] == key_id:
                        stored = master
                        if target_user == signer:
                            # A device of the user signs their master key.
                            signing_keys = [(k, v) for r in target_devices.values()
                                            for k, v in (r.get("keys") or {}).items()
                                            if k.startswith("ed25519:") and isinstance(v, str)]
                        else:
                            found = _ed25519_key(own_keys.get(USER_SIGNING, {}))
                            signing_keys = [found] if found else []
                if stored is None:
                    fail(target_user, key_id, "M_NOT_FOUND", "Unknown key")
                    continue
                if _stripped(obj) != _stripped(stored):
                    fail(target_user, key_id, "M_INVALID_PARAM", "The signed object is not the stored key")
                    continue
                new_sigs = _signatures_of(obj).get(signer)
                if not isinstance(new_sigs, dict):
                    new_sigs = {}
                good = [(origin_key, sig) for origin_key, sig in new_sigs.items()
                        if any(origin_key == k for k, _ in signing_keys)]
                verified = False
                for origin_key, sig in good:
                    public = next(v for k, v in signing_keys if k == origin_key)
                    try:
                        verify_json({**_stripped(stored), "signatures": {signer: {origin_key: sig}}}, signer,
                                    origin_key, decode_verify_key(public))
                    except SignatureError:
                        continue
                    rows.append((signer, origin_key, target_user, key_id, sig))
                    verified = True
                if not verified:
                    fail(target_user, key_id, "M_INVALID_SIGNATURE", "No valid signature by a key that may sign it")
                    continue
                if is_device:
                    changed_devices.setdefault(target_user, set()).add(key_id)
                else:
                    changed_signing.add(target_user)
        await self._keys.store_signatures(rows)
        for user_id, device_ids in changed_devices.items():
            async with self._device_list_lock(user_id):
                for device_id in sorted(device_ids):
                    step = await self._keys.bump_device_list(user_id)
                    await self._publish_device(user_id, device_id, step)
        for user_id in sorted(changed_signing):
            async with self._device_list_lock(user_id):
                await self._publish_signing_keys(user_id)
        return pb.PerformUploadSignaturesResponse(failures_json=dump_json(failures).encode())

    # -- device lists for federation -------------------------------------------------------

    async def query_user_devices(self, req: pb.QueryUserDevicesRequest) -> pb.UserDevices:
        rows = [r for r in await self._keys.device_keys_for_users([req.user_id]) if r.key_json]
        sigs = await self._keys.signatures_for([(r.user_id, r.device_id) for r in rows])
        devices = []
        for row in rows:
            entry: dict[str, Any] = {"device_id": row.device_id, "keys": _with_signatures(
                json.loads(row.key_json), sigs.get((row.user_id, row.device_id)), visible=[row.user_id])}
            if row.display_name:
                entry["device_display_name"] = row.display_name
            devices.append(entry)
        cross = await self._cross_signing_objects(req.user_id, requester="")
        return pb.UserDevices(
            user_id=req.user_id, stream_id=await self._keys.device_list_stream_id(req.user_id),
            devices_json=dump_json(devices).encode(),
            master_key_json=dump_json(cross[MASTER]).encode() if MASTER in cross else b"",
            self_signing_key_json=dump_json(cross[SELF_SIGNING]).encode() if SELF_SIGNING in cross else b"")

    async def perform_remote_device_list_update(
            self, req: dl_pb.DeviceListUpdate) -> pb.PerformRemoteDeviceListUpdateResponse:
        if self._is_local(req.user_id):
            raise errors.Forbidden("a local user's device list is not updated over federation")
        async with self._device_list_lock(req.user_id):
            known = await self._keys.device_list_stream_id(req.user_id)
            if known and req.stream_id <= known:
                return pb.PerformRemoteDeviceListUpdateResponse()
            # Without anything known, or with a gap, the update alone cannot be trusted to complete the list.
            if not known or known not in req.prev_ids:
                return pb.PerformRemoteDeviceListUpdateResponse(needs_resync=True)
            keys = _load_object(req.device_keys_json, "keys")
            await self._keys.apply_remote_device_update(
                req.user_id, req.device_id, stream_id=req.stream_id, deleted=req.deleted,
                key_json=dump_json(keys) if keys else "", display_name=req.device_display_name)
            update = dl_pb.DeviceListUpdate()
            update.CopyFrom(req)
            await self._publish(update)
        return pb.PerformRemoteDeviceListUpdateResponse()

    async def perform_remote_device_list_resync(
            self, req: pb.UserDevices) -> pb.PerformRemoteDeviceListResyncResponse:
        if self._is_local(req.user_id):
            raise errors.Forbidden("a local user's device list is not resynced over federation")
        try:
            devices = json.loads(req.devices_json or b"[]")
        except ValueError:
            raise errors.NotJSON("devices is not JSON") from None
        rows = []
        for entry in devices if isinstance(devices, list) else []:
            keys = entry.get("keys") if isinstance(entry, dict) else None
            device_id = entry.get("device_id") if isinstance(entry, dict) else None
            if not isinstance(device_id, str):
                continue
            name = entry.get("device_display_name")
            rows.append(DeviceKeysRow(req.user_id, device_id, dump_json(keys) if isinstance(keys, dict) else "",
                                      name if isinstance(name, str) else ""))
        async with self._device_list_lock(req.user_id):
            await self._keys.replace_remote_devices(req.user_id, req.stream_id, rows)
            await self._store_remote_signing_keys(req.user_id, req.master_key_json, req.self_signing_key_json)
            await self._publish(dl_pb.DeviceListUpdate(user_id=req.user_id, kind=dl_pb.DeviceListUpdate.DEVICE,
                                                       stream_id=req.stream_id))
        return pb.PerformRemoteDeviceListResyncResponse()

    async def _store_remote_signing_keys(self, user_id: str, master_json: bytes, self_signing_json: bytes) -> bool:
        keys = {key_type: obj for key_type, obj in (
            (MASTER, _load_object(master_json, "master_key")),
            (SELF_SIGNING, _load_object(self_signing_json, "self_signing_key"))) if obj is not None}
        if any(obj.get("user_id") != user_id for obj in keys.values()):
            raise errors.InvalidParam("cross-signing keys must be the user's")
        if keys:
            await self._keys.store_cross_signing_keys(user_id, {k: dump_json(v) for k, v in keys.items()})
        return bool(keys)

    async def perform_remote_signing_key_update(
            self, req: pb.PerformRemoteSigningKeyUpdateRequest) -> pb.PerformRemoteSigningKeyUpdateResponse:
        if self._is_local(req.user_id):
            raise errors.Forbidden("a local user's signing keys are not updated over federation")
        async with self._device_list_lock(req.user_id):
            if await self._store_remote_signing_keys(req.user_id, req.master_key_json, req.self_signing_key_json):
                await self._publish(dl_pb.DeviceListUpdate(
                    user_id=req.user_id, kind=dl_pb.DeviceListUpdate.SIGNING_KEYS,
                    master_key_json=req.master_key_json, self_signing_key_json=req.self_signing_key_json))
        return pb.PerformRemoteSigningKeyUpdateResponse()

    # -- key backup ----------------------------------------------------------------------------

    async def _backup_answer(self, user_id: str, version: int | None) -> pb.KeyBackupVersion:
        found = await self._keys.backup_version(user_id, version)
        if found is None:
            raise errors.NotFound("No current backup version" if version is None
                                  else f"Unknown backup version {version}")
        row, count = found
        return pb.KeyBackupVersion(version=str(row.version), algorithm=row.algorithm,
                                   auth_data_json=row.auth_data_json.encode(), etag=str(row.etag), count=count)

    async def query_key_backup_version(self, req: pb.QueryKeyBackupVersionRequest) -> pb.KeyBackupVersion:
        return await self._backup_answer(req.user_id, _version_number(req.version) if req.version else None)

    async def perform_key_backup_version(self, req: pb.PerformKeyBackupVersionRequest) -> pb.KeyBackupVersion:
        action = pb.PerformKeyBackupVersionRequest
        if req.action == action.CREATE:
            auth_data = _load_object(req.auth_data_json, "auth_data")
            if not req.algorithm or auth_data is None:
                raise errors.MissingParam("algorithm and auth_data are required")
            version = await self._keys.create_backup_version(req.user_id, req.algorithm, dump_json(auth_data))
            return pb.KeyBackupVersion(version=str(version), algorithm=req.algorithm)
        number = _version_number(req.version)
        if req.action == action.DELETE:
            if not await self._keys.delete_backup_version(req.user_id, number):
                raise errors.NotFound(f"Unknown backup version {req.version}")
            return pb.KeyBackupVersion(version=req.version)
        if req.action != action.UPDATE:
            raise errors.InvalidParam("unknown key backup action")
        current = await self._backup_answer(req.user_id, number)
        auth_data = _load_object(req.auth_data_json, "auth_data")
        if auth_data is None:
            raise errors.MissingParam("auth_data is required")
        if req.algorithm != current.algorithm:
            raise errors.InvalidParam("Algorithm does not match")
        await self._keys.update_backup_version(req.user_id, number, dump_json(auth_data))
        return pb.KeyBackupVersion(version=req.version, algorithm=req.algorithm)

    async def _writable_version(self, user_id: str, version: str) -> int:
        """Keys may only be written to the current version: another live one is
        M_WRONG_ROOM_KEYS_VERSION, an unknown one M_NOT_FOUND."""
        number = _version_number(version)
        current = await self._keys.backup_version(user_id, None)
        if current is not None and current[0].version == number:
            return number
        if await self._keys.backup_version(user_id, number) is None or current is None:
            raise errors.NotFound(f"Unknown backup version {version}")
        raise errors.WrongRoomKeysVersion("Wrong backup version.",
                                          extra={"current_version": str(current[0].version)})

    async def perform_key_backup_keys_upload(
            self, req: pb.PerformKeyBackupKeysUploadRequest) -> pb.KeyBackupKeysResponse:
        rooms = _load_object(req.rooms_json, "rooms") or {}
        new_rows: list[BackupKeyRow] = []
        for room_id, room in rooms.items():
            sessions = room.get("sessions") if isinstance(room, dict) else None
            if not isinstance(sessions, dict):
                raise errors.BadJSON(f"rooms[{room_id!r}] needs sessions")
            for session_id, value in sessions.items():
                index, forwarded, verified, data = _key_backup_data(value, f"session {session_id!r}")
                new_rows.append(BackupKeyRow(room_id, session_id, index, forwarded, verified, dump_json(data)))
        async with self._device_list_lock("backup " + req.user_id):
            number = await self._writable_version(req.user_id, req.version)
            existing = {(r.room_id, r.session_id): r for r in await self._keys.backup_keys(req.user_id, number)}
            winners = [r for r in new_rows if _better_backup_key(r, existing.get((r.room_id, r.session_id)))]
            etag, count = await self._keys.store_backup_keys(req.user_id, number, winners)
        return pb.KeyBackupKeysResponse(etag=str(etag), count=count)

    async def query_key_backup_keys(self, req: pb.KeyBackupKeysSelector) -> pb.QueryKeyBackupKeysResponse:
        number = _version_number(req.version)
        if await self._keys.backup_version(req.user_id, number) is None:
            raise errors.NotFound(f"Unknown backup version {req.version}")
        rows = await self._keys.backup_keys(req.user_id, number, req.room_id or None, req.session_id or None)
        rooms: dict[str, dict[str, Any]] = {}
        for row in rows:
            rooms.setdefault(row.room_id, {"sessions": {}})["sessions"][row.session_id] = {
                "first_message_index": row.first_message_index, "forwarded_count": row.forwarded_count,
                "is_verified": row.is_verified, "session_data": json.loads(row.session_data_json)}
        return pb.QueryKeyBackupKeysResponse(rooms_json=dump_json(rooms).encode())

    async def perform_key_backup_keys_deletion(self, req: pb.KeyBackupKeysSelector) -> pb.KeyBackupKeysResponse:
        number = _version_number(req.version)
        if await self._keys.backup_version(req.user_id, number) is None:
            raise errors.NotFound(f"Unknown backup version {req.version}")
        etag, count = await self._keys.delete_backup_keys(req.user_id, number, req.room_id or None,
                                                          req.session_id or None)
        return pb.KeyBackupKeysResponse(etag=str(etag), count=count)
