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
