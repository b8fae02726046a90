"""The registry of log topics: one line each, with its key and payload."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import Message
from myelin.clientapi.v1 import edu_log_pb2
from myelin.roomserver.v1 import input_log_pb2, output_log_pb2
from myelin.userapi.v1 import account_data_log_pb2, device_list_log_pb2


@dataclass(frozen=True)
class Topic:
    name: str
    # What the key is; records with the same key stay in order.
    key: str
    message: type[Message]


ROOMSERVER_INPUT = Topic("roomserver.input", key="room_id", message=input_log_pb2.InputRoomEventsEntry)
ROOMSERVER_OUTPUT = Topic("roomserver.output", key="room_id", message=output_log_pb2.OutputEvent)
# The client API's EDUs (edu_log.proto). Typing and presence are ephemeral:
# they are worth keeping for minutes only, and a reader that lost its
# position simply goes on from the oldest record kept.
CLIENTAPI_TYPING = Topic("clientapi.typing", key="room_id", message=edu_log_pb2.TypingUpdate)
CLIENTAPI_RECEIPT = Topic("clientapi.receipt", key="room_id", message=edu_log_pb2.ReceiptUpdate)
CLIENTAPI_PRESENCE = Topic("clientapi.presence", key="user_id", message=edu_log_pb2.PresenceUpdate)
CLIENTAPI_SEND_TO_DEVICE = Topic("clientapi.send_to_device", key="target_user_id",
                                 message=edu_log_pb2.ToDeviceMessage)
USERAPI_ACCOUNT_DATA = Topic("userapi.account_data", key="user_id", message=account_data_log_pb2.AccountDataChange)
# A user's devices or E2EE keys changed (device_list_log.proto); local and remote users.
USERAPI_DEVICE_LIST_UPDATE = Topic("userapi.device_list_update", key="user_id",
                                   message=device_list_log_pb2.DeviceListUpdate)

ALL_TOPICS = [ROOMSERVER_INPUT, ROOMSERVER_OUTPUT, USERAPI_ACCOUNT_DATA, USERAPI_DEVICE_LIST_UPDATE, CLIENTAPI_TYPING,
              CLIENTAPI_RECEIPT, CLIENTAPI_PRESENCE, CLIENTAPI_SEND_TO_DEVICE]
