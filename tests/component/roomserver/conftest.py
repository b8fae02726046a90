"""Fixtures of the room server's component tests: a real room server on a
fresh SQLite database (or PostgreSQL) and the embedded log in ``tmp_path``,
consuming its input, reached through either binding."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from myelin.roomserver.v1 import output_log_pb2

from common.config import Config
from common.log import Log, LogRecord
from common.logs import open_log
from common.topics import ROOMSERVER_OUTPUT
from roomserver.api import RoomserverAPI
from roomserver.component import Roomserver, open_roomserver
from roomserver.grpc.client import GrpcRoomserverClient, roomserver_channel
from roomserver.grpc.server import serve_grpc
from tests.builders import TEST_SERVER_NAME, TEST_SIGNING_KEY


def make_config(tmp_path: Path, postgres_url: str = "") -> Config:
    return Config(server_name=TEST_SERVER_NAME, data_dir=tmp_path, signing_key_path=tmp_path / "signing.key",
                  postgres_url=postgres_url, input_timeout_seconds=20.0)


@dataclass
class Running:
    """A room server with its consumer running."""

    component: Roomserver
    task: asyncio.Task[None]
    log: Log
    config: Config

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.component.close()


async def start_roomserver(config: Config, log: Log) -> Running:
    component = await open_roomserver(config, log, TEST_SIGNING_KEY)
    task = asyncio.create_task(component.run())
    await asyncio.wait_for(component.ready.wait(), 10)
    return Running(component, task, log, config)


async def read_output(log: Log, quiet_seconds: float = 0.2) -> list[output_log_pb2.OutputEvent]:
    """Everything on ``roomserver.output`` so far, read by a new consumer
    group until a fetch waits ``quiet_seconds`` for nothing (give Kafka,
    whose group join takes a while, more)."""
    consumer = await log.consumer(f"test-{uuid.uuid4().hex}", [ROOMSERVER_OUTPUT.name])
    records: list[LogRecord] = []
    try:
        while True:
            batch = await consumer.fetch(max_records=1000, timeout=quiet_seconds)
            if not batch:
                break
            records.extend(batch)
    finally:
        await consumer.close()
    records.sort(key=lambda r: (r.partition, r.offset))
    result = []
    for record in records:
        message = output_log_pb2.OutputEvent()
        message.ParseFromString(record.value)
        result.append(message)
    return result


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[Log]:
    opened = open_log(None, tmp_path / "log", "roomserver-test")
    await opened.start()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def running(tmp_path: Path, log: Log) -> AsyncIterator[Running]:
    started = await start_roomserver(make_config(tmp_path), log)
    try:
        yield started
    finally:
        await started.stop()


@pytest.fixture(params=["inprocess", "grpc"])
async def api(request: pytest.FixtureRequest, running: Running) -> AsyncIterator[RoomserverAPI]:
    if request.param == "inprocess":
        yield running.component.api
        return
    server, port = await serve_grpc(running.component.api, "127.0.0.1:0")
    channel: grpc.aio.Channel = roomserver_channel(f"127.0.0.1:{port}")
    try:
        yield GrpcRoomserverClient(channel)
    finally:
        await channel.close()
        await server.stop(None)
