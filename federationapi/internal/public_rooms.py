"""The published room directory in the split deployment, where the client
API process owns the list: read through the client API's own GET
/publicRooms (unauthenticated, ordered by joined members then room ID,
``o<offset>`` tokens), with the federation filter applied here.

In the single process the federation API is handed the client API's
``PublishedRoomDirectory`` instead.
"""

from __future__ import annotations

from typing import Any

import httpx

from common import errors
from common.room_directory import parse_offset_token, public_room_matches

PAGE = 500
PUBLIC_ROOMS_PATH = "/_matrix/client/v3/publicRooms"


class ClientAPIPublicRooms:
    """``PublicRoomDirectory`` over the client API's HTTP address."""

    def __init__(self, client_api_address: str, *, http: httpx.AsyncClient | None = None) -> None:
        self._base = client_api_address if "://" in client_api_address else f"http://{client_api_address}"
        self._http = http or httpx.AsyncClient(timeout=30)

    async def close(self) -> None:
        await self._http.aclose()

    async def _page(self, limit: int, since: str | None) -> dict[str, Any]:
        params: dict[str, str | int] = {"limit": limit}
        if since:
            params["since"] = since
        try:
            response = await self._http.get(self._base + PUBLIC_ROOMS_PATH, params=params)
        except httpx.HTTPError as e:
            raise errors.Unavailable(f"The room directory is unavailable: {e}") from None
        if response.status_code == 400:
            raise errors.InvalidParam("Invalid since token")
        if response.status_code != 200:
            raise errors.Unavailable(f"The room directory answered {response.status_code}")
        body: dict[str, Any] = response.json()
        return body

    async def public_rooms(self, *, limit: int, since: str | None, search_term: str | None,
                           room_types: list[Any] | None) -> dict[str, Any]:
        if not search_term and room_types is None:
            return await self._page(limit, since)
        offset = parse_offset_token(since)
        entries: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = await self._page(PAGE, token)
            entries += [e for e in page.get("chunk", []) if public_room_matches(e, search_term, room_types)]
            token = page.get("next_batch")
            if not token:
                break
        body: dict[str, Any] = {"chunk": entries[offset:offset + limit], "total_room_count_estimate": len(entries)}
        if offset + limit < len(entries):
            body["next_batch"] = f"o{offset + limit}"
        if offset > 0:
            body["prev_batch"] = f"o{max(0, offset - limit)}"
        return body
