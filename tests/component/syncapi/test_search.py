"""POST /search and POST /user_directory/search on the sync API's read model,
on SQLite (FTS5) and PostgreSQL (tsvector)."""

from __future__ import annotations

from typing import Any

import pytest
from myelin.roomserver.v1 import output_log_pb2

from matrixlib.events import Event
from matrixlib.redaction import redact
from tests.builders import TestRoom, event_proto
from tests.component.syncapi.conftest import ALICE, BOB, CAROL, Env, on_each_database


async def search(env: Env, token: str, room_events: dict[str, Any], *, status: int = 200,
                 next_batch: str | None = None) -> dict[str, Any]:
    params = {"next_batch": next_batch} if next_batch else None
    response = await env.client.post("/_matrix/client/v3/search", params=params,
                                     json={"search_categories": {"room_events": room_events}},
                                     headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body["search_categories"]["room_events"] if status == 200 else body


def bodies(found: dict[str, Any]) -> list[str]:
    return [r["result"]["content"].get("body") for r in found["results"]]


@on_each_database
async def test_search(env: Env) -> None:
    room = TestRoom()
    room.join(BOB)
    room.message(ALICE, "the quick brown fox")
    room.message(BOB, "a lazy dog sleeps")
    room.message(ALICE, "fox and dog together")
    room.set_state("m.room.topic", {"topic": "foxes of the forest"})
    other = TestRoom(creator=CAROL)
    other.message(CAROL, "carol's secret fox")
    await env.send_room(room)
    await env.send_room(other)
    bob = env.token(BOB)

    found = await search(env, bob, {"search_term": "fox", "order_by": "recent", "keys": ["content.body"]})
    assert bodies(found) == ["fox and dog together", "the quick brown fox"]
    assert found["highlights"] == ["fox"]
    assert found["count"] == 2
    assert all(r["result"]["room_id"] == room.room_id for r in found["results"])
    # Without keys, the topic is found too ("foxes").
    assert len((await search(env, bob, {"search_term": "fox"}))["results"]) == 3
    # Every word must match; the topic key finds the topic.
    found = await search(env, bob, {"search_term": "dog fox"})
    assert bodies(found) == ["fox and dog together"]
    found = await search(env, bob, {"search_term": "forest", "keys": ["content.topic"]})
    assert [r["result"]["content"] for r in found["results"]] == [{"topic": "foxes of the forest"}]
    assert (await search(env, bob, {"search_term": "forest", "keys": ["content.body"]}))["results"] == []
    # Carol's room is not Bob's: nothing from it.
    carol_found = await search(env, env.token(CAROL), {"search_term": "fox"})
    assert bodies(carol_found) == ["carol's secret fox"]

    # Pages of one with next_batch, for both orders; context and groups.
    for order in ("recent", "rank"):
        first = await search(env, bob, {"search_term": "fox", "order_by": order, "filter": {"limit": 1}, "keys": ["content.body"]})
        assert len(first["results"]) == 1 and "next_batch" in first
        second = await search(env, bob, {"search_term": "fox", "order_by": order, "filter": {"limit": 1}, "keys": ["content.body"]},
                              next_batch=first["next_batch"])
        assert sorted(bodies(first) + bodies(second)) == ["fox and dog together", "the quick brown fox"]
        third = await search(env, bob, {"search_term": "fox", "order_by": order, "filter": {"limit": 1}, "keys": ["content.body"]},
                             next_batch=second.get("next_batch"))
        assert third["results"] == [] or "next_batch" not in second
    found = await search(env, bob, {
        "search_term": "lazy", "event_context": {"before_limit": 1, "after_limit": 1, "include_profile": True},
        "groupings": {"group_by": [{"key": "room_id"}, {"key": "sender"}]}})
    context = found["results"][0]["context"]
    assert [e["content"]["body"] for e in context["events_before"]] == ["the quick brown fox"]
    assert [e["content"]["body"] for e in context["events_after"]] == ["fox and dog together"]
    assert BOB in context["profile_info"]
    lazy_id = found["results"][0]["result"]["event_id"]
    assert found["groups"]["room_id"][room.room_id]["results"] == [lazy_id]
    assert found["groups"]["sender"][BOB]["results"] == [lazy_id]
    # A filter on senders and rooms.
    found = await search(env, bob, {"search_term": "fox", "filter": {"senders": [BOB]}})
    assert found["results"] == []
    found = await search(env, bob, {"search_term": "fox", "filter": {"not_rooms": [room.room_id]}})
    assert found["results"] == []

    # A redacted message is no longer found.
    target = next(e for e in room.events if e.content.get("body") == "the quick brown fox")
    redaction = room.redact(ALICE, target.event_id)
    await env.send(redaction)
    await env.append(output_log_pb2.OutputEvent(redacted_event=output_log_pb2.RedactedEvent(
        redacted_event_id=target.event_id, redaction_event_id=redaction.event_id,
        redacted_event=event_proto(Event(redact(target.pdu, room.version), room.version)))), room.room_id)
    marker = room.message(ALICE, "marker")
    await env.send(marker)
    found = await search(env, bob, {"search_term": "quick"})
    assert found["results"] == []

    # Bad requests.
    await search(env, bob, {"search_term": "x", "order_by": "sideways"}, status=400)
    await search(env, bob, {"keys": ["content.body"]}, status=400)
    await search(env, bob, {"search_term": "fox", "keys": ["content.nope"]}, status=400)
    await search(env, bob, {"search_term": "fox"}, status=400, next_batch="garbage")


async def test_search_terms_are_not_query_syntax(env: Env) -> None:
    room = TestRoom()
    room.message(ALICE, 'quotes " and * and NEAR( and OR')
    await env.send_room(room)
    found = await search(env, env.token(ALICE), {"search_term": '"NEAR( * OR'})
    assert len(found["results"]) == 1
    assert (await search(env, env.token(ALICE), {"search_term": "!!!"}))["results"] == []


async def test_search_respects_history_visibility(env: Env) -> None:
    """A user never finds events from before they joined a `joined` room, nor
    after they left it, nor from rooms they never joined."""
    room = TestRoom(history_visibility="joined")
    room.message(ALICE, "needle before bob")
    room.join(BOB)
    room.message(ALICE, "needle while bob is here")
    room.leave(BOB)
    room.message(ALICE, "needle after bob left")
    invited = TestRoom(history_visibility="shared")
    invited.message(ALICE, "needle in a room bob is only invited to")
    invited.invite(ALICE, BOB)
    await env.send_room(room)
    await env.send_room(invited)
    found = await search(env, env.token(BOB), {"search_term": "needle"})
    assert bodies(found) == ["needle while bob is here"]
    assert len((await search(env, env.token(ALICE), {"search_term": "needle"}))["results"]) == 4

    shared = TestRoom(history_visibility="shared")
    shared.message(ALICE, "haystack before carol")
    shared.join(CAROL)
    await env.send_room(shared)
    found = await search(env, env.token(CAROL), {"search_term": "haystack"})
    assert bodies(found) == ["haystack before carol"]


async def directory(env: Env, token: str, term: str, limit: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"search_term": term}
    if limit is not None:
        body["limit"] = limit
    response = await env.client.post("/_matrix/client/v3/user_directory/search", json=body,
                                     headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def join_as(room: TestRoom, user_id: str, display_name: str) -> Event:
    return room.build("m.room.member", {"membership": "join", "displayname": display_name}, sender=user_id,
                      state_key=user_id)


@on_each_database
async def test_user_directory(env: Env) -> None:
    # Users of their own, not test_search's.
    dave, bob, carol = "@dave:test", "@bobby:test", "@zoe:test"
    private = TestRoom(join_rule="invite")
    private.invite(ALICE, bob)
    join_as(private, bob, "Bobby Tables")
    public = TestRoom(creator=carol)
    join_as(public, carol, "Zoe Caroline")
    lonely = TestRoom(creator=dave, join_rule="invite")
    await env.send_room(private)
    await env.send_room(public)
    await env.send_room(lonely)
    alice = env.token(ALICE)

    found = await directory(env, alice, "bobby")
    assert found == {"results": [{"user_id": bob, "display_name": "Bobby Tables"}], "limited": False}
    assert (await directory(env, alice, "tables bob"))["results"][0]["user_id"] == bob
    # Carol is in a public room: found by anyone; Dave shares nothing and is not.
    assert [r["user_id"] for r in (await directory(env, alice, "zoe"))["results"]] == [carol]
    assert (await directory(env, alice, "dave"))["results"] == []
    assert (await directory(env, env.token(dave), "bobby"))["results"] == []
    # Matches on the user ID; `limited` when there are more.
    found = await directory(env, alice, ":test", limit=1)
    assert len(found["results"]) == 1 and found["limited"] is True
    # A profile change (a new join event) is what the directory shows; the room turning private hides Carol.
    join_as(public, carol, "Queen Zoe")
    public.set_state("m.room.join_rules", {"join_rule": "invite"}, sender=carol)
    await env.send(*public.events[-2:])
    assert (await directory(env, env.token(carol), "queen"))["results"] == [
        {"user_id": carol, "display_name": "Queen Zoe"}]
    assert (await directory(env, alice, "zoe"))["results"] == []


async def test_user_directory_follows_a_rebuilt_room(env: Env) -> None:
    """After missed entries the room's state is rebuilt from the room server:
    the joins it brings reach the directory too."""
    room = TestRoom()
    await env.send_room(room)
    env.roomserver.rooms[room.room_id] = room
    env.new_room_event(join_as(room, "@ghost:test", "Lost Ghost"))  # never reaches the sync API
    await env.send(room.message(ALICE, "after the gap"))
    assert env.roomserver.state_queries == [room.room_id]
    found = await directory(env, env.token(ALICE), "ghost")
    assert found["results"] == [{"user_id": "@ghost:test", "display_name": "Lost Ghost"}]


@pytest.mark.parametrize("order", ["recent", "rank"])
async def test_pages_go_on_past_invisible_matches(env: Env, monkeypatch: pytest.MonkeyPatch, order: str) -> None:
    """When a request's rounds run out on matches the user may not see, the
    answer still has a next_batch, and the next page finds what is visible."""
    from syncapi.internal import search as search_module
    monkeypatch.setattr(search_module, "BATCH", 2)
    monkeypatch.setattr(search_module, "MAX_ROUNDS", 2)
    room = TestRoom(history_visibility="joined")
    room.join(BOB)
    room.message(ALICE, "needle seen")
    room.leave(BOB)
    for i in range(5):
        room.message(ALICE, f"needle unseen {i}")
    await env.send_room(room)
    bob = env.token(BOB)
    first = await search(env, bob, {"search_term": "needle", "order_by": order})
    assert "next_batch" in first
    pages = [first]
    while "next_batch" in pages[-1] and len(pages) < 10:
        pages.append(await search(env, bob, {"search_term": "needle", "order_by": order},
                                  next_batch=pages[-1]["next_batch"]))
    assert [body for page in pages for body in bodies(page)] == ["needle seen"]
    if order == "recent":
        # Newest first: the first page's rounds met only unseen matches.
        assert first["results"] == []
