"""The sync API's opaque tokens.

``StreamToken`` ("s<pdu>_<typing>_<receipt>_<presence>_<to_device>_<account_data>_<device_list>")
is /sync's ``next_batch``: one position per stream the sync API serves (room
events, typing, receipts and read markers, presence, to-device messages,
account data, device list changes).
Each stream counts on its own. A shorter token ("s12", "s12_0_0") parses
with the missing positions at zero; positions of streams a newer version
added are ignored.

``TopologyToken`` ("t<depth>-<stream>") is a point between two events in a
room's topological order (depth, then stream position), used by
``/messages`` and /sync's ``prev_batch``: an event is before the token when
its (depth, stream position) is smaller, after it otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from common import errors

STREAM_NAMES = ("pdu", "typing", "receipt", "presence", "to_device", "account_data", "device_list")


@dataclass(frozen=True, order=True)
class StreamToken:
    pdu: int
    typing: int = 0
    receipt: int = 0
    presence: int = 0
    to_device: int = 0
    account_data: int = 0
    device_list: int = 0

    def __str__(self) -> str:
        return "s" + "_".join(str(getattr(self, name)) for name in STREAM_NAMES)

    def position(self, stream: str) -> int:
        value: int = getattr(self, stream)
        return value

    @classmethod
    def parse(cls, text: str) -> StreamToken:
        if not text.startswith("s"):
            raise errors.InvalidParam(f"invalid stream token {text!r}")
        try:
            parts = [int(part) for part in text[1:].split("_")]
        except ValueError:
            raise errors.InvalidParam(f"invalid stream token {text!r}") from None
        if not parts or any(part < 0 for part in parts):
            raise errors.InvalidParam(f"invalid stream token {text!r}")
        # Positions of streams this version does not know are ignored.
        parts = parts[: len(STREAM_NAMES)]
        parts += [0] * (len(STREAM_NAMES) - len(parts))
        return cls(*parts)


@dataclass(frozen=True, order=True)
class TopologyToken:
    depth: int
    stream: int

    def __str__(self) -> str:
        return f"t{self.depth}-{self.stream}"

    @classmethod
    def parse(cls, text: str) -> TopologyToken:
        if not text.startswith("t"):
            raise errors.InvalidParam(f"invalid pagination token {text!r}")
        depth, sep, stream = text[1:].rpartition("-")
        try:
            if not sep:
                raise ValueError(text)
            return cls(int(depth), int(stream))
        except ValueError:
            raise errors.InvalidParam(f"invalid pagination token {text!r}") from None


PaginationToken = StreamToken | TopologyToken


def parse_pagination_token(text: str) -> PaginationToken:
    """A ``from``/``to``/``at`` token: a topology token or a /sync stream token."""
    if text.startswith("t"):
        return TopologyToken.parse(text)
    return StreamToken.parse(text)
