"""What the user API writes to ``userapi.account_data`` (key: the user ID):
serialised ``AccountDataChange``s (protos/myelin/userapi/v1/account_data_log.proto)."""

from __future__ import annotations

from myelin.userapi.v1 import account_data_log_pb2

from common.log import Log
from common.topics import USERAPI_ACCOUNT_DATA


class AccountDataProducer:
    def __init__(self, log: Log) -> None:
        self._log = log

    async def send(self, change: account_data_log_pb2.AccountDataChange) -> int:
        """Appends one change; durable once this returns. Answers its offset."""
        record = await self._log.append(USERAPI_ACCOUNT_DATA.name, change.user_id.encode(),
                                        change.SerializeToString())
        return record.offset
