"""End-to-end encryption keys in the user API, through both bindings:
upload, query, claim (one-time keys, then the fallback key), cross-signing
and signatures, remote device lists, key backup; device list changes
published on userapi.device_list_update."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from myelin.userapi.v1 import device_list_log_pb2 as dl_pb
from myelin.userapi.v1 import userapi_pb2 as pb

from common import errors
from common.log import LogRecord
from common.logs import open_log
from common.topics import USERAPI_DEVICE_LIST_UPDATE
from matrixlib.signing import sign_json
from tests.component.userapi.conftest import CHEAP_SCRYPT, SERVER_NAME, make_config
from tests.e2ee import ClientDevice, CrossSigning, public
from userapi.api import UserAPI
from userapi.component import open_userapi

ALICE = f"@alice:{SERVER_NAME}"
BOB = f"@bob:{SERVER_NAME}"
REMOTE = "@carol:remote.example"


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


async def upload(userapi: UserAPI, device: ClientDevice, *, device_keys: bool = True,
                 one_time: dict[str, Any] | None = None, fallback: dict[str, Any] | None = None
                 ) -> pb.OneTimeKeyCounts:
    return await userapi.perform_upload_keys(pb.PerformUploadKeysRequest(
        user_id=device.user_id, device_id=device.device_id,
        device_keys_json=dumps(device.device_keys()) if device_keys else b"",
        one_time_keys_json=dumps(one_time) if one_time else b"", fallback_keys_json=dumps(fallback) if fallback else b""))


async def query(userapi: UserAPI, requester: str, *users: str) -> dict[str, Any]:
    answer = await userapi.query_keys(pb.QueryKeysRequest(
        requesting_user_id=requester, users=[pb.UserDeviceIds(user_id=u) for u in users]))
    return {"device_keys": json.loads(answer.device_keys_json), "master_keys": json.loads(answer.master_keys_json),
            "self_signing_keys": json.loads(answer.self_signing_keys_json),
            "user_signing_keys": json.loads(answer.user_signing_keys_json)}


async def claim(userapi: UserAPI, user_id: str, device_id: str) -> dict[str, Any]:
    answer = await userapi.perform_claim_keys(pb.PerformClaimKeysRequest(claims=[
        pb.KeyClaim(user_id=user_id, device_id=device_id, algorithm="signed_curve25519")]))
    found: dict[str, Any] = json.loads(answer.one_time_keys_json)
    keys: dict[str, Any] = found.get(user_id, {}).get(device_id, {})
    return keys


async def test_upload_query_and_claim_until_the_fallback_key(userapi: UserAPI) -> None:
    phone = ClientDevice(ALICE, "PHONE")
    counts = await upload(userapi, phone, one_time=phone.one_time_keys("a", "b"), fallback=phone.fallback_key("f1"))
    assert dict(counts.one_time_key_counts) == {"signed_curve25519": 2}
    assert list(counts.unused_fallback_key_types) == ["signed_curve25519"]
    # The same upload again changes nothing; a known key ID with other content is refused.
    counts = await upload(userapi, phone, one_time=phone.one_time_keys("a"))
    assert dict(counts.one_time_key_counts) == {"signed_curve25519": 2}
    with pytest.raises(errors.InvalidParam):
        await upload(userapi, phone, device_keys=False, one_time={"signed_curve25519:a": {"key": "other"}})

    found = await query(userapi, BOB, ALICE, BOB)
    assert found["device_keys"][BOB] == {}
    stored = found["device_keys"][ALICE]["PHONE"]
    assert stored["keys"] == phone.device_keys()["keys"]
    assert stored["signatures"] == phone.device_keys()["signatures"]

    first, second = await claim(userapi, ALICE, "PHONE"), await claim(userapi, ALICE, "PHONE")
    assert {*first, *second} == {"signed_curve25519:a", "signed_curve25519:b"}
    counts = await userapi.query_one_time_key_counts(pb.QueryOneTimeKeyCountsRequest(user_id=ALICE, device_id="PHONE"))
    assert dict(counts.one_time_key_counts) == {}
    assert list(counts.unused_fallback_key_types) == ["signed_curve25519"]
    # Out of one-time keys: the fallback key, every time, now marked used.
    for _ in range(2):
        assert list(await claim(userapi, ALICE, "PHONE")) == ["signed_curve25519:f1"]
    counts = await userapi.query_one_time_key_counts(pb.QueryOneTimeKeyCountsRequest(user_id=ALICE, device_id="PHONE"))
    assert list(counts.unused_fallback_key_types) == []
    # A new fallback key is unused again; a device without keys yields nothing.
    counts = await upload(userapi, phone, device_keys=False, fallback=phone.fallback_key("f2"))
    assert list(counts.unused_fallback_key_types) == ["signed_curve25519"]
    assert await claim(userapi, ALICE, "NOSUCH") == {}


async def test_device_keys_must_be_the_uploaders(userapi: UserAPI) -> None:
    with pytest.raises(errors.InvalidParam):
        await userapi.perform_upload_keys(pb.PerformUploadKeysRequest(
            user_id=ALICE, device_id="PHONE", device_keys_json=dumps(ClientDevice(BOB, "PHONE").device_keys())))
    with pytest.raises(errors.NotJSON):
        await userapi.perform_upload_keys(pb.PerformUploadKeysRequest(user_id=ALICE, device_id="P", one_time_keys_json=b"{"))


async def test_cross_signing_and_signatures(userapi: UserAPI) -> None:
    phone = ClientDevice(ALICE, "PHONE")
    await upload(userapi, phone)
    alice = CrossSigning(ALICE)
    # Without a master key, a self-signing key alone cannot be checked.
    with pytest.raises(errors.MissingParam):
        await userapi.perform_upload_device_signing_keys(pb.PerformUploadDeviceSigningKeysRequest(
            user_id=ALICE, self_signing_key_json=dumps(alice.self_signing_key())))
    # A self-signing key the master key did not sign.
    with pytest.raises(errors.InvalidSignature):
        await userapi.perform_upload_device_signing_keys(pb.PerformUploadDeviceSigningKeysRequest(
            user_id=ALICE, master_key_json=dumps(alice.master_key()),
            self_signing_key_json=dumps(alice.self_signing_key(signer=alice.user_signing))))
    await userapi.perform_upload_device_signing_keys(pb.PerformUploadDeviceSigningKeysRequest(
        user_id=ALICE, master_key_json=dumps(alice.master_key()),
        self_signing_key_json=dumps(alice.self_signing_key()), user_signing_key_json=dumps(alice.user_signing_key())))
    own = await query(userapi, ALICE, ALICE)
    assert own["master_keys"][ALICE]["keys"] == alice.master_key()["keys"]
    assert ALICE in own["user_signing_keys"]
    seen_by_bob = await query(userapi, BOB, ALICE)
    assert ALICE in seen_by_bob["self_signing_keys"] and seen_by_bob["user_signing_keys"] == {}

    # Alice's self-signing key signs her phone; a forged signature fails.
    signed_phone = sign_json(phone.device_keys(), ALICE, alice.self_signing)
    forged_phone = sign_json(phone.device_keys(), ALICE, alice.user_signing)
    answer = await userapi.perform_upload_signatures(pb.PerformUploadSignaturesRequest(
        user_id=ALICE, signed_objects_json=dumps({ALICE: {"PHONE": signed_phone}})))
    assert json.loads(answer.failures_json) == {}
    phone_keys = (await query(userapi, BOB, ALICE))["device_keys"][ALICE]["PHONE"]
    assert phone_keys["signatures"][ALICE][alice.self_signing.key_id] == \
        signed_phone["signatures"][ALICE][alice.self_signing.key_id]
    answer = await userapi.perform_upload_signatures(pb.PerformUploadSignaturesRequest(
        user_id=ALICE, signed_objects_json=dumps({ALICE: {"PHONE": forged_phone, "NOPE": {"x": 1}}})))
    failures = json.loads(answer.failures_json)
    assert failures[ALICE]["PHONE"]["errcode"] == "M_INVALID_SIGNATURE"
    assert failures[ALICE]["NOPE"]["errcode"] == "M_NOT_FOUND"
    # Signatures that are not an object are a failure of that key, not of the request.
    for junk in ([1, 2], {ALICE: "x"}, "sig"):
        answer = await userapi.perform_upload_signatures(pb.PerformUploadSignaturesRequest(
            user_id=ALICE, signed_objects_json=dumps({ALICE: {"PHONE": {**phone.device_keys(), "signatures": junk}}})))
        assert json.loads(answer.failures_json)[ALICE]["PHONE"]["errcode"] == "M_INVALID_SIGNATURE"

    # Bob's user-signing key signs Alice's master key: only Bob sees it.
    bob = CrossSigning(BOB)
    await userapi.perform_upload_device_signing_keys(pb.PerformUploadDeviceSigningKeysRequest(
        user_id=BOB, master_key_json=dumps(bob.master_key()), user_signing_key_json=dumps(bob.user_signing_key())))
    signed_master = sign_json(alice.master_key(), BOB, bob.user_signing)
    answer = await userapi.perform_upload_signatures(pb.PerformUploadSignaturesRequest(
        user_id=BOB, signed_objects_json=dumps({ALICE: {public(alice.master): signed_master}})))
    assert json.loads(answer.failures_json) == {}
    assert BOB in (await query(userapi, BOB, ALICE))["master_keys"][ALICE]["signatures"]
    assert BOB not in (await query(userapi, ALICE, ALICE))["master_keys"][ALICE]["signatures"]


async def test_remote_device_lists(userapi: UserAPI) -> None:
    device = ClientDevice(REMOTE, "R1")
    update = dl_pb.DeviceListUpdate(user_id=REMOTE, device_id="R1", stream_id=5, prev_ids=[4],
                                    device_keys_json=dumps(device.device_keys()))
    # Nothing known about the user yet: resync.
    assert (await userapi.perform_remote_device_list_update(update)).needs_resync
    await userapi.perform_remote_device_list_resync(pb.UserDevices(
        user_id=REMOTE, stream_id=5, devices_json=dumps([{"device_id": "R1", "keys": device.device_keys(),
                                                         "device_display_name": "Remote phone"}])))
    found = await query(userapi, ALICE, REMOTE)
    assert found["device_keys"][REMOTE]["R1"]["unsigned"] == {"device_display_name": "Remote phone"}
    # The next update follows on: applied. A gap: resync. An old one: ignored.
    second = ClientDevice(REMOTE, "R2")
    assert not (await userapi.perform_remote_device_list_update(dl_pb.DeviceListUpdate(
        user_id=REMOTE, device_id="R2", stream_id=6, prev_ids=[5], device_keys_json=dumps(second.device_keys())))
    ).needs_resync
    assert set((await query(userapi, ALICE, REMOTE))["device_keys"][REMOTE]) == {"R1", "R2"}
    assert (await userapi.perform_remote_device_list_update(dl_pb.DeviceListUpdate(
        user_id=REMOTE, device_id="R3", stream_id=9, prev_ids=[8]))).needs_resync
    assert not (await userapi.perform_remote_device_list_update(dl_pb.DeviceListUpdate(
        user_id=REMOTE, device_id="R1", stream_id=6, prev_ids=[5], deleted=True))).needs_resync
    assert not (await userapi.perform_remote_device_list_update(dl_pb.DeviceListUpdate(
        user_id=REMOTE, device_id="R1", stream_id=7, prev_ids=[6], deleted=True))).needs_resync
    assert set((await query(userapi, ALICE, REMOTE))["device_keys"][REMOTE]) == {"R2"}
    with pytest.raises(errors.Forbidden):
        await userapi.perform_remote_device_list_update(dl_pb.DeviceListUpdate(user_id=ALICE, device_id="X"))
    # Signing keys of a remote user.
    carol = CrossSigning(REMOTE)
    await userapi.perform_remote_signing_key_update(pb.PerformRemoteSigningKeyUpdateRequest(
        user_id=REMOTE, master_key_json=dumps(carol.master_key()), self_signing_key_json=dumps(carol.self_signing_key())))
    assert REMOTE in (await query(userapi, ALICE, REMOTE))["master_keys"]


async def test_user_devices_for_federation(userapi: UserAPI) -> None:
    await userapi.perform_account_creation(pb.PerformAccountCreationRequest(localpart="alice", password="pw"))
    made = await userapi.perform_device_creation(pb.PerformDeviceCreationRequest(
        user_id=ALICE, device_id="PHONE", display_name="Alice's phone"))
    await upload(userapi, ClientDevice(ALICE, made.device_id))
    answer = await userapi.query_user_devices(pb.QueryUserDevicesRequest(user_id=ALICE))
    devices = json.loads(answer.devices_json)
    assert [(d["device_id"], d["device_display_name"]) for d in devices] == [("PHONE", "Alice's phone")]
    assert answer.stream_id >= 2  # the new device, then its keys
    # A deleted device's keys go with it.
    await userapi.perform_device_deletion(pb.PerformDeviceDeletionRequest(user_id=ALICE, device_ids=["PHONE"]))
    assert (await query(userapi, BOB, ALICE))["device_keys"][ALICE] == {}
    later = await userapi.query_user_devices(pb.QueryUserDevicesRequest(user_id=ALICE))
    assert json.loads(later.devices_json) == [] and later.stream_id > answer.stream_id


def backup_key(index: int, forwarded: int = 0, verified: bool = False, data: str = "x") -> dict[str, Any]:
    return {"first_message_index": index, "forwarded_count": forwarded, "is_verified": verified,
            "session_data": {"ciphertext": data}}


async def test_key_backup(userapi: UserAPI) -> None:
    with pytest.raises(errors.NotFound):
        await userapi.query_key_backup_version(pb.QueryKeyBackupVersionRequest(user_id=ALICE))
    action = pb.PerformKeyBackupVersionRequest
    algorithm = "m.megolm_backup.v1.curve25519-aes-sha2"
    v1 = await userapi.perform_key_backup_version(action(
        user_id=ALICE, action=action.CREATE, algorithm=algorithm, auth_data_json=dumps({"public_key": "a"})))
    assert v1.version == "1"
    rooms = {"!r:x": {"sessions": {"s1": backup_key(5), "s2": backup_key(1)}}}
    stored = await userapi.perform_key_backup_keys_upload(pb.PerformKeyBackupKeysUploadRequest(
        user_id=ALICE, version="1", rooms_json=dumps(rooms)))
    assert stored.count == 2
    # A worse key leaves the etag alone; a better one (lower index) replaces it.
    same = await userapi.perform_key_backup_keys_upload(pb.PerformKeyBackupKeysUploadRequest(
        user_id=ALICE, version="1", rooms_json=dumps({"!r:x": {"sessions": {"s1": backup_key(9, data="worse")}}})))
    assert same.etag == stored.etag
    better = await userapi.perform_key_backup_keys_upload(pb.PerformKeyBackupKeysUploadRequest(
        user_id=ALICE, version="1", rooms_json=dumps({"!r:x": {"sessions": {"s1": backup_key(2, data="better")}}})))
    assert better.etag != stored.etag and better.count == 2
    keys = json.loads((await userapi.query_key_backup_keys(pb.KeyBackupKeysSelector(
        user_id=ALICE, version="1", room_id="!r:x", session_id="s1"))).rooms_json)
    assert keys["!r:x"]["sessions"]["s1"]["session_data"] == {"ciphertext": "better"}
    current = await userapi.query_key_backup_version(pb.QueryKeyBackupVersionRequest(user_id=ALICE))
    assert (current.version, current.count, current.etag) == ("1", 2, better.etag)

    v2 = await userapi.perform_key_backup_version(action(
        user_id=ALICE, action=action.CREATE, algorithm=algorithm, auth_data_json=dumps({"public_key": "b"})))
    assert v2.version == "2"
    with pytest.raises(errors.WrongRoomKeysVersion) as wrong:
        await userapi.perform_key_backup_keys_upload(pb.PerformKeyBackupKeysUploadRequest(
            user_id=ALICE, version="1", rooms_json=dumps(rooms)))
    assert wrong.value.extra["current_version"] == "2"
    with pytest.raises(errors.NotFound):
        await userapi.perform_key_backup_keys_upload(pb.PerformKeyBackupKeysUploadRequest(
            user_id=ALICE, version="7", rooms_json=dumps(rooms)))
    with pytest.raises(errors.InvalidParam):
        await userapi.perform_key_backup_version(action(
            user_id=ALICE, action=action.UPDATE, version="2", algorithm="other", auth_data_json=b"{}"))
    await userapi.perform_key_backup_version(action(
        user_id=ALICE, action=action.UPDATE, version="2", algorithm=algorithm, auth_data_json=dumps({"public_key": "c"})))
    assert json.loads((await userapi.query_key_backup_version(pb.QueryKeyBackupVersionRequest(
        user_id=ALICE, version="2"))).auth_data_json) == {"public_key": "c"}
    deleted = await userapi.perform_key_backup_keys_deletion(pb.KeyBackupKeysSelector(
        user_id=ALICE, version="1", room_id="!r:x", session_id="s2"))
    assert deleted.count == 1
    await userapi.perform_key_backup_version(action(user_id=ALICE, action=action.DELETE, version="2"))
    with pytest.raises(errors.NotFound):
        await userapi.query_key_backup_version(pb.QueryKeyBackupVersionRequest(user_id=ALICE, version="2"))
    # Version 1 is the current one again; deleted version numbers are not reused.
    assert (await userapi.query_key_backup_version(pb.QueryKeyBackupVersionRequest(user_id=ALICE))).version == "1"
    v3 = await userapi.perform_key_backup_version(action(
        user_id=ALICE, action=action.CREATE, algorithm=algorithm, auth_data_json=b"{}"))
    assert v3.version == "3"


async def test_device_list_changes_are_published(tmp_path: Path) -> None:
    log = open_log(None, tmp_path / "log", "test")
    await log.start()
    component = await open_userapi(make_config(tmp_path), password_params=CHEAP_SCRYPT, log=log)
    api = component.api
    try:
        await api.perform_account_creation(pb.PerformAccountCreationRequest(localpart="alice", password="pw"))
        await api.perform_device_creation(pb.PerformDeviceCreationRequest(user_id=ALICE, device_id="PHONE"))
        phone = ClientDevice(ALICE, "PHONE")
        await upload(api, phone, one_time=phone.one_time_keys("a"))
        await upload(api, phone)  # the same keys again: no change
        alice = CrossSigning(ALICE)
        await api.perform_upload_device_signing_keys(pb.PerformUploadDeviceSigningKeysRequest(
            user_id=ALICE, master_key_json=dumps(alice.master_key()), self_signing_key_json=dumps(alice.self_signing_key())))
        await api.perform_device_deletion(pb.PerformDeviceDeletionRequest(user_id=ALICE, device_ids=["PHONE"]))
        await api.perform_remote_signing_key_update(pb.PerformRemoteSigningKeyUpdateRequest(
            user_id=REMOTE, master_key_json=dumps(CrossSigning(REMOTE).master_key())))
        consumer = await log.consumer("test", [USERAPI_DEVICE_LIST_UPDATE.name])
        records: list[LogRecord] = []
        while len(records) < 5:
            batch = await consumer.fetch(timeout=2.0)
            assert batch, f"only {len(records)} records"
            records += batch
        # One user's records keep their order (the key is the user ID); users' records interleave.
        assert all(r.key == dl_pb.DeviceListUpdate.FromString(r.value).user_id.encode() for r in records)
        updates = [dl_pb.DeviceListUpdate.FromString(r.value) for r in records if r.key == ALICE.encode()]
        remote = [dl_pb.DeviceListUpdate.FromString(r.value) for r in records if r.key == REMOTE.encode()]
        kinds = dl_pb.DeviceListUpdate
        assert [(u.kind, u.device_id, u.deleted, u.origin_local) for u in updates] == [
            (kinds.DEVICE, "PHONE", False, True), (kinds.DEVICE, "PHONE", False, True),
            (kinds.SIGNING_KEYS, "", False, True), (kinds.DEVICE, "PHONE", True, True)]
        assert [(u.kind, u.origin_local) for u in remote] == [(kinds.SIGNING_KEYS, False)]
        assert [(u.stream_id, list(u.prev_ids)) for u in updates[:2]] == [(1, []), (2, [1])]
        assert json.loads(updates[1].device_keys_json)["keys"] == phone.device_keys()["keys"]
        assert json.loads(updates[2].master_key_json)["keys"] == alice.master_key()["keys"]
        # The DEVICE records chain without gaps (a receiver resyncs on a gap).
        device_updates = [u for u in updates if u.kind == kinds.DEVICE]
        for before, after in itertools.pairwise(device_updates):
            assert list(after.prev_ids) == [before.stream_id]
        await consumer.close()
    finally:
        await component.close()
        await log.close()


@pytest.mark.postgres
async def test_keys_on_postgresql(tmp_path: Path, fresh_postgres_database: str) -> None:
    component = await open_userapi(make_config(tmp_path, fresh_postgres_database), password_params=CHEAP_SCRYPT)
    try:
        await test_upload_query_and_claim_until_the_fallback_key(component.api)
        await test_cross_signing_and_signatures(component.api)
        await test_key_backup(component.api)
    finally:
        await component.close()
