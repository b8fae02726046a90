"""clientapi_event_reports, clientapi_room_reports and clientapi_user_reports: what users reported
(content/client-server-api, "Reporting content"), for the server's admins."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Table, Text, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from clientapi.storage.tables import METADATA

event_reports = Table(
    "clientapi_event_reports",
    METADATA,
    Column("report_id", Text, primary_key=True),
    Column("room_id", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("reason", Text),
    Column("score", BigInteger),
    Column("received_ts", BigInteger, nullable=False),
)

room_reports = Table(
    "clientapi_room_reports",
    METADATA,
    Column("report_id", Text, primary_key=True),
    Column("room_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("received_ts", BigInteger, nullable=False),
)

user_reports = Table(
    "clientapi_user_reports",
    METADATA,
    Column("report_id", Text, primary_key=True),
    Column("target_user_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("received_ts", BigInteger, nullable=False),
)


@dataclass(frozen=True)
class EventReport:
    report_id: str
    room_id: str
    event_id: str
    user_id: str
    reason: str | None
    score: int | None
    received_ts: int


@dataclass(frozen=True)
class RoomReport:
    report_id: str
    room_id: str
    user_id: str
    reason: str
    received_ts: int


@dataclass(frozen=True)
class UserReport:
    report_id: str
    target_user_id: str
    user_id: str
    reason: str
    received_ts: int


class ReportsTable:
    async def insert_event_report(self, conn: AsyncConnection, report: EventReport) -> None:
        await conn.execute(insert(event_reports).values(
            report_id=report.report_id, room_id=report.room_id, event_id=report.event_id,
            user_id=report.user_id, reason=report.reason, score=report.score,
            received_ts=report.received_ts))

    async def insert_room_report(self, conn: AsyncConnection, report: RoomReport) -> None:
        await conn.execute(insert(room_reports).values(
            report_id=report.report_id, room_id=report.room_id, user_id=report.user_id,
            reason=report.reason, received_ts=report.received_ts))

    async def select_event_reports(self, conn: AsyncConnection) -> list[EventReport]:
        result = await conn.execute(select(event_reports).order_by(event_reports.c.received_ts))
        return [EventReport(report_id=r.report_id, room_id=r.room_id, event_id=r.event_id,
                            user_id=r.user_id, reason=r.reason, score=r.score, received_ts=r.received_ts)
                for r in result]

    async def select_room_reports(self, conn: AsyncConnection) -> list[RoomReport]:
        result = await conn.execute(select(room_reports).order_by(room_reports.c.received_ts))
        return [RoomReport(report_id=r.report_id, room_id=r.room_id, user_id=r.user_id, reason=r.reason,
                           received_ts=r.received_ts) for r in result]

    async def insert_user_report(self, conn: AsyncConnection, report: UserReport) -> None:
        await conn.execute(insert(user_reports).values(
            report_id=report.report_id, target_user_id=report.target_user_id, user_id=report.user_id,
            reason=report.reason, received_ts=report.received_ts))

    async def select_user_reports(self, conn: AsyncConnection) -> list[UserReport]:
        result = await conn.execute(select(user_reports).order_by(user_reports.c.received_ts))
        return [UserReport(report_id=r.report_id, target_user_id=r.target_user_id, user_id=r.user_id,
                           reason=r.reason, received_ts=r.received_ts) for r in result]
