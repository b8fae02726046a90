"""A client of one Myelin reads another Myelin's profiles, aliases and
public room directory: its server asks the other over federation
(/v1/query/profile, /v1/query/directory, /v1/publicRooms) through the
federation API, and answers 404 for what the other does not know or when
the other cannot be reached."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.e2e.harness import RunningHomeserver, free_port
from tests.e2e.test_federation_keys import start_federating

pytestmark = pytest.mark.e2e
V3 = "/_matrix/client/v3"


@pytest.fixture(scope="module")
def two_myelins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[tuple[RunningHomeserver, str, int]]]:
    workdir: Path = tmp_path_factory.mktemp("remote_lookups")
    servers = [start_federating(workdir / "a")]
    try:
        servers.append(start_federating(workdir / "b"))
        yield servers
    finally:
        for hs, _, _ in servers:
            hs.stop()


async def register(http: httpx.AsyncClient, username: str) -> tuple[str, dict[str, str]]:
    r = await http.post(f"{V3}/register", json={"username": username, "password": "a-long-password",
                                                 "auth": {"type": "m.login.dummy"}})
    assert r.status_code == 200, r.text
    return r.json()["user_id"], {"Authorization": f"Bearer {r.json()['access_token']}"}


async def test_remote_profile_alias_and_public_rooms(
        two_myelins: list[tuple[RunningHomeserver, str, int]]) -> None:
    (hs_a, _, _), (hs_b, name_b, _) = two_myelins
    async with httpx.AsyncClient(base_url=hs_b.base_url, timeout=60) as http:
        bea, headers = await register(http, "bea")
        r = await http.put(f"{V3}/profile/{quote(bea)}/displayname", json={"displayname": "Bea on B"},
                           headers=headers)
        assert r.status_code == 200, r.text
        r = await http.put(f"{V3}/profile/{quote(bea)}/avatar_url", json={"avatar_url": "mxc://b/pic"},
                           headers=headers)
        assert r.status_code == 200, r.text
        r = await http.post(f"{V3}/createRoom", headers=headers, json={
            "preset": "public_chat", "visibility": "public", "room_alias_name": "garden", "name": "B garden",
            "topic": "plants"})
        assert r.status_code == 200, r.text
        garden = r.json()["room_id"]
        r = await http.post(f"{V3}/createRoom", headers=headers, json={
            "preset": "public_chat", "visibility": "public", "name": "B kitchen"})
        assert r.status_code == 200, r.text
        kitchen = r.json()["room_id"]

    async with httpx.AsyncClient(base_url=hs_a.base_url, timeout=60) as http:
        _, headers = await register(http, "ari")

        r = await http.get(f"{V3}/profile/{quote(bea)}", headers=headers)
        assert r.status_code == 200, r.text
        assert r.json() == {"displayname": "Bea on B", "avatar_url": "mxc://b/pic"}
        r = await http.get(f"{V3}/profile/{quote(bea)}/displayname", headers=headers)
        assert r.status_code == 200, r.text
        assert r.json() == {"displayname": "Bea on B"}
        r = await http.get(f"{V3}/profile/{quote(bea)}/avatar_url", headers=headers)
        assert r.json() == {"avatar_url": "mxc://b/pic"}
        r = await http.get(f"{V3}/profile/{quote('@nobody:' + name_b)}", headers=headers)
        assert (r.status_code, r.json()["errcode"]) == (404, "M_NOT_FOUND"), r.text
        unreachable = f"localhost:{free_port()}"
        r = await http.get(f"{V3}/profile/{quote('@ghost:' + unreachable)}", headers=headers)
        assert (r.status_code, r.json()["errcode"]) == (404, "M_NOT_FOUND"), r.text

        r = await http.get(f"{V3}/directory/room/{quote('#garden:' + name_b)}", headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["room_id"] == garden and name_b in r.json()["servers"]
        r = await http.get(f"{V3}/directory/room/{quote('#weeds:' + name_b)}", headers=headers)
        assert (r.status_code, r.json()["errcode"]) == (404, "M_NOT_FOUND"), r.text
        r = await http.get(f"{V3}/directory/room/{quote('#x:' + unreachable)}", headers=headers)
        assert (r.status_code, r.json()["errcode"]) == (404, "M_NOT_FOUND"), r.text

        r = await http.get(f"{V3}/publicRooms", params={"server": name_b})
        assert r.status_code == 200, r.text
        listed: list[dict[str, Any]] = r.json()["chunk"]
        assert {c["room_id"] for c in listed} == {garden, kitchen}
        assert next(c for c in listed if c["room_id"] == garden)["topic"] == "plants"
        r = await http.get(f"{V3}/publicRooms", params={"server": name_b, "limit": "1"})
        assert len(r.json()["chunk"]) == 1 and "next_batch" in r.json(), r.text
        r = await http.post(f"{V3}/publicRooms", params={"server": name_b}, headers=headers,
                            json={"filter": {"generic_search_term": "garden"}})
        assert r.status_code == 200, r.text
        assert [c["room_id"] for c in r.json()["chunk"]] == [garden]
        # Our own directory is still ours: neither room is in it.
        r = await http.get(f"{V3}/publicRooms")
        assert r.json()["chunk"] == [], r.text
        r = await http.get(f"{V3}/publicRooms", params={"server": unreachable})
        assert r.status_code == 502, r.text
