"""GET /presence/{userId}/status of another user asks whether the two share
a joined room, a look-up per room of the requester, instead of reading
every member of every room the requester is in (issue 6)."""

from __future__ import annotations

from typing import Any

import pytest

from syncapi.storage.tables import presence as presence_t
from tests.builders import TestRoom
from tests.component.syncapi.conftest import ALICE, BOB, CAROL, Env, on_each_database

V3 = "/_matrix/client/v3"
DAVE = "@dave:test"
MEMBERS = [f"@member{i:02d}:test" for i in range(30)]


@on_each_database
async def test_presence_visibility_reads_no_room_membership_lists(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    big = TestRoom()
    big.join(BOB)
    for member in MEMBERS:
        big.join(member)
    big.invite(ALICE, CAROL)
    await env.send_room(big)
    other = TestRoom(creator=CAROL)
    other.join(DAVE)
    await env.send_room(other)
    for user in (ALICE, CAROL):
        await env.sync(env.token(user))  # marks them online: there is presence to read

    whole_reads: list[str] = []
    real = presence_t.select_users_sharing_rooms

    async def whole_read(conn: Any, user_id: str) -> set[str]:
        whole_reads.append(user_id)
        return await real(conn, user_id)

    monkeypatch.setattr(presence_t, "select_users_sharing_rooms", whole_read)

    async def status(requester: str, of: str) -> int:
        return (await env.get(f"{V3}/presence/{of}/status", env.token(requester))).status_code

    assert await status(BOB, ALICE) == 200
    assert await status(MEMBERS[-1], ALICE) == 200
    assert await status(ALICE, ALICE) == 200
    assert await status(DAVE, CAROL) == 200
    assert await status(DAVE, ALICE) == 403  # no room in common
    assert await status(CAROL, ALICE) == 403  # only invited: not joined
    await env.send(big.leave(BOB))
    assert await status(BOB, ALICE) == 403  # left
    assert whole_reads == []
