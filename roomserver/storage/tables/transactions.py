"""``roomserver_transactions``: which event a local client's transaction ID
produced, written in the same transaction as the event (only when it was
accepted), so a retransmission is answered with that event whichever process
it reaches and whatever restarted in between. Rows older than a day are
deleted (``RoomserverDatabase.forget_old_transactions``), as clients retry
within seconds or minutes."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Table, Text

from roomserver.storage.tables.base import metadata

transactions = Table(
    "roomserver_transactions",
    metadata,
    Column("room_id", Text, primary_key=True),
    Column("user_id", Text, primary_key=True),
    Column("device_id", Text, primary_key=True),
    Column("scope", Text, primary_key=True),
    Column("txn_id", Text, primary_key=True),
    Column("event_id", Text, nullable=False),
    Column("added_ms", BigInteger, nullable=False),
)
Index("roomserver_transactions_added", transactions.c.added_ms)

#: The columns of a key, in the order ``TransactionKey`` holds them.
KEY_COLUMNS = ("room_id", "user_id", "device_id", "scope", "txn_id")
