"""What the user API writes to ``userapi.account_data`` (key: the user ID):
serialised ``AccountDataChange``s (protos/myelin/userapi/v1/account_data_log.proto);
and to ``userapi.device_list_update`` (key: the user ID): ``DeviceListUpdate``s
(device_list_log.proto)."""

from __future__ import annotations

from myelin.userapi.v1 import account_data_log_pb2, device_list_log_pb2

from common.log import Log
from common.topics import USERAPI_ACCOUNT_DATA, USERAPI_DEVICE_LIST_UPDATE


class AccountDataProducer:
    def __init__(self, log: Log) -> None:
        self._log = log

    async def send(self, change: account_data_log_pb2.AccountDataChange) -> int:
        """Appends one change; durable once this returns. Answers its offset."""
        record = await self._log.append(USERAPI_ACCOUNT_DATA.name, change.user_id.encode(),
                                        change.SerializeToString())
        return record.offset


class DeviceListProducer:
    """Writes ``DeviceListUpdate``s to ``userapi.device_list_update`` (key: the user ID)."""

    def __init__(self, log: Log) -> None:
        self._log = log

    async def send(self, update: device_list_log_pb2.DeviceListUpdate) -> int:
        record = await self._log.append(USERAPI_DEVICE_LIST_UPDATE.name, update.user_id.encode(),
                                        update.SerializeToString())
        return record.offset
