"""The registry of log topics: one line each, with its key and payload."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import Message
from myelin.roomserver.v1 import input_log_pb2, output_log_pb2
from myelin.userapi.v1 import account_data_log_pb2


@dataclass(frozen=True)
class Topic:
    name: str
    # What the key is; records with the same key stay in order.
    key: str
    message: type[Message]


ROOMSERVER_INPUT = Topic("roomserver.input", key="room_id", message=input_log_pb2.InputRoomEventsEntry)
ROOMSERVER_OUTPUT = Topic("roomserver.output", key="room_id", message=output_log_pb2.OutputEvent)
USERAPI_ACCOUNT_DATA = Topic("userapi.account_data", key="user_id", message=account_data_log_pb2.AccountDataChange)

ALL_TOPICS = [ROOMSERVER_INPUT, ROOMSERVER_OUTPUT, USERAPI_ACCOUNT_DATA]
