"""Room aliases over HTTP against the real room server, in process and over
gRPC: the directory routes, createRoom's room_alias_name, joining by alias
and the validation of m.room.canonical_alias."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from roomserver.api import ClientRoomserverAPI
from tests.component.clientapi.conftest import SERVER_NAME, Harness, HarnessFactory
from tests.component.clientapi.test_clientapi_real_roomserver import real_roomserver

V3 = "/_matrix/client/v3"
__all__ = ["real_roomserver"]


@pytest.fixture
async def harness(make_harness: HarnessFactory, real_roomserver: ClientRoomserverAPI) -> Harness:
    return await make_harness(roomserver=real_roomserver)


def directory(alias: str) -> str:
    return f"{V3}/directory/room/{quote(alias)}"


def errcode(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    code: str = response.json()["errcode"]
    return code


async def test_alias_directory(harness: Harness) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    room_id = await harness.create_room(alice, preset="public_chat")
    alias = f"#lobby:{SERVER_NAME}"
    assert errcode(await harness.http.get(directory(alias)), 404) == "M_NOT_FOUND"
    created = await harness.http.put(directory(alias), json={"room_id": room_id}, headers=alice.headers)
    assert created.status_code == 200, created.text
    found = await harness.http.get(directory(alias))
    assert found.json() == {"room_id": room_id, "servers": [SERVER_NAME]}
    # Taken: 409 M_UNKNOWN.
    again = await harness.http.put(directory(alias), json={"room_id": room_id}, headers=alice.headers)
    assert errcode(again, 409) == "M_UNKNOWN"
    listed = await harness.http.get(f"{V3}/rooms/{room_id}/aliases", headers=alice.headers)
    assert listed.json() == {"aliases": [alias]}
    # Not a member: no list (the room is not world-readable), no new alias, no deletion.
    assert errcode(await harness.http.get(f"{V3}/rooms/{room_id}/aliases", headers=bob.headers), 403) \
        == "M_FORBIDDEN"
    other = f"#other:{SERVER_NAME}"
    refused = await harness.http.put(directory(other), json={"room_id": room_id}, headers=bob.headers)
    assert errcode(refused, 403) == "M_FORBIDDEN"
    assert errcode(await harness.http.delete(directory(alias), headers=bob.headers), 403) == "M_FORBIDDEN"
    # A member without power cannot delete someone else's alias either.
    joined = await harness.http.post(f"{V3}/join/{quote(alias)}", headers=bob.headers)
    assert joined.status_code == 200 and joined.json() == {"room_id": room_id}, joined.text
    assert errcode(await harness.http.delete(directory(alias), headers=bob.headers), 403) == "M_FORBIDDEN"
    # ...but may delete their own.
    bobs = await harness.http.put(directory(other), json={"room_id": room_id}, headers=bob.headers)
    assert bobs.status_code == 200, bobs.text
    assert (await harness.http.delete(directory(other), headers=bob.headers)).status_code == 200
    # The room's creator (power 100) may delete any alias of the room.
    assert (await harness.http.delete(directory(alias), headers=alice.headers)).status_code == 200
    assert errcode(await harness.http.get(directory(alias)), 404) == "M_NOT_FOUND"
    assert errcode(await harness.http.delete(directory(alias), headers=alice.headers), 404) == "M_NOT_FOUND"


async def test_alias_bad_requests(harness: Harness) -> None:
    alice = await harness.register("alice")
    room_id = await harness.create_room(alice)
    for bad in ("lobby", "#nocolon", "#:"):
        response = await harness.http.put(directory(bad), json={"room_id": room_id}, headers=alice.headers)
        assert errcode(response, 400) == "M_INVALID_PARAM", bad
    remote = "#lobby:elsewhere.example"
    response = await harness.http.put(directory(remote), json={"room_id": room_id}, headers=alice.headers)
    assert errcode(response, 400) == "M_INVALID_PARAM"
    assert errcode(await harness.http.get(directory(remote)), 404) == "M_NOT_FOUND"
    response = await harness.http.put(directory(f"#x:{SERVER_NAME}"), json={}, headers=alice.headers)
    assert errcode(response, 400) == "M_MISSING_PARAM"
    response = await harness.http.put(directory(f"#x:{SERVER_NAME}"), json={"room_id": "!nope:client.test"},
                                      headers=alice.headers)
    assert errcode(response, 404) == "M_NOT_FOUND"
    unknown = await harness.http.post(f"{V3}/join/{quote(f'#nothing:{SERVER_NAME}')}", headers=alice.headers)
    assert errcode(unknown, 404) == "M_NOT_FOUND"
    response = await harness.http.put(directory(f"#x:{SERVER_NAME}"), json={"room_id": room_id})
    assert errcode(response, 401) == "M_MISSING_TOKEN"


async def test_create_room_with_alias(harness: Harness) -> None:
    alice = await harness.register("alice")
    room_id = await harness.create_room(alice, room_alias_name="news", preset="public_chat")
    alias = f"#news:{SERVER_NAME}"
    assert (await harness.http.get(directory(alias))).json()["room_id"] == room_id
    state = await harness.http.get(f"{V3}/rooms/{room_id}/state/m.room.canonical_alias", headers=alice.headers)
    assert state.json() == {"alias": alias}
    taken = await harness.http.post(f"{V3}/createRoom", json={"room_alias_name": "news"}, headers=alice.headers)
    assert errcode(taken, 400) == "M_ROOM_IN_USE"
    bad = await harness.http.post(f"{V3}/createRoom", json={"room_alias_name": "a:b"}, headers=alice.headers)
    assert errcode(bad, 400) == "M_INVALID_PARAM"
    # Deleting the alias takes it out of the canonical alias event.
    assert (await harness.http.delete(directory(alias), headers=alice.headers)).status_code == 200
    state = await harness.http.get(f"{V3}/rooms/{room_id}/state/m.room.canonical_alias", headers=alice.headers)
    assert state.json() == {}


async def test_canonical_alias_validation(harness: Harness) -> None:
    alice = await harness.register("alice")
    room_id = await harness.create_room(alice)
    other_room = await harness.create_room(alice)
    mine, theirs = f"#mine:{SERVER_NAME}", f"#theirs:{SERVER_NAME}"
    for alias, target in ((mine, room_id), (theirs, other_room)):
        response = await harness.http.put(directory(alias), json={"room_id": target}, headers=alice.headers)
        assert response.status_code == 200, response.text
    path = f"{V3}/rooms/{room_id}/state/m.room.canonical_alias"
    ok = await harness.http.put(path, json={"alias": mine, "alt_aliases": [mine]}, headers=alice.headers)
    assert ok.status_code == 200, ok.text
    for content in ({"alias": theirs}, {"alias": f"#missing:{SERVER_NAME}"}, {"alt_aliases": [mine, theirs]},
                    {"alias": "#remote:elsewhere.example"}, {"alias": "not-an-alias"}):
        response = await harness.http.put(path, json=content, headers=alice.headers)
        assert errcode(response, 400) == "M_BAD_ALIAS", content
    invalid: list[dict[str, object]] = [{"alias": 5}, {"alt_aliases": mine}]
    for bad_content in invalid:
        response = await harness.http.put(path, json=bad_content, headers=alice.headers)
        assert errcode(response, 400) == "M_INVALID_PARAM", bad_content
    # Removing the aliases is always fine.
    cleared = await harness.http.put(path, json={}, headers=alice.headers)
    assert cleared.status_code == 200, cleared.text
