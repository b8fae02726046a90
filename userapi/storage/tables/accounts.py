"""userapi_accounts: one row per local account, keyed by localpart."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BigInteger, Boolean, Column, Table, Text, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from userapi.storage.tables import METADATA

accounts = Table(
    "userapi_accounts",
    METADATA,
    Column("localpart", Text, primary_key=True),
    Column("password_hash", Text, nullable=True),
    Column("created_ts", BigInteger, nullable=False),
    Column("is_guest", Boolean, nullable=False, default=False),
    Column("deactivated", Boolean, nullable=False, default=False),
)


@dataclass(frozen=True)
class AccountRow:
    localpart: str
    password_hash: str | None
    created_ts: int
    is_guest: bool
    deactivated: bool


class AccountsTable:
    async def insert(self, conn: AsyncConnection, row: AccountRow) -> bool:
        """Inserts the account; False when the localpart is taken."""
        try:
            async with conn.begin_nested():
                await conn.execute(accounts.insert().values(
                    localpart=row.localpart, password_hash=row.password_hash,
                    created_ts=row.created_ts, is_guest=row.is_guest,
                    deactivated=row.deactivated))
        except IntegrityError:
            return False
        return True

    async def select(self, conn: AsyncConnection, localpart: str) -> AccountRow | None:
        result = await conn.execute(select(
            accounts.c.localpart, accounts.c.password_hash, accounts.c.created_ts,
            accounts.c.is_guest, accounts.c.deactivated,
        ).where(accounts.c.localpart == localpart))
        found = result.first()
        if found is None:
            return None
        return AccountRow(localpart=found.localpart, password_hash=found.password_hash,
                          created_ts=int(found.created_ts), is_guest=bool(found.is_guest),
                          deactivated=bool(found.deactivated))

    async def exists(self, conn: AsyncConnection, localpart: str) -> bool:
        result = await conn.execute(select(accounts.c.localpart).where(accounts.c.localpart == localpart))
        return result.first() is not None

    async def update_password_hash(self, conn: AsyncConnection, localpart: str,
                                   password_hash: str | None) -> None:
        await conn.execute(update(accounts).where(accounts.c.localpart == localpart)
                           .values(password_hash=password_hash))

    async def upgrade_guest(self, conn: AsyncConnection, localpart: str, password_hash: str | None) -> bool:
        """Makes a guest account a full one; False unless it was a guest's."""
        result = await conn.execute(update(accounts).where(
            accounts.c.localpart == localpart, accounts.c.is_guest.is_(True), accounts.c.deactivated.is_(False))
            .values(is_guest=False, password_hash=password_hash))
        return bool(result.rowcount)

    async def mark_deactivated(self, conn: AsyncConnection, localpart: str) -> None:
        await conn.execute(update(accounts).where(accounts.c.localpart == localpart)
                           .values(deactivated=True, password_hash=None))
