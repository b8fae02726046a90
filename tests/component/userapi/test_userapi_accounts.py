"""Accounts, devices and tokens through both bindings of the user API."""

from __future__ import annotations

from pathlib import Path

import pytest
from myelin.userapi.v1 import userapi_pb2 as pb
from sqlalchemy import select

from common import errors
from tests.component.userapi.conftest import CHEAP_SCRYPT, SERVER_NAME, make_config
from userapi.api import UserAPI
from userapi.component import UserAPIComponent, open_userapi
from userapi.internal.localparts import RESERVED_LOCALPARTS
from userapi.storage.tables.access_tokens import access_tokens
from userapi.storage.tables.accounts import accounts


async def register(api: UserAPI, localpart: str, password: str = "correct horse") -> pb.Account:
    return await api.perform_account_creation(
        pb.PerformAccountCreationRequest(localpart=localpart, password=password))


async def test_account_creation_and_availability(userapi: UserAPI) -> None:
    answer = await userapi.query_account_availability(pb.QueryAccountAvailabilityRequest(localpart="alice"))
    assert answer.available
    account = await register(userapi, "alice")
    assert account.user_id == f"@alice:{SERVER_NAME}"
    assert account.localpart == "alice"
    assert account.created_ts > 0
    assert not account.deactivated and not account.is_guest
    answer = await userapi.query_account_availability(pb.QueryAccountAvailabilityRequest(localpart="alice"))
    assert not answer.available


async def test_taken_localpart_is_user_in_use(userapi: UserAPI) -> None:
    await register(userapi, "bob")
    with pytest.raises(errors.UserInUse):
        await register(userapi, "bob", "another password")


@pytest.mark.parametrize("localpart", ["", "Alice", "al ice", "al:ice", "_bridge", "12345", "émile",
                                       "x" * 260, *sorted(RESERVED_LOCALPARTS)[:2]])
async def test_invalid_localparts_are_refused(userapi: UserAPI, localpart: str) -> None:
    with pytest.raises(errors.InvalidUsername):
        await register(userapi, localpart)
    with pytest.raises(errors.InvalidUsername):
        await userapi.query_account_availability(pb.QueryAccountAvailabilityRequest(localpart=localpart))


async def test_grammar_characters_are_allowed(userapi: UserAPI) -> None:
    account = await register(userapi, "a.b_c=d-e/f+g9")
    assert account.user_id == f"@a.b_c=d-e/f+g9:{SERVER_NAME}"


async def test_password_check(userapi: UserAPI) -> None:
    await register(userapi, "carol", "s3cret")
    account = await userapi.perform_password_check(
        pb.PerformPasswordCheckRequest(localpart="carol", password="s3cret"))
    assert account.user_id == f"@carol:{SERVER_NAME}"
    with pytest.raises(errors.Forbidden):
        await userapi.perform_password_check(pb.PerformPasswordCheckRequest(localpart="carol", password="S3cret"))
    with pytest.raises(errors.Forbidden):
        await userapi.perform_password_check(pb.PerformPasswordCheckRequest(localpart="nobody", password="x"))


async def test_account_without_password_cannot_log_in(userapi: UserAPI) -> None:
    await register(userapi, "nopass", "")
    with pytest.raises(errors.Forbidden):
        await userapi.perform_password_check(pb.PerformPasswordCheckRequest(localpart="nopass", password=""))


async def test_device_creation_gives_a_working_token(userapi: UserAPI) -> None:
    account = await register(userapi, "dave")
    device = await userapi.perform_device_creation(pb.PerformDeviceCreationRequest(
        user_id=account.user_id, display_name="phone", ip="10.1.2.3"))
    assert len(device.device_id) >= 8
    assert len(device.access_token) >= 43
    assert device.display_name == "phone"
    owner = await userapi.query_access_token(pb.QueryAccessTokenRequest(access_token=device.access_token))
    assert (owner.user_id, owner.device_id) == (account.user_id, device.device_id)
    assert owner.access_token == ""
    assert owner.last_seen_ip == "10.1.2.3"


async def test_unknown_token(userapi: UserAPI) -> None:
    for token in ["", "nonsense", "myt_" + "A" * 43]:
        with pytest.raises(errors.UnknownToken) as caught:
            await userapi.query_access_token(pb.QueryAccessTokenRequest(access_token=token))
        assert caught.value.to_json()["soft_logout"] is False


async def test_chosen_device_id_is_reused_and_old_token_revoked(userapi: UserAPI) -> None:
    account = await register(userapi, "erin")
    first = await userapi.perform_device_creation(pb.PerformDeviceCreationRequest(
        user_id=account.user_id, device_id="LAPTOP", display_name="laptop"))
    second = await userapi.perform_device_creation(pb.PerformDeviceCreationRequest(
        user_id=account.user_id, device_id="LAPTOP"))
    assert second.device_id == "LAPTOP"
    assert second.display_name == "laptop"  # kept when the new login names none
    assert second.access_token != first.access_token
    with pytest.raises(errors.UnknownToken):
        await userapi.query_access_token(pb.QueryAccessTokenRequest(access_token=first.access_token))
    found = await userapi.query_access_token(pb.QueryAccessTokenRequest(access_token=second.access_token))
    assert found.device_id == "LAPTOP"
    devices = await userapi.query_devices(pb.QueryDevicesRequest(user_id=account.user_id))
    assert [d.device_id for d in devices.devices] == ["LAPTOP"]


async def test_device_for_unknown_user_is_not_found(userapi: UserAPI) -> None:
    with pytest.raises(errors.NotFound):
        await userapi.perform_device_creation(pb.PerformDeviceCreationRequest(
            user_id=f"@ghost:{SERVER_NAME}"))
    with pytest.raises(errors.NotFound):
        await userapi.perform_device_creation(pb.PerformDeviceCreationRequest(user_id="@x:elsewhere.org"))


async def test_device_deletion(userapi: UserAPI) -> None:
    account = await register(userapi, "frank")
    made = [await userapi.perform_device_creation(pb.PerformDeviceCreationRequest(user_id=account.user_id))
            for _ in range(4)]
    answer = await userapi.perform_device_deletion(pb.PerformDeviceDeletionRequest(
        user_id=account.user_id, device_ids=[made[0].device_id]))
    assert answer.deleted == 1
    with pytest.raises(errors.UnknownToken):
        await userapi.query_access_token(pb.QueryAccessTokenRequest(access_token=made[0].access_token))
    # All but one (a password change keeps the device that made it).
    answer = await userapi.perform_device_deletion(pb.PerformDeviceDeletionRequest(
        user_id=account.user_id, except_device_id=made[3].device_id))
    assert answer.deleted == 2
    left = await userapi.query_devices(pb.QueryDevicesRequest(user_id=account.user_id))
    assert [d.device_id for d in left.devices] == [made[3].device_id]
    await userapi.query_access_token(pb.QueryAccessTokenRequest(access_token=made[3].access_token))
    for device in made[1:3]:
        with pytest.raises(errors.UnknownToken):
            await userapi.query_access_token(pb.QueryAccessTokenRequest(access_token=device.access_token))
    answer = await userapi.perform_device_deletion(pb.PerformDeviceDeletionRequest(user_id=account.user_id))
    assert answer.deleted == 1
    assert not (await userapi.query_devices(pb.QueryDevicesRequest(user_id=account.user_id))).devices


async def test_devices_of_one_user_do_not_touch_another(userapi: UserAPI) -> None:
    gina = await register(userapi, "gina")
    hank = await register(userapi, "hank")
    gina_device = await userapi.perform_device_creation(pb.PerformDeviceCreationRequest(
        user_id=gina.user_id, device_id="SAME"))
    await userapi.perform_device_creation(pb.PerformDeviceCreationRequest(user_id=hank.user_id, device_id="SAME"))
    await userapi.perform_device_deletion(pb.PerformDeviceDeletionRequest(user_id=hank.user_id))
    found = await userapi.query_access_token(pb.QueryAccessTokenRequest(access_token=gina_device.access_token))
    assert found.user_id == gina.user_id


async def test_secrets_are_not_stored_in_clear(userapi_component: UserAPIComponent) -> None:
    api = userapi_component.api
    account = await register(api, "ivy", "hunter2")
    device = await api.perform_device_creation(pb.PerformDeviceCreationRequest(user_id=account.user_id))
    async with userapi_component.database.connect() as conn:
        password_hash = (await conn.execute(select(accounts.c.password_hash))).scalar_one()
        stored_tokens = list((await conn.execute(select(access_tokens.c.token_sha256))).scalars())
    assert "hunter2" not in password_hash and password_hash.startswith("scrypt$")
    assert device.access_token not in stored_tokens and len(stored_tokens) == 1


async def test_accounts_survive_a_restart(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    first = await open_userapi(config, password_params=CHEAP_SCRYPT)
    account = await register(first.api, "jane", "pw")
    device = await first.api.perform_device_creation(pb.PerformDeviceCreationRequest(user_id=account.user_id))
    await first.close()
    second = await open_userapi(config, password_params=CHEAP_SCRYPT)
    try:
        await second.api.perform_password_check(pb.PerformPasswordCheckRequest(localpart="jane", password="pw"))
        found = await second.api.query_access_token(pb.QueryAccessTokenRequest(access_token=device.access_token))
        assert found.user_id == account.user_id
    finally:
        await second.close()


@pytest.mark.postgres
async def test_on_postgresql(tmp_path: Path, fresh_postgres_database: str) -> None:
    component = await open_userapi(make_config(tmp_path, fresh_postgres_database),
                                   password_params=CHEAP_SCRYPT)
    try:
        api = component.api
        account = await register(api, "kim", "pw")
        with pytest.raises(errors.UserInUse):
            await register(api, "kim", "pw")
        await api.perform_password_check(pb.PerformPasswordCheckRequest(localpart="kim", password="pw"))
        device = await api.perform_device_creation(pb.PerformDeviceCreationRequest(
            user_id=account.user_id, device_id="PG"))
        again = await api.perform_device_creation(pb.PerformDeviceCreationRequest(
            user_id=account.user_id, device_id="PG"))
        with pytest.raises(errors.UnknownToken):
            await api.query_access_token(pb.QueryAccessTokenRequest(access_token=device.access_token))
        found = await api.query_access_token(pb.QueryAccessTokenRequest(access_token=again.access_token))
        assert found.device_id == "PG"
        deleted = await api.perform_device_deletion(pb.PerformDeviceDeletionRequest(user_id=account.user_id))
        assert deleted.deleted == 1
    finally:
        await component.close()


async def test_guest_accounts_and_their_upgrade(userapi: UserAPI) -> None:
    guest = await userapi.perform_account_creation(pb.PerformAccountCreationRequest(localpart="4711", is_guest=True))
    assert guest.is_guest
    device = await userapi.perform_device_creation(pb.PerformDeviceCreationRequest(user_id=guest.user_id))
    assert device.is_guest
    owner = await userapi.query_access_token(pb.QueryAccessTokenRequest(access_token=device.access_token))
    assert owner.is_guest and owner.user_id == guest.user_id
    assert (await userapi.query_account(pb.QueryAccountRequest(localpart="4711"))).is_guest
    with pytest.raises(errors.NotFound):
        await userapi.query_account(pb.QueryAccountRequest(localpart="nobody"))

    upgraded = await userapi.perform_guest_upgrade(pb.PerformGuestUpgradeRequest(localpart="4711",
                                                                                  password="new password"))
    assert upgraded.user_id == guest.user_id and not upgraded.is_guest
    owner = await userapi.query_access_token(pb.QueryAccessTokenRequest(access_token=device.access_token))
    assert not owner.is_guest
    await userapi.perform_password_check(pb.PerformPasswordCheckRequest(localpart="4711", password="new password"))
    # Only a guest's account can be upgraded, once.
    with pytest.raises(errors.NotFound):
        await userapi.perform_guest_upgrade(pb.PerformGuestUpgradeRequest(localpart="4711", password="x"))
    await register(userapi, "carol")
    with pytest.raises(errors.NotFound):
        await userapi.perform_guest_upgrade(pb.PerformGuestUpgradeRequest(localpart="carol", password="x"))
    carol = await userapi.perform_device_creation(pb.PerformDeviceCreationRequest(user_id=f"@carol:{SERVER_NAME}"))
    assert not carol.is_guest
