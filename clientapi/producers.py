"""What the client API writes to its EDU topics (``edu_log.proto``):
typing, receipts and read markers, to-device messages. The sync API
consumes them; a write returns once the record is durably on the log."""

from __future__ import annotations

from google.protobuf.message import Message
from myelin.clientapi.v1 import edu_log_pb2

from common import errors
from common.log import Log
from common.topics import CLIENTAPI_RECEIPT, CLIENTAPI_SEND_TO_DEVICE, CLIENTAPI_TYPING, Topic


async def _append(log: Log | None, topic: Topic, key: str, message: Message) -> None:
    if log is None:
        # A client API built without a log (some tests) cannot take EDUs.
        raise errors.Unavailable("this server does not take ephemeral data")
    await log.append(topic.name, key.encode(), message.SerializeToString())


async def produce_typing(log: Log | None, update: edu_log_pb2.TypingUpdate) -> None:
    await _append(log, CLIENTAPI_TYPING, update.room_id, update)


async def produce_receipt(log: Log | None, receipt: edu_log_pb2.ReceiptUpdate) -> None:
    await _append(log, CLIENTAPI_RECEIPT, receipt.room_id, receipt)


async def produce_to_device(log: Log | None, message: edu_log_pb2.ToDeviceMessage) -> None:
    await _append(log, CLIENTAPI_SEND_TO_DEVICE, message.target_user_id, message)
