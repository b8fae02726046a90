"""Reading fields of a request's JSON body with the spec's errors: a wrong
type is M_BAD_JSON, a missing required field M_MISSING_PARAM."""

from __future__ import annotations

from typing import Any

from common import errors


def optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise errors.BadJSON(f"{key} must be a string")
    return value


def require_str(body: dict[str, Any], key: str) -> str:
    value = optional_str(body, key)
    if value is None:
        raise errors.MissingParam(f"Missing parameter: {key}")
    return value


def optional_bool(body: dict[str, Any], key: str, default: bool = False) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise errors.BadJSON(f"{key} must be a boolean")
    return value


def optional_dict(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise errors.BadJSON(f"{key} must be an object")
    return value


def optional_list(body: dict[str, Any], key: str) -> list[Any]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise errors.BadJSON(f"{key} must be an array")
    return value


def optional_str_list(body: dict[str, Any], key: str) -> list[str]:
    values = optional_list(body, key)
    if not all(isinstance(v, str) for v in values):
        raise errors.BadJSON(f"{key} must be an array of strings")
    return values


# Synapse's limits on what a client names its device.
MAX_DEVICE_ID_LENGTH = 255
MAX_DEVICE_DISPLAY_NAME_LENGTH = 100


def device_fields(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """``device_id`` and ``initial_device_display_name`` of /login and
    /register, checked."""
    device_id = optional_str(body, "device_id")
    display_name = optional_str(body, "initial_device_display_name")
    if device_id is not None and len(device_id) > MAX_DEVICE_ID_LENGTH:
        raise errors.InvalidParam(f"device_id is longer than {MAX_DEVICE_ID_LENGTH} characters")
    if display_name is not None and len(display_name) > MAX_DEVICE_DISPLAY_NAME_LENGTH:
        raise errors.InvalidParam(
            f"initial_device_display_name is longer than {MAX_DEVICE_DISPLAY_NAME_LENGTH} characters")
    return device_id, display_name
