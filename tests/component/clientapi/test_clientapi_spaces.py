"""GET /v1/rooms/{roomId}/hierarchy and GET /v1/room_summary/{roomIdOrAlias}
against the real room server: children order, suggested_only, max_depth,
pagination, and what a user may not see."""

from __future__ import annotations

from typing import Any

import pytest

from roomserver.api import ClientRoomserverAPI
from tests.component.clientapi.conftest import SERVER_NAME, Harness, HarnessFactory, User
from tests.component.clientapi.test_clientapi_real_roomserver import real_roomserver  # noqa: F401 (fixture)

V1 = "/_matrix/client/v1"
V3 = "/_matrix/client/v3"


@pytest.fixture
async def harness(make_harness: HarnessFactory, real_roomserver: ClientRoomserverAPI) -> Harness:  # noqa: F811
    return await make_harness(roomserver=real_roomserver)


async def _add_child(harness: Harness, user: User, space: str, child: str, **content: Any) -> None:
    response = await harness.http.put(f"{V3}/rooms/{space}/state/m.space.child/{child}",
                                      json={"via": [SERVER_NAME], **content}, headers=user.headers)
    assert response.status_code == 200, response.text


def _ids(body: dict[str, Any]) -> list[str]:
    return [room["room_id"] for room in body["rooms"]]


async def test_hierarchy(harness: Harness) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    space = await harness.create_room(alice, preset="public_chat", name="Space",
                                      creation_content={"type": "m.space"})
    first = await harness.create_room(alice, preset="public_chat", name="First")
    second = await harness.create_room(alice, preset="public_chat", name="Second")
    private = await harness.create_room(alice, preset="private_chat", name="Private")
    subspace = await harness.create_room(alice, preset="public_chat", creation_content={"type": "m.space"})
    deep = await harness.create_room(alice, preset="public_chat", name="Deep")
    await _add_child(harness, alice, space, second, order="b")
    await _add_child(harness, alice, space, first, order="a", suggested=True)
    await _add_child(harness, alice, space, private)
    await _add_child(harness, alice, space, subspace)
    await _add_child(harness, alice, subspace, deep)

    response = await harness.http.get(f"{V1}/rooms/{space}/hierarchy", headers=bob.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    # Bob is in none of them: the private room is left out.
    assert _ids(body) == [space, first, second, subspace, deep]
    root = body["rooms"][0]
    assert root["room_type"] == "m.space" and root["name"] == "Space" and root["num_joined_members"] == 1
    assert [c["state_key"] for c in root["children_state"]] == [first, second, private, subspace]
    assert all("origin_server_ts" in c for c in root["children_state"])

    mine = (await harness.http.get(f"{V1}/rooms/{space}/hierarchy", headers=alice.headers)).json()
    assert private in _ids(mine)
    suggested = (await harness.http.get(f"{V1}/rooms/{space}/hierarchy", params={"suggested_only": "true"},
                                        headers=bob.headers)).json()
    assert _ids(suggested) == [space, first]
    shallow = (await harness.http.get(f"{V1}/rooms/{space}/hierarchy", params={"max_depth": "1"},
                                      headers=bob.headers)).json()
    assert deep not in _ids(shallow)

    page = (await harness.http.get(f"{V1}/rooms/{space}/hierarchy", params={"limit": "2"},
                                   headers=bob.headers)).json()
    assert _ids(page) == [space, first]
    rest = (await harness.http.get(f"{V1}/rooms/{space}/hierarchy", params={"from": page["next_batch"]},
                                   headers=bob.headers)).json()
    assert _ids(rest) == [second, subspace, deep] and "next_batch" not in rest
    changed = await harness.http.get(f"{V1}/rooms/{space}/hierarchy",
                                     params={"from": page["next_batch"], "max_depth": "1"}, headers=bob.headers)
    assert changed.status_code == 400 and changed.json()["errcode"] == "M_INVALID_PARAM"

    hidden = await harness.http.get(f"{V1}/rooms/{private}/hierarchy", headers=bob.headers)
    assert hidden.status_code == 403 and hidden.json()["errcode"] == "M_FORBIDDEN"
    unknown = await harness.http.get(f"{V1}/rooms/!nosuch:{SERVER_NAME}/hierarchy", headers=bob.headers)
    assert unknown.status_code == 403


async def test_room_summary(harness: Harness) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    public = await harness.create_room(alice, preset="public_chat", name="Open", topic="about",
                                       room_alias_name="summarised")
    private = await harness.create_room(alice, preset="private_chat", name="Closed")

    by_alias = await harness.http.get(f"{V1}/room_summary/%23summarised:{SERVER_NAME}", headers=bob.headers)
    assert by_alias.status_code == 200, by_alias.text
    body = by_alias.json()
    assert body["room_id"] == public and body["name"] == "Open" and body["topic"] == "about"
    assert body["membership"] == "leave" and body["join_rule"] == "public" and body["num_joined_members"] == 1
    anonymous = await harness.http.get(f"{V1}/room_summary/{public}")
    assert anonymous.status_code == 401

    hidden = await harness.http.get(f"{V1}/room_summary/{private}", headers=bob.headers)
    assert hidden.status_code == 404 and hidden.json()["errcode"] == "M_NOT_FOUND"
    own = (await harness.http.get(f"{V1}/room_summary/{private}", headers=alice.headers)).json()
    assert own["membership"] == "join" and own["join_rule"] == "invite"
    missing = await harness.http.get(f"{V1}/room_summary/%23nosuch:{SERVER_NAME}", headers=bob.headers)
    assert missing.status_code == 404
