"""Which localparts may be registered.

A localpart may use only the characters the spec's user ID grammar allows
(``a-z 0-9 . _ = - / +``), and the whole user ID may be at most 255 bytes.
As Synapse does, registration also refuses:

* localparts starting with ``_``: the namespace application services use by
  convention (``_irc_bridge``, ``_discord_...``);
* all-digit localparts: kept for guest accounts, which are numbered;
* ``RESERVED_LOCALPARTS``: names a server's operators rely on or that would
  pass for the server itself in a client (notices, abuse reports). Operators
  create such accounts by other means, never through open registration.
"""

from __future__ import annotations

import re

from common import errors

RESERVED_LOCALPARTS = frozenset({
    "myelin",       # the server's own name, for server notices
    "server",
    "system",
    "abuse",        # abuse reports are sent to abuse@ by convention
    "postmaster",
    "hostmaster",
    "security",
})

_ALLOWED = re.compile(r"^[a-z0-9._=\-/+]+$")

MAX_USER_ID_BYTES = 255


def check_localpart_syntax(localpart: str, server_name: str) -> None:
    """Raises InvalidUsername unless ``localpart`` is a valid localpart."""
    if not localpart:
        raise errors.InvalidUsername("User ID cannot be empty")
    if not _ALLOWED.match(localpart):
        raise errors.InvalidUsername("User ID can only contain characters a-z, 0-9, or '=_-./+'")
    if len(f"@{localpart}:{server_name}".encode()) > MAX_USER_ID_BYTES:
        raise errors.InvalidUsername(f"User ID may not be longer than {MAX_USER_ID_BYTES} characters")


def check_registrable(localpart: str, server_name: str, *, is_guest: bool = False) -> None:
    """Raises InvalidUsername unless a client may register ``localpart``."""
    check_localpart_syntax(localpart, server_name)
    if localpart.startswith("_"):
        raise errors.InvalidUsername("User ID may not begin with _ (reserved for application services)")
    if localpart.isdigit() and not is_guest:
        raise errors.InvalidUsername("Numeric user IDs are reserved for guest users")
    if localpart in RESERVED_LOCALPARTS:
        raise errors.InvalidUsername(f"The user ID @{localpart}:{server_name} is reserved")
