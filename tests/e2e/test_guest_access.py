"""A guest in the single process: the sync API's reads open to guests
(/sync, /messages, /members) answer, the others (/notifications, filters,
search) are 403 M_GUEST_ACCESS_FORBIDDEN, media can be downloaded but not
uploaded, and a guest's message in a room open to guests reaches a full
member's /sync."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.e2e.harness import RunningHomeserver, start_monolith

pytestmark = pytest.mark.e2e
V3 = "/_matrix/client/v3"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHomeserver]:
    workdir: Path = tmp_path_factory.mktemp("guests")
    hs = start_monolith(workdir)
    yield hs
    hs.stop()


async def test_guest_reads_and_sends_through_the_sync_api(server: RunningHomeserver) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        r = await http.post(f"{V3}/register", json={"username": "host", "password": "a-long-password",
                                                     "auth": {"type": "m.login.dummy"}})
        assert r.status_code == 200, r.text
        host = {"Authorization": f"Bearer {r.json()['access_token']}"}
        r = await http.post(f"{V3}/createRoom", headers=host, json={"preset": "public_chat", "initial_state": [
            {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "can_join"}}]})
        assert r.status_code == 200, r.text
        room_id = r.json()["room_id"]

        r = await http.post(f"{V3}/register", params={"kind": "guest"}, json={})
        assert r.status_code == 200, r.text
        guest_id, guest = r.json()["user_id"], {"Authorization": f"Bearer {r.json()['access_token']}"}
        r = await http.post(f"{V3}/rooms/{room_id}/join", headers=guest)
        assert r.status_code == 200, r.text
        r = await http.put(f"{V3}/rooms/{room_id}/send/m.room.message/g1", headers=guest,
                           json={"msgtype": "m.text", "body": "hello from a guest"})
        assert r.status_code == 200, r.text
        event_id = r.json()["event_id"]

        r = await http.get(f"{V3}/sync", headers=guest, params={"timeout": "0"})
        assert r.status_code == 200, r.text
        assert room_id in r.json()["rooms"]["join"]
        r = await http.get(f"{V3}/rooms/{room_id}/messages", headers=guest, params={"dir": "b"})
        assert r.status_code == 200 and event_id in [e["event_id"] for e in r.json()["chunk"]], r.text
        r = await http.get(f"{V3}/rooms/{room_id}/members", headers=guest)
        assert r.status_code == 200, r.text
        refused: list[tuple[str, str, object]] = [("GET", "/notifications", None),
                                                   ("POST", f"/user/{quote(guest_id)}/filter", {}),
                                                   ("POST", "/search", {"search_categories": {}})]
        for method, path, body in refused:
            r = await http.request(method, V3 + path, headers=guest, json=body)
            assert (r.status_code, r.json()["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN"), path

        # Media: guests download, they do not upload.
        r = await http.post("/_matrix/media/v3/upload", headers={**guest, "Content-Type": "text/plain"},
                            content=b"from a guest")
        assert (r.status_code, r.json()["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN"), r.text
        r = await http.post("/_matrix/media/v3/upload", headers={**host, "Content-Type": "text/plain"},
                            content=b"for everyone")
        assert r.status_code == 200, r.text
        server_name, media_id = r.json()["content_uri"][len("mxc://"):].split("/")
        r = await http.get(f"/_matrix/client/v1/media/download/{server_name}/{media_id}", headers=guest)
        assert r.status_code == 200 and r.content == b"for everyone", r.text

        r = await http.get(f"{V3}/sync", headers=host, params={"timeout": "0"})
        timeline = r.json()["rooms"]["join"][room_id]["timeline"]["events"]
        assert any(e["event_id"] == event_id and e["sender"] == guest_id for e in timeline)
