"""The published room directory: /publicRooms and /directory/list/room."""

from __future__ import annotations

from tests.component.clientapi.conftest import SERVER_NAME, Harness

V3 = "/_matrix/client/v3"


async def test_publish_list_and_unpublish(harness: Harness) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    big = await harness.create_room(alice, visibility="public", name="Big room", topic="lots of people")
    small = await harness.create_room(alice, visibility="public", name="Small room")
    hidden = await harness.create_room(alice, preset="public_chat", name="Not published")
    await harness.http.post(f"{V3}/rooms/{big}/join", json={}, headers=bob.headers)

    response = await harness.http.get(f"{V3}/publicRooms")
    assert response.status_code == 200
    body = response.json()
    assert [e["room_id"] for e in body["chunk"]] == [big, small]
    assert body["total_room_count_estimate"] == 2
    first = body["chunk"][0]
    assert first["num_joined_members"] == 2
    assert first["name"] == "Big room" and first["topic"] == "lots of people"
    assert first["join_rule"] == "public"
    assert first["world_readable"] is False and first["guest_can_join"] is False

    response = await harness.http.get(f"{V3}/publicRooms", params={"limit": "1"})
    assert [e["room_id"] for e in response.json()["chunk"]] == [big]
    next_batch = response.json()["next_batch"]
    response = await harness.http.get(f"{V3}/publicRooms", params={"limit": "1", "since": next_batch})
    assert [e["room_id"] for e in response.json()["chunk"]] == [small]
    assert "next_batch" not in response.json() and response.json()["prev_batch"] == "o0"

    response = await harness.http.post(f"{V3}/publicRooms", json={"filter": {"generic_search_term": "small"}},
                                       headers=bob.headers)
    assert [e["room_id"] for e in response.json()["chunk"]] == [small]
    assert (await harness.http.post(f"{V3}/publicRooms", json={})).status_code == 401

    response = await harness.http.get(f"{V3}/directory/list/room/{hidden}")
    assert response.json() == {"visibility": "private"}
    # Bob is not in the hidden room; in the big room he lacks the power.
    response = await harness.http.put(f"{V3}/directory/list/room/{hidden}", json={"visibility": "public"},
                                      headers=bob.headers)
    assert response.status_code == 403
    response = await harness.http.put(f"{V3}/directory/list/room/{big}", json={"visibility": "private"},
                                      headers=bob.headers)
    assert response.status_code == 403
    response = await harness.http.put(f"{V3}/directory/list/room/{hidden}", json={"visibility": "public"},
                                      headers=alice.headers)
    assert response.status_code == 200
    response = await harness.http.put(f"{V3}/directory/list/room/{big}", json={"visibility": "private"},
                                      headers=alice.headers)
    assert response.status_code == 200
    response = await harness.http.get(f"{V3}/publicRooms")
    assert {e["room_id"] for e in response.json()["chunk"]} == {small, hidden}
    assert (await harness.http.get(f"{V3}/directory/list/room/{big}")).json() == {"visibility": "private"}


async def test_directory_refusals(harness: Harness) -> None:
    alice = await harness.register("alice")
    room_id = await harness.create_room(alice)
    response = await harness.http.get(f"{V3}/directory/list/room/!nope:{SERVER_NAME}")
    assert (response.status_code, response.json()["errcode"]) == (404, "M_NOT_FOUND")
    response = await harness.http.put(f"{V3}/directory/list/room/{room_id}", json={"visibility": "open"},
                                      headers=alice.headers)
    assert (response.status_code, response.json()["errcode"]) == (400, "M_INVALID_PARAM")
    response = await harness.http.get(f"{V3}/publicRooms", params={"since": "garbage"})
    assert (response.status_code, response.json()["errcode"]) == (400, "M_INVALID_PARAM")
    response = await harness.http.get(f"{V3}/publicRooms", params={"limit": "x"})
    assert (response.status_code, response.json()["errcode"]) == (400, "M_INVALID_PARAM")
    response = await harness.http.post(f"{V3}/publicRooms", json={"limit": "5"}, headers=alice.headers)
    assert (response.status_code, response.json()["errcode"]) == (400, "M_BAD_JSON")
    # Without a federation API another server's directory cannot be read.
    response = await harness.http.get(f"{V3}/publicRooms", params={"server": "elsewhere.example"})
    assert response.status_code == 502
    response = await harness.http.get(f"{V3}/publicRooms", params={"server": "not a server"})
    assert (response.status_code, response.json()["errcode"]) == (400, "M_INVALID_PARAM")
