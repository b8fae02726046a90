"""mxc:// URIs: new media IDs and the checks the spec asks for (content
repository, "Security considerations": a valid server name, and only
``A-Za-z0-9_-`` in the media ID, so no ID can walk a path)."""

from __future__ import annotations

import re
import secrets

from common import errors
from matrixlib.ids import is_valid_server_name

_MEDIA_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


def new_media_id() -> str:
    # token_urlsafe's alphabet is exactly A-Za-z0-9_-.
    return secrets.token_urlsafe(18)


def is_valid_media_id(media_id: str) -> bool:
    return _MEDIA_ID.fullmatch(media_id) is not None


def check_mxc_parts(server_name: str, media_id: str) -> None:
    """``NotFound`` for a URI no media can have (the spec's sanitising)."""
    if not is_valid_server_name(server_name) or not is_valid_media_id(media_id):
        raise errors.NotFound("Invalid media ID")


def mxc_uri(server_name: str, media_id: str) -> str:
    return f"mxc://{server_name}/{media_id}"
