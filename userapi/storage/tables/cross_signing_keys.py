"""userapi_cross_signing_keys: a user's master, self-signing and
user-signing keys (local users, and remote users' master and self-signing
keys learnt over federation); userapi_cross_signing_sigs: signatures
uploaded for devices and cross-signing keys, merged into them when read."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Column, Table, Text, delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from userapi.storage.tables import METADATA

cross_signing_keys = Table(
    "userapi_cross_signing_keys",
    METADATA,
    Column("user_id", Text, primary_key=True),
    Column("key_type", Text, primary_key=True),
    Column("key_json", Text, nullable=False),
)

cross_signing_sigs = Table(
    "userapi_cross_signing_sigs",
    METADATA,
    Column("origin_user_id", Text, primary_key=True),
    Column("origin_key_id", Text, primary_key=True),
    Column("target_user_id", Text, primary_key=True),
    Column("target_key_id", Text, primary_key=True),
    Column("signature", Text, nullable=False),
)

# (origin user, origin key ID) -> signature, for one target.
Signatures = dict[tuple[str, str], str]


class CrossSigningKeysTable:
    async def select_for_users(self, conn: AsyncConnection, user_ids: Sequence[str]
                               ) -> dict[str, dict[str, str]]:
        """user ID -> key type -> key JSON."""
        if not user_ids:
            return {}
        t = cross_signing_keys.c
        result = await conn.execute(select(t.user_id, t.key_type, t.key_json).where(
            t.user_id.in_(list(user_ids))))
        out: dict[str, dict[str, str]] = {}
        for row in result:
            out.setdefault(row.user_id, {})[row.key_type] = row.key_json
        return out

    async def delete_user(self, conn: AsyncConnection, user_id: str, key_types: Sequence[str]) -> None:
        t = cross_signing_keys.c
        await conn.execute(delete(cross_signing_keys).where(t.user_id == user_id, t.key_type.in_(list(key_types))))


class CrossSigningSigsTable:
    async def select_for_targets(self, conn: AsyncConnection, targets: Sequence[tuple[str, str]]
                                 ) -> dict[tuple[str, str], Signatures]:
        """(target user, target key ID) -> its signatures."""
        if not targets:
            return {}
        t = cross_signing_sigs.c
        result = await conn.execute(select(t.origin_user_id, t.origin_key_id, t.target_user_id, t.target_key_id,
                                           t.signature).where(
            tuple_(t.target_user_id, t.target_key_id).in_(list(targets))))
        out: dict[tuple[str, str], Signatures] = {}
        for row in result:
            out.setdefault((row.target_user_id, row.target_key_id), {})[
                (row.origin_user_id, row.origin_key_id)] = row.signature
        return out

    async def delete_for_target(self, conn: AsyncConnection, target_user_id: str,
                                target_key_ids: Sequence[str]) -> None:
        t = cross_signing_sigs.c
        await conn.execute(delete(cross_signing_sigs).where(
            t.target_user_id == target_user_id, t.target_key_id.in_(list(target_key_ids))))
