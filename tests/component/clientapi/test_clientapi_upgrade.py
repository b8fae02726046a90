"""POST /rooms/{roomId}/upgrade against the real room server: the new room's
create event and copied state, the tombstone, the restricted old room, the
moved alias, and the refusals (unknown version, no power)."""

from __future__ import annotations

from typing import Any

import pytest

from roomserver.api import ClientRoomserverAPI
from tests.component.clientapi.conftest import SERVER_NAME, Harness, HarnessFactory
from tests.component.clientapi.test_clientapi_real_roomserver import real_roomserver  # noqa: F401 (fixture)

V3 = "/_matrix/client/v3"


@pytest.fixture
async def harness(make_harness: HarnessFactory, real_roomserver: ClientRoomserverAPI) -> Harness:  # noqa: F811
    return await make_harness(roomserver=real_roomserver)


async def _state(harness: Harness, headers: dict[str, str], room_id: str, path: str) -> Any:
    response = await harness.http.get(f"{V3}/rooms/{room_id}/state/{path}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(("old_version", "new_version"), [("10", "11"), ("11", "12"), ("12", "12")])
async def test_upgrade_copies_state_and_tombstones(harness: Harness, old_version: str, new_version: str) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    carol = await harness.register("carol")
    room_id = await harness.create_room(alice, room_version=old_version, preset="public_chat", name="Old",
                                        topic="before", room_alias_name="upgraded")
    for user in (bob, carol):
        joined = await harness.http.post(f"{V3}/join/{room_id}", json={}, headers=user.headers)
        assert joined.status_code == 200, joined.text
    banned = await harness.http.post(f"{V3}/rooms/{room_id}/ban", json={"user_id": carol.user_id},
                                     headers=alice.headers)
    assert banned.status_code == 200, banned.text
    levels = await _state(harness, alice.headers, room_id, "m.room.power_levels")
    levels["users"][bob.user_id] = 20
    levels["state_default"] = 60
    changed = await harness.http.put(f"{V3}/rooms/{room_id}/state/m.room.power_levels", json=levels,
                                     headers=alice.headers)
    assert changed.status_code == 200, changed.text

    body: dict[str, Any] = {"new_version": new_version}
    if new_version == "12":
        body["additional_creators"] = [bob.user_id]
    response = await harness.http.post(f"{V3}/rooms/{room_id}/upgrade", json=body, headers=alice.headers)
    assert response.status_code == 200, response.text
    new_room = response.json()["replacement_room"]
    assert new_room != room_id

    create = await _state(harness, alice.headers, new_room, "m.room.create")
    assert create["room_version"] == new_version
    assert create["predecessor"]["room_id"] == room_id
    if new_version == "12":
        assert create["additional_creators"] == [bob.user_id]
        assert "event_id" not in create["predecessor"]
    else:
        assert create["predecessor"]["event_id"].startswith("$")
    assert (await _state(harness, alice.headers, new_room, "m.room.name")) == {"name": "Old"}
    assert (await _state(harness, alice.headers, new_room, "m.room.topic"))["topic"] == "before"
    assert (await _state(harness, alice.headers, new_room, "m.room.join_rules")) == {"join_rule": "public"}
    assert (await _state(harness, alice.headers, new_room, f"m.room.member/{carol.user_id}"))["membership"] == "ban"
    new_levels = await _state(harness, alice.headers, new_room, "m.room.power_levels")
    # The original levels are back after the copy (creators unlisted in v12).
    assert new_levels["state_default"] == 60
    if new_version == "12":
        assert alice.user_id not in new_levels["users"] and bob.user_id not in new_levels["users"]
    else:
        assert new_levels["users"] == levels["users"]
    alias = await harness.http.get(f"{V3}/directory/room/%23upgraded:{SERVER_NAME}")
    assert alias.json()["room_id"] == new_room

    tombstone = await _state(harness, alice.headers, room_id, "m.room.tombstone")
    assert tombstone["replacement_room"] == new_room
    old_levels = await _state(harness, alice.headers, room_id, "m.room.power_levels")
    assert old_levels["events_default"] == 50 and old_levels["invite"] == 50
    # Bob (level 20) may no longer speak in the old room.
    spoken = await harness.send(bob, room_id, {"msgtype": "m.text", "body": "still here?"}, "late")
    assert spoken.status_code == 403, spoken.text


async def test_upgrade_refusals(harness: Harness) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    room_id = await harness.create_room(alice, room_version="10", preset="public_chat")
    joined = await harness.http.post(f"{V3}/join/{room_id}", json={}, headers=bob.headers)
    assert joined.status_code == 200, joined.text

    unknown = await harness.http.post(f"{V3}/rooms/{room_id}/upgrade", json={"new_version": "99"},
                                      headers=alice.headers)
    assert unknown.status_code == 400 and unknown.json()["errcode"] == "M_UNSUPPORTED_ROOM_VERSION"
    missing = await harness.http.post(f"{V3}/rooms/{room_id}/upgrade", json={}, headers=alice.headers)
    assert missing.status_code == 400 and missing.json()["errcode"] == "M_MISSING_PARAM"
    powerless = await harness.http.post(f"{V3}/rooms/{room_id}/upgrade", json={"new_version": "11"},
                                        headers=bob.headers)
    assert powerless.status_code == 403 and powerless.json()["errcode"] == "M_FORBIDDEN"
    # Nothing happened: no tombstone in the old room.
    none = await harness.http.get(f"{V3}/rooms/{room_id}/state/m.room.tombstone", headers=alice.headers)
    assert none.status_code == 404
    unknown_room = await harness.http.post(f"{V3}/rooms/!nosuch:{SERVER_NAME}/upgrade",
                                           json={"new_version": "11"}, headers=alice.headers)
    assert unknown_room.status_code in (403, 404)
