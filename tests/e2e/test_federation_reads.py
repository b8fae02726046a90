"""Synapse reads from Myelin over federation: a Synapse user's client asks
Synapse for a Myelin user's profile, a Myelin room alias and Myelin's
public room directory, which Synapse fetches from Myelin's federation API
(/v1/query/profile, /v1/query/directory, /v1/publicRooms) with X-Matrix
signed requests."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from tests.e2e.harness import RunningHomeserver
from tests.e2e.test_federation_keys import (  # noqa: F401 (fixtures)
    SynapsePeer,
    myelin,
    register_synapse_user,
    synapse_peer,
)

pytestmark = pytest.mark.e2e
V3 = "/_matrix/client/v3"


async def test_synapse_reads_profiles_aliases_and_public_rooms_from_myelin(
        synapse_peer: SynapsePeer, myelin: tuple[RunningHomeserver, str, int]) -> None:  # noqa: F811
    hs, myelin_name, _ = myelin
    async with httpx.AsyncClient(base_url=hs.base_url, timeout=60) as http:
        r = await http.post(f"{V3}/register", json={"username": "mira", "password": "a-long-password",
                                                     "auth": {"type": "m.login.dummy"}})
        assert r.status_code == 200, r.text
        mira, headers = r.json()["user_id"], {"Authorization": f"Bearer {r.json()['access_token']}"}
        r = await http.put(f"{V3}/profile/{quote(mira)}/displayname", json={"displayname": "Mira in Myelin"},
                           headers=headers)
        assert r.status_code == 200, r.text
        r = await http.post(f"{V3}/createRoom", headers=headers, json={
            "preset": "public_chat", "visibility": "public", "room_alias_name": "lobby", "name": "Myelin lobby"})
        assert r.status_code == 200, r.text
        room_id = r.json()["room_id"]

    register_synapse_user(synapse_peer, "sam", "Sam")
    async with httpx.AsyncClient(base_url=synapse_peer.client_url, timeout=60) as http:
        r = await http.post(f"{V3}/login", json={
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "sam"},
            "password": "pw-123456"})
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        r = await http.get(f"{V3}/profile/{quote(mira)}", headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["displayname"] == "Mira in Myelin"
        r = await http.get(f"{V3}/profile/{quote('@nobody:' + myelin_name)}", headers=headers)
        assert r.status_code == 404, r.text

        alias = f"#lobby:{myelin_name}"
        r = await http.get(f"{V3}/directory/room/{quote(alias)}", headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["room_id"] == room_id and myelin_name in r.json()["servers"]
        r = await http.get(f"{V3}/directory/room/{quote('#nothing:' + myelin_name)}", headers=headers)
        assert r.status_code == 404, r.text

        r = await http.get(f"{V3}/publicRooms", params={"server": myelin_name}, headers=headers)
        assert r.status_code == 200, r.text
        assert [(c["room_id"], c.get("name")) for c in r.json()["chunk"]] == [(room_id, "Myelin lobby")]
        r = await http.post(f"{V3}/publicRooms", params={"server": myelin_name}, headers=headers,
                            json={"filter": {"generic_search_term": "lobby"}})
        assert r.status_code == 200, r.text
        assert [c["room_id"] for c in r.json()["chunk"]] == [room_id]
