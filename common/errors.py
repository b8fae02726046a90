"""The one exception tree of Myelin.

Every failure a component reports to a caller is a ``MatrixError``. It knows
its Matrix ``errcode``, the HTTP status the client-server and server-server
APIs answer with, and the gRPC status code that carries it between
processes, so an error raised in the room server reaches a client with the
same errcode whichever binding sat in between::

    MatrixError                      (M_UNKNOWN, 500)
    ├── BadJSON                      (M_BAD_JSON, 400)
    ├── NotJSON                      (M_NOT_JSON, 400)
    ├── MissingParam                 (M_MISSING_PARAM, 400)
    ├── InvalidParam                 (M_INVALID_PARAM, 400)
    ├── TooLarge                     (M_TOO_LARGE, 413)
    ├── Forbidden                    (M_FORBIDDEN, 403)
    ├── UnknownToken                 (M_UNKNOWN_TOKEN, 401)
    ├── MissingToken                 (M_MISSING_TOKEN, 401)
    ├── NotFound                     (M_NOT_FOUND, 404)
    ├── Unrecognized                 (M_UNRECOGNIZED, 404 or 405)
    ├── UserInUse                    (M_USER_IN_USE, 400)
    ├── InvalidUsername              (M_INVALID_USERNAME, 400)
    ├── Exclusive                    (M_EXCLUSIVE, 400)
    ├── UnsupportedRoomVersion       (M_UNSUPPORTED_ROOM_VERSION, 400)
    ├── IncompatibleRoomVersion      (M_INCOMPATIBLE_ROOM_VERSION, 400)
    ├── RoomInUse                    (M_ROOM_IN_USE, 400)
    ├── LimitExceeded                (M_LIMIT_EXCEEDED, 429, retry_after_ms)
    ├── WrongRoomKeysVersion         (M_WRONG_ROOM_KEYS_VERSION, 403, current_version)
    ├── InvalidSignature             (M_INVALID_SIGNATURE, 400)
    └── Unavailable                  (M_UNKNOWN, 503): a component could not be reached
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    # Only the gRPC bindings need grpc itself: the single process never imports it.
    import grpc


class MatrixError(Exception):
    """A failure with a Matrix errcode. ``extra`` goes into the JSON body."""

    errcode: ClassVar[str] = "M_UNKNOWN"
    http_status: ClassVar[int] = 500
    #: The name of the ``grpc.StatusCode`` this error travels as over a gRPC binding.
    grpc_code: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str = "", *, extra: dict[str, Any] | None = None,
                 http_status: int | None = None) -> None:
        super().__init__(message or self.errcode)
        self.message = message or self.errcode
        self.extra = dict(extra or {})
        if http_status is not None:
            self.status = http_status
        else:
            self.status = self.http_status

    def to_json(self) -> dict[str, Any]:
        """The spec's error body: ``errcode``, ``error`` and any extra fields."""
        return {"errcode": self.errcode, "error": self.message, **self.extra}

    def to_details(self) -> str:
        """What travels in a gRPC status' details, read back by ``from_grpc``."""
        return json.dumps({"errcode": self.errcode, "error": self.message,
                           "extra": self.extra, "status": self.status})


class BadJSON(MatrixError):
    errcode = "M_BAD_JSON"
    http_status = 400
    grpc_code = "INVALID_ARGUMENT"


class NotJSON(MatrixError):
    errcode = "M_NOT_JSON"
    http_status = 400
    grpc_code = "INVALID_ARGUMENT"


class MissingParam(MatrixError):
    errcode = "M_MISSING_PARAM"
    http_status = 400
    grpc_code = "INVALID_ARGUMENT"


class InvalidParam(MatrixError):
    errcode = "M_INVALID_PARAM"
    http_status = 400
    grpc_code = "INVALID_ARGUMENT"


class TooLarge(MatrixError):
    errcode = "M_TOO_LARGE"
    http_status = 413
    grpc_code = "INVALID_ARGUMENT"


class Forbidden(MatrixError):
    errcode = "M_FORBIDDEN"
    http_status = 403
    grpc_code = "PERMISSION_DENIED"


class UnknownToken(MatrixError):
    errcode = "M_UNKNOWN_TOKEN"
    http_status = 401
    grpc_code = "UNAUTHENTICATED"


class MissingToken(MatrixError):
    errcode = "M_MISSING_TOKEN"
    http_status = 401
    grpc_code = "UNAUTHENTICATED"


class NotFound(MatrixError):
    errcode = "M_NOT_FOUND"
    http_status = 404
    grpc_code = "NOT_FOUND"


class Unrecognized(MatrixError):
    errcode = "M_UNRECOGNIZED"
    http_status = 404
    grpc_code = "UNIMPLEMENTED"


class UserInUse(MatrixError):
    errcode = "M_USER_IN_USE"
    http_status = 400
    grpc_code = "ALREADY_EXISTS"


class InvalidUsername(MatrixError):
    errcode = "M_INVALID_USERNAME"
    http_status = 400
    grpc_code = "INVALID_ARGUMENT"


class Exclusive(MatrixError):
    errcode = "M_EXCLUSIVE"
    http_status = 400
    grpc_code = "FAILED_PRECONDITION"


class UnsupportedRoomVersion(MatrixError):
    errcode = "M_UNSUPPORTED_ROOM_VERSION"
    http_status = 400
    grpc_code = "INVALID_ARGUMENT"


class IncompatibleRoomVersion(MatrixError):
    errcode = "M_INCOMPATIBLE_ROOM_VERSION"
    http_status = 400
    grpc_code = "FAILED_PRECONDITION"


class RoomInUse(MatrixError):
    errcode = "M_ROOM_IN_USE"
    http_status = 400
    grpc_code = "ALREADY_EXISTS"


class LimitExceeded(MatrixError):
    errcode = "M_LIMIT_EXCEEDED"
    http_status = 429
    grpc_code = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str = "Too many requests", *, retry_after_ms: int) -> None:
        super().__init__(message, extra={"retry_after_ms": retry_after_ms})
        self.retry_after_ms = retry_after_ms


class WrongRoomKeysVersion(MatrixError):
    """Room keys sent to a backup version that is not the current one;
    ``extra`` carries ``current_version``."""
    errcode = "M_WRONG_ROOM_KEYS_VERSION"
    http_status = 403
    grpc_code = "FAILED_PRECONDITION"


class InvalidSignature(MatrixError):
    errcode = "M_INVALID_SIGNATURE"
    http_status = 400
    grpc_code = "INVALID_ARGUMENT"


class Unavailable(MatrixError):
    errcode = "M_UNKNOWN"
    http_status = 503
    grpc_code = "UNAVAILABLE"


_BY_ERRCODE: dict[str, type[MatrixError]] = {
    cls.errcode: cls
    for cls in [BadJSON, NotJSON, MissingParam, InvalidParam, TooLarge, Forbidden, UnknownToken,
                MissingToken, NotFound, Unrecognized, UserInUse, InvalidUsername, Exclusive,
                UnsupportedRoomVersion, IncompatibleRoomVersion, RoomInUse, WrongRoomKeysVersion,
                InvalidSignature]
}


def from_grpc(error: grpc.aio.AioRpcError) -> MatrixError:
    """Turns a gRPC failure back into the ``MatrixError`` the server raised."""
    import grpc

    details = error.details() or ""
    try:
        body = json.loads(details)
        errcode = str(body["errcode"])
        message = str(body.get("error", ""))
        extra = dict(body.get("extra") or {})
        status = int(body.get("status", 0)) or None
    except (ValueError, KeyError, TypeError):
        if error.code() == grpc.StatusCode.UNAVAILABLE:
            return Unavailable(f"component unavailable: {details}")
        return MatrixError(f"{error.code().name}: {details}")
    if errcode == LimitExceeded.errcode:
        return LimitExceeded(message, retry_after_ms=int(extra.get("retry_after_ms", 0)))
    cls = _BY_ERRCODE.get(errcode, MatrixError)
    result = cls(message, extra=extra, http_status=status)
    if cls is MatrixError and errcode != MatrixError.errcode:
        # An errcode this tree has no class for still reaches the client as it was.
        result.errcode = errcode  # type: ignore[misc]
    return result
