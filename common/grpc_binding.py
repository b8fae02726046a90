"""What every gRPC binding shares: message size limits, and carrying
``common.errors.MatrixError`` across the wire in both directions, so a
caller sees the same exception whichever binding sat in between."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from common import errors

#: The room state of big rooms travels in one message.
MAX_MESSAGE_BYTES = 512 * 1024 * 1024
GRPC_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]

Req = TypeVar("Req")
Resp = TypeVar("Resp")


async def serve_call(method: Callable[[Req], Awaitable[Resp]], request: Req,
                     context: grpc.aio.ServicerContext[Any, Any]) -> Resp:
    """Server side: runs the implementation's method, turning a MatrixError
    into a gRPC status whose details ``call_remote`` reads back."""
    try:
        return await method(request)
    except errors.MatrixError as e:
        await context.abort(grpc.StatusCode[e.grpc_code], e.to_details())
        raise  # abort raises; this keeps the type checker honest


async def call_remote(rpc: Callable[[Req], Awaitable[Resp]], request: Req) -> Resp:
    """Client side: calls a stub's method, turning a gRPC failure back into
    the MatrixError the server raised."""
    try:
        return await rpc(request)
    except grpc.aio.AioRpcError as e:
        raise errors.from_grpc(e) from None


def insecure_channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address, options=GRPC_OPTIONS)
