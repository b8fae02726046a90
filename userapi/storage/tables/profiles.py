"""userapi_profiles: a local account's display name and avatar URL."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Column, Table, Text, select
from sqlalchemy.ext.asyncio import AsyncConnection

from userapi.storage.tables import METADATA

profiles = Table(
    "userapi_profiles",
    METADATA,
    Column("localpart", Text, primary_key=True),
    Column("display_name", Text, nullable=False, default=""),
    Column("avatar_url", Text, nullable=False, default=""),
)


@dataclass(frozen=True)
class ProfileRow:
    localpart: str
    display_name: str
    avatar_url: str


class ProfilesTable:
    async def select(self, conn: AsyncConnection, localpart: str) -> ProfileRow | None:
        result = await conn.execute(select(profiles.c.display_name, profiles.c.avatar_url)
                                    .where(profiles.c.localpart == localpart))
        found = result.first()
        if found is None:
            return None
        return ProfileRow(localpart, found.display_name or "", found.avatar_url or "")
