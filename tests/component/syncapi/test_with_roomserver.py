"""The sync API reading what the real room server writes: the output log's
contract, end to end between the two components."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from myelin.roomserver.v1 import roomserver_pb2 as rs_pb

from common.config import Config
from common.logs.embedded import EmbeddedLog
from matrixlib.events import MEMBER
from roomserver.component import open_roomserver
from tests.builders import TEST_SERVER_NAME, TEST_SIGNING_KEY, TestRoom, input_event
from tests.component.syncapi.conftest import ALICE, BOB, CAROL, running_env


async def test_sync_follows_the_real_room_server(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path / "log", partitions=4)
    await log.start()
    rs_dir = tmp_path / "roomserver"
    rs_dir.mkdir()
    config = Config(server_name=TEST_SERVER_NAME, data_dir=rs_dir, signing_key_path=rs_dir / "key",
                    input_timeout_seconds=20.0)
    roomserver = await open_roomserver(config, log, TEST_SIGNING_KEY)
    rs_task = asyncio.create_task(roomserver.run())
    try:
        await asyncio.wait_for(roomserver.ready.wait(), 10)
        sync_dir = tmp_path / "syncapi"
        sync_dir.mkdir()
        async with running_env(sync_dir, log=log, roomserver_api=roomserver.api) as env:
            room = TestRoom()
            room.join(BOB)
            room.set_state("m.room.name", {"name": "Real"})
            room.invite(ALICE, CAROL)
            target = room.message(BOB, "to be redacted")
            room.redact(BOB, target.event_id)
            sent = room.message(BOB, "with a txn")
            entries = [input_event(e) for e in room.events]
            entries[-1].transaction_id.user_id = BOB
            entries[-1].transaction_id.device_id = "PHONE"
            entries[-1].transaction_id.transaction_id = "t1"
            response = await roomserver.api.input_room_events(
                rs_pb.InputRoomEventsRequest(events=entries, wait=True))
            assert {r.outcome for r in response.results} == {rs_pb.INPUT_OUTCOME_ACCEPTED}, response
            await env.wait_for_events([sent.event_id])

            body = await env.sync(env.token(BOB, "PHONE"), filter='{"room":{"timeline":{"limit":50}}}')
            joined = body["rooms"]["join"][room.room_id]
            events = joined["timeline"]["events"]
            assert [e["event_id"] for e in events] == [e.event_id for e in room.events]
            assert events[-1]["unsigned"]["transaction_id"] == "t1"

            async def redacted() -> bool:
                page = (await env.get(f"/_matrix/client/v3/rooms/{room.room_id}/messages",
                                      env.token(BOB), dir="b", limit=5)).json()
                found = next(e for e in page["chunk"] if e["event_id"] == target.event_id)
                return bool(found["content"] == {})
            from tests.component.syncapi.conftest import wait_until
            await wait_until(redacted)

            carol = await env.sync(env.token(CAROL))
            invite_state = carol["rooms"]["invite"][room.room_id]["invite_state"]["events"]
            assert any(e["type"] == "m.room.name" for e in invite_state)
            assert any(e["type"] == MEMBER and e["state_key"] == CAROL for e in invite_state)
    finally:
        rs_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await rs_task
        await roomserver.close()
        await log.close()
