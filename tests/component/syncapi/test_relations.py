"""Relations as the sync API serves them: /event, /relations, /threads,
/timestamp_to_event, and bundled aggregations (threads, edits, references)
in /messages, /context and limited /sync timelines, with redactions."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

from myelin.roomserver.v1 import output_log_pb2
from sqlalchemy import text

from common.storage import database_url_for, open_database
from matrixlib.events import Event
from matrixlib.redaction import redact
from syncapi.internal.relations import CATCH_UP_SECONDS
from syncapi.storage.database import SyncDatabase
from tests.builders import TestRoom, event_proto
from tests.component.syncapi.conftest import ALICE, BOB, CAROL, Env, on_each_database

V1 = "/_matrix/client/v1"
V3 = "/_matrix/client/v3"


def reply(room: TestRoom, sender: str, root: str, body: str, rel_type: str = "m.thread",
          **extra: Any) -> Event:
    content: dict[str, Any] = {"msgtype": "m.text", "body": body,
                               "m.relates_to": {"rel_type": rel_type, "event_id": root}}
    content.update(extra)
    return room.build("m.room.message", content, sender=sender)


def edit(room: TestRoom, sender: str, original: str, body: str, *, event_type: str = "m.room.message",
         new_content: bool = True) -> Event:
    content: dict[str, Any] = {"msgtype": "m.text", "body": f"* {body}",
                               "m.relates_to": {"rel_type": "m.replace", "event_id": original}}
    if new_content:
        content["m.new_content"] = {"msgtype": "m.text", "body": body}
    return room.build(event_type, content, sender=sender)


async def redact_entry(env: Env, room: TestRoom, sender: str, target: Event) -> Event:
    """The redaction event and the room server's RedactedEvent entry for it."""
    redaction = room.redact(sender, target.event_id)
    await env.send(redaction)
    await env.append(output_log_pb2.OutputEvent(redacted_event=output_log_pb2.RedactedEvent(
        redacted_event_id=target.event_id, redaction_event_id=redaction.event_id,
        redacted_event=event_proto(Event(redact(target.pdu, room.version), room.version)))), room.room_id)
    marker = room.message(ALICE, "after redaction")
    await env.send(marker)  # the room's entries are handled in order: the redaction is in
    return redaction


async def get_json(env: Env, path: str, token: str, status: int = 200, **params: Any) -> dict[str, Any]:
    response = await env.get(path, token, **params)
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_single_event_is_served_with_its_aggregations_and_only_to_who_may_see_it(env: Env) -> None:
    room = TestRoom(history_visibility="joined")
    room.join(BOB)
    root = room.message(ALICE, "root")
    first = reply(room, BOB, root.event_id, "in thread")
    await env.send_room(room)
    bob = env.token(BOB)

    body = await get_json(env, f"{V3}/rooms/{room.room_id}/event/{root.event_id}", bob)
    assert body["event_id"] == root.event_id and body["room_id"] == room.room_id
    assert body["content"]["body"] == "root"
    thread = body["unsigned"]["m.relations"]["m.thread"]
    assert thread["count"] == 1 and thread["latest_event"]["event_id"] == first.event_id
    assert thread["current_user_participated"] is True

    unknown = await get_json(env, f"{V3}/rooms/{room.room_id}/event/$nope", bob, status=404)
    assert unknown["errcode"] == "M_NOT_FOUND"
    # The right event in the wrong room, and a user who was never in the room.
    await get_json(env, f"{V3}/rooms/!other:test/event/{root.event_id}", bob, status=404)
    await get_json(env, f"{V3}/rooms/{room.room_id}/event/{root.event_id}", env.token(CAROL), status=404)
    # history_visibility joined: Carol joining later does not see what came before.
    room.join(CAROL)
    await env.send(room.events[-1])
    await get_json(env, f"{V3}/rooms/{room.room_id}/event/{root.event_id}", env.token(CAROL), status=404)
    own = await get_json(env, f"{V3}/rooms/{room.room_id}/event/{room.events[-1].event_id}",
                         env.token(CAROL))
    assert own["content"]["membership"] == "join"
    r0 = await get_json(env, f"/_matrix/client/r0/rooms/{room.room_id}/event/{root.event_id}", bob)
    assert r0["event_id"] == root.event_id


@on_each_database
async def test_relations_pages_filters_and_recurses(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    root = room.message(ALICE, "root")
    replies = [reply(room, BOB if i % 2 else ALICE, root.event_id, f"reply {i}") for i in range(5)]
    reference = reply(room, BOB, root.event_id, "see above", rel_type="m.reference")
    reaction = room.build("m.reaction", {"m.relates_to": {"rel_type": "m.annotation",
                                                          "event_id": root.event_id, "key": "👍"}},
                          sender=BOB)
    reply_edit = edit(room, ALICE, replies[0].event_id, "reply 0 fixed")
    await env.send_room(room)
    bob = env.token(BOB)
    base = f"{V1}/rooms/{room.room_id}/relations/{root.event_id}"

    everything = await get_json(env, base, bob)
    assert [e["event_id"] for e in everything["chunk"]] == [
        reaction.event_id, reference.event_id, *[r.event_id for r in reversed(replies)]]
    assert "next_batch" not in everything and "prev_batch" not in everything
    assert "recursion_depth" not in everything
    # The first reply carries its own edit in its bundled aggregations.
    first = next(e for e in everything["chunk"] if e["event_id"] == replies[0].event_id)
    assert first["unsigned"]["m.relations"]["m.replace"]["event_id"] == reply_edit.event_id

    # Paging through the thread two at a time, newest first, then forwards.
    seen: list[str] = []
    page = await get_json(env, f"{base}/m.thread", bob, limit=2)
    while True:
        seen += [e["event_id"] for e in page["chunk"]]
        if "next_batch" not in page:
            break
        page = await get_json(env, f"{base}/m.thread", bob, limit=2, **{"from": page["next_batch"]})
        assert "prev_batch" in page
    assert seen == [r.event_id for r in reversed(replies)]
    forwards = await get_json(env, f"{base}/m.thread", bob, dir="f", limit=3)
    assert [e["event_id"] for e in forwards["chunk"]] == [r.event_id for r in replies[:3]]

    by_event_type = await get_json(env, f"{base}/m.annotation/m.reaction", bob)
    assert [e["event_id"] for e in by_event_type["chunk"]] == [reaction.event_id]
    assert (await get_json(env, f"{base}/m.annotation/m.room.message", bob))["chunk"] == []

    # recurse: the edit of a reply relates to the root only indirectly.
    recursed = await get_json(env, f"{base}/m.replace", bob, recurse="true")
    assert [e["event_id"] for e in recursed["chunk"]] == [reply_edit.event_id]
    assert recursed["recursion_depth"] == 3
    assert (await get_json(env, f"{base}/m.replace", bob))["chunk"] == []

    assert (await get_json(env, base, bob, status=400, dir="x"))["errcode"] == "M_INVALID_PARAM"
    assert (await get_json(env, base, bob, status=400, limit="many"))["errcode"] == "M_INVALID_PARAM"
    assert (await get_json(env, base, bob, status=400, recurse="maybe"))["errcode"] == "M_INVALID_PARAM"
    assert (await get_json(env, base, bob, status=400, **{"from": "garbage"}))["errcode"] == "M_INVALID_PARAM"
    await get_json(env, f"{V1}/rooms/{room.room_id}/relations/$unknown", bob, status=404)
    await get_json(env, base, env.token(CAROL), status=404)
    unauthenticated = await env.client.get(base)
    assert unauthenticated.status_code == 401


@on_each_database
async def test_edits_are_bundled_by_the_spec_rules_and_redactions_undo_them(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    original = room.message(ALICE, "I like cake")
    first = edit(room, ALICE, original.event_id, "I like chocolate cake")
    second = edit(room, ALICE, original.event_id, "I love chocolate cake")
    # Invalid: another sender, another type, no m.new_content.
    edit(room, BOB, original.event_id, "hijack")
    edit(room, ALICE, original.event_id, "other type", event_type="m.sticker")
    edit(room, ALICE, original.event_id, "no new content", new_content=False)
    # An edit of an edit is not an edit.
    edit(room, ALICE, second.event_id, "edit of an edit")
    referrer = reply(room, BOB, original.event_id, "ref", rel_type="m.reference")
    await env.send_room(room)
    # Relations from another room count for nothing.
    elsewhere = TestRoom()
    elsewhere.join(BOB)
    edit(elsewhere, ALICE, original.event_id, "from elsewhere")
    reply(elsewhere, ALICE, original.event_id, "thread elsewhere")
    await env.send_room(elsewhere)
    bob = env.token(BOB)

    async def bundled() -> dict[str, Any]:
        page = await get_json(env, f"{V3}/rooms/{room.room_id}/messages", bob, dir="b", limit=50)
        found = next(e for e in page["chunk"] if e["event_id"] == original.event_id)
        # The original's content is left alone.
        relations: dict[str, Any] = found["unsigned"].get("m.relations", {})
        return {"content": found["content"], **relations}

    now = await bundled()
    assert now["content"]["body"] == "I like cake"
    assert now["m.replace"]["event_id"] == second.event_id
    assert now["m.replace"]["content"]["m.new_content"]["body"] == "I love chocolate cake"
    assert now["m.reference"] == {"chunk": [{"event_id": referrer.event_id}]}
    assert "m.thread" not in now
    second_page = await get_json(env, f"{V3}/rooms/{room.room_id}/messages", bob, dir="b", limit=50)
    edit_of_edit_target = next(e for e in second_page["chunk"] if e["event_id"] == second.event_id)
    assert "m.relations" not in edit_of_edit_target["unsigned"]

    # Redacting the latest edit falls back to the one before.
    await redact_entry(env, room, ALICE, second)
    assert (await bundled())["m.replace"]["event_id"] == first.event_id
    # A redacted reference leaves the aggregation.
    await redact_entry(env, room, BOB, referrer)
    assert "m.reference" not in await bundled()
    # Redacting the original drops every edit from its bundle and empties it.
    redaction = await redact_entry(env, room, ALICE, original)
    after = await bundled()
    assert after["content"] == {} and "m.replace" not in after
    single = await get_json(env, f"{V3}/rooms/{room.room_id}/event/{original.event_id}", bob)
    assert single["content"] == {}
    assert single["unsigned"]["redacted_because"]["event_id"] == redaction.event_id
    assert "m.relations" not in single["unsigned"]


async def test_thread_summaries_in_context_and_limited_sync(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    room.join(CAROL)
    root = room.message(ALICE, "root")
    reply(room, BOB, root.event_id, "one")
    latest = reply(room, CAROL, root.event_id, "two")
    latest_edit = edit(room, CAROL, latest.event_id, "two, edited")
    for i in range(3):
        room.message(ALICE, f"filler {i}")
    await env.send_room(room)
    alice, bob = env.token(ALICE), env.token(BOB)

    context = await get_json(env, f"{V3}/rooms/{room.room_id}/context/{root.event_id}", bob, limit=2)
    thread = context["event"]["unsigned"]["m.relations"]["m.thread"]
    assert thread["count"] == 2 and thread["current_user_participated"] is True
    assert thread["latest_event"]["event_id"] == latest.event_id
    # The latest event carries its own aggregations (its edit).
    assert thread["latest_event"]["unsigned"]["m.relations"]["m.replace"]["event_id"] == latest_edit.event_id

    # The root's sender participated; a limited /sync timeline bundles too.
    body = await env.sync(alice, filter=json.dumps({"room": {"timeline": {"limit": 8}}}))
    timeline = body["rooms"]["join"][room.room_id]["timeline"]
    assert timeline["limited"] is True
    synced_root = next(e for e in timeline["events"] if e["event_id"] == root.event_id)
    assert synced_root["unsigned"]["m.relations"]["m.thread"]["current_user_participated"] is True
    assert "room_id" not in synced_root["unsigned"]["m.relations"]["m.thread"]["latest_event"]

    # Ignoring Carol takes her reply out of the count and the latest event.
    await env.syncapi.database.write_account_data(
        BOB, "", "m.ignored_user_list", json.dumps({"ignored_users": {CAROL: {}}}))
    again = await get_json(env, f"{V3}/rooms/{room.room_id}/event/{root.event_id}", bob)
    ignored_view = again["unsigned"]["m.relations"]["m.thread"]
    assert ignored_view["count"] == 1 and ignored_view["latest_event"]["content"]["body"] == "one"


@on_each_database
async def test_threads_list_orders_by_latest_reply_and_filters_participation(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    older = room.message(ALICE, "older thread")
    newer = room.message(BOB, "newer thread")
    bobs = room.message(BOB, "bob's own thread")
    reply(room, BOB, older.event_id, "first reply")
    reply(room, ALICE, newer.event_id, "reply to newer")
    reply(room, ALICE, bobs.event_id, "reply to bob's")
    reply(room, ALICE, older.event_id, "older is now the latest")
    await env.send_room(room)
    alice, bob = env.token(ALICE), env.token(BOB)
    path = f"{V1}/rooms/{room.room_id}/threads"

    listed = await get_json(env, path, alice)
    assert [e["event_id"] for e in listed["chunk"]] == [older.event_id, bobs.event_id, newer.event_id]
    assert all("m.thread" in e["unsigned"]["m.relations"] for e in listed["chunk"])
    assert "next_batch" not in listed

    first = await get_json(env, path, alice, limit=2)
    assert [e["event_id"] for e in first["chunk"]] == [older.event_id, bobs.event_id]
    rest = await get_json(env, path, alice, limit=2, **{"from": first["next_batch"]})
    assert [e["event_id"] for e in rest["chunk"]] == [newer.event_id] and "next_batch" not in rest

    # Bob replied in `older`, sent `newer` and `bobs` himself.
    participated = await get_json(env, path, bob, include="participated")
    assert {e["event_id"] for e in participated["chunk"]} == {older.event_id, newer.event_id, bobs.event_id}
    room.message(CAROL, "nothing")  # not part of any thread
    carol_thread = room.message(ALICE, "alice only")
    reply(room, ALICE, carol_thread.event_id, "alone")
    await env.send(*room.events[-3:])
    only_bob = await get_json(env, path, bob, include="participated")
    assert carol_thread.event_id not in {e["event_id"] for e in only_bob["chunk"]}
    everything = await get_json(env, path, bob)
    assert everything["chunk"][0]["event_id"] == carol_thread.event_id

    assert (await get_json(env, path, bob, status=400, include="some"))["errcode"] == "M_INVALID_PARAM"
    assert (await get_json(env, path, bob, status=400, limit="0"))["errcode"] == "M_INVALID_PARAM"
    assert (await get_json(env, path, bob, status=400, **{"from": "x1"}))["errcode"] == "M_INVALID_PARAM"
    assert (await get_json(env, path, env.token(CAROL), status=403))["errcode"] == "M_FORBIDDEN"


@on_each_database
async def test_timestamp_to_event(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    messages = [room.message(ALICE, f"m{i}") for i in range(4)]
    await env.send_room(room)
    bob = env.token(BOB)
    path = f"{V1}/rooms/{room.room_id}/timestamp_to_event"
    stamps = [m.origin_server_ts for m in messages]

    forwards = await get_json(env, path, bob, ts=stamps[1], dir="f")
    assert forwards == {"event_id": messages[1].event_id, "origin_server_ts": stamps[1]}
    between = await get_json(env, path, bob, ts=stamps[1] + 0, dir="b")
    assert between["event_id"] == messages[1].event_id
    last = await get_json(env, path, bob, ts=stamps[3] + 1000, dir="b")
    assert last["event_id"] == messages[3].event_id
    assert (await get_json(env, path, bob, status=404, ts=stamps[3] + 1000, dir="f"))["errcode"] == "M_NOT_FOUND"
    assert (await get_json(env, path, bob, status=400, dir="f"))["errcode"] == "M_MISSING_PARAM"
    assert (await get_json(env, path, bob, status=400, ts=1))["errcode"] == "M_MISSING_PARAM"
    assert (await get_json(env, path, bob, status=400, ts="soon", dir="f"))["errcode"] == "M_INVALID_PARAM"
    assert (await get_json(env, path, bob, status=400, ts=1, dir="up"))["errcode"] == "M_INVALID_PARAM"
    # Someone never in the room finds nothing.
    await get_json(env, path, env.token(CAROL), status=404, ts=stamps[1], dir="f")


def _migrations_up_to_0004(old_root: Path) -> Path:
    """A copy of the sync API's migrations without the revisions after 0004."""
    (old_root / "syncapi" / "versions").mkdir(parents=True)
    source = Path(__file__).resolve().parents[3] / "migrations" / "syncapi"
    for name in ("env.py", "script.py.mako"):
        shutil.copy(source / name, old_root / "syncapi" / name)
    for revision in sorted((source / "versions").glob("000[1-4]_*.py")):
        shutil.copy(revision, old_root / "syncapi" / "versions" / revision.name)
    return old_root


async def test_migration_fills_relations_and_timestamps_of_stored_events(tmp_path: Path) -> None:
    """A database at the revision before relations gets them (and event
    timestamps) from the events it already stores."""
    old_root = _migrations_up_to_0004(tmp_path / "migrations")
    url = database_url_for("syncapi", postgres_url=None, data_dir=tmp_path)

    room = TestRoom()
    root = room.message(ALICE, "root")
    child = reply(room, ALICE, root.event_id, "in thread")
    fixed = edit(room, ALICE, root.event_id, "root, edited")
    old = await open_database(url, "syncapi", migrations_root=old_root)
    try:
        async with old.transaction() as conn:
            for position, event in enumerate(room.events, start=1):
                await conn.execute(text(
                    "INSERT INTO syncapi_events (stream_pos, room_id, event_id, type, sender, state_key, depth, "
                    "room_version, event_json, history_visibility, historical, state_only, contains_url) "
                    "VALUES (:pos, :room, :id, :type, :sender, :state_key, :depth, :version, :json, 'shared', "
                    ":false, :false, :false)"),
                    {"pos": position, "room": event.room_id, "id": event.event_id, "type": event.type,
                     "sender": event.sender, "state_key": event.state_key, "depth": event.depth,
                     "version": room.version.identifier, "json": event.to_json().decode(), "false": False})
    finally:
        await old.close()

    upgraded = await open_database(url, "syncapi")
    try:
        database = SyncDatabase(upgraded)
        async with database.read() as reader:
            children = await reader.relation_children([root.event_id])
            assert {(r.event_id, r.rel_type) for r in children} == {
                (child.event_id, "m.thread"), (fixed.event_id, "m.replace")}
            found = await reader.events_by_timestamp(room.room_id, child.origin_server_ts, backwards=False, limit=1)
            assert [e.event_id for e in found] == [child.event_id]
    finally:
        await upgraded.close()


async def test_an_event_accepted_a_moment_ago_is_served_once_this_read_model_has_it(env: Env) -> None:
    # A client that sends and at once fetches its event (the send answered:
    # the room server has it) must not get a 404 because the sync API is a few
    # milliseconds behind on the output log.
    room = TestRoom()
    room.join(BOB)
    await env.send_room(room)
    bob = env.token(BOB)
    late = room.message(ALICE, "on its way")
    env.roomserver.accepted[late.event_id] = late

    async def arrive_later() -> None:
        await asyncio.sleep(0.3)
        await env.send(late, wait=False)

    arriving = asyncio.create_task(arrive_later())
    body = await get_json(env, f"{V3}/rooms/{room.room_id}/event/{late.event_id}", bob)
    await arriving
    assert body["event_id"] == late.event_id and body["content"]["body"] == "on its way"

    # Unknown to the room server, or known in another room: 404 at once.
    started = asyncio.get_running_loop().time()
    await get_json(env, f"{V3}/rooms/{room.room_id}/event/$never", bob, status=404)
    elsewhere = TestRoom().message(ALICE, "elsewhere")
    env.roomserver.accepted[elsewhere.event_id] = elsewhere
    await get_json(env, f"{V3}/rooms/{room.room_id}/event/{elsewhere.event_id}", bob, status=404)
    assert asyncio.get_running_loop().time() - started < CATCH_UP_SECONDS
    assert "$never" in env.roomserver.event_queries
