"""The bad cases of each area of the client-server API against the single
process: missing fields are 400 M_MISSING_PARAM, fields of the wrong type
400 M_BAD_JSON, values out of range 400 M_INVALID_PARAM, reading a room with
``joined`` history visibility as a non-member 403, changing state without
the power 403; and none of them changes anything (the room's state and
timeline, the account data, the profile are as before).

Expired interactive-auth sessions (401 with the flows) are in
tests/component/clientapi/test_clientapi_sessions.py, the rate limits (429
with retry_after_ms) in test_clientapi_ratelimits.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.e2e.harness import RunningHomeserver, start_monolith

pytestmark = pytest.mark.e2e
V3 = "/_matrix/client/v3"
V1 = "/_matrix/client/v1"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHomeserver]:
    workdir: Path = tmp_path_factory.mktemp("bad_cases")
    hs = start_monolith(workdir)
    yield hs
    hs.stop()


async def register(http: httpx.AsyncClient, username: str) -> tuple[str, dict[str, str]]:
    r = await http.post(f"{V3}/register", json={"username": username, "password": "a-long-password",
                                                 "auth": {"type": "m.login.dummy"}})
    assert r.status_code == 200, r.text
    return r.json()["user_id"], {"Authorization": f"Bearer {r.json()['access_token']}"}


async def snapshot(http: httpx.AsyncClient, headers: dict[str, str], room_id: str, user_id: str) -> Any:
    """What the bad requests must leave unchanged."""
    state = (await http.get(f"{V3}/rooms/{room_id}/state", headers=headers)).json()
    messages = (await http.get(f"{V3}/rooms/{room_id}/messages", params={"dir": "b", "limit": "50"},
                               headers=headers)).json()
    profile = (await http.get(f"{V3}/profile/{quote(user_id)}")).json()
    tags = (await http.get(f"{V3}/user/{quote(user_id)}/rooms/{room_id}/tags", headers=headers)).json()
    rules = (await http.get(f"{V3}/pushrules/", headers=headers)).json()
    return (sorted((e["type"], e["state_key"], e["event_id"]) for e in state),
            [e["event_id"] for e in messages["chunk"]], profile, tags, rules)


async def test_bad_cases_of_each_area_change_nothing(server: RunningHomeserver) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        alice, owner = await register(http, "alice")
        bob, member = await register(http, "bob")
        _, outsider = await register(http, "olga")
        r = await http.post(f"{V3}/createRoom", headers=owner, json={
            "preset": "public_chat", "name": "Bad cases",
            "initial_state": [{"type": "m.room.history_visibility", "state_key": "",
                               "content": {"history_visibility": "joined"}}]})
        room_id = r.json()["room_id"]
        r = await http.post(f"{V3}/rooms/{room_id}/join", headers=member, json={})
        assert r.status_code == 200, r.text
        r = await http.put(f"{V3}/rooms/{room_id}/send/m.room.message/m1", headers=owner,
                           json={"msgtype": "m.text", "body": "members only"})
        event_id = r.json()["event_id"]
        before = await snapshot(http, owner, room_id, alice)
        room = f"{V3}/rooms/{room_id}"
        user = f"{V3}/user/{quote(alice)}"

        cases: list[tuple[str, str, dict[str, str], Any, dict[str, str], int, str]] = [
            # -- accounts and sessions
            ("POST", f"{V3}/login", {}, {"type": "m.login.password", "identifier": {"type": "m.id.user",
                                                                                     "user": "alice"}},
             {}, 400, "M_MISSING_PARAM"),
            ("POST", f"{V3}/login", {}, {"type": "m.login.password", "password": 5,
                                         "identifier": {"type": "m.id.user", "user": "alice"}},
             {}, 400, "M_BAD_JSON"),
            ("POST", f"{V3}/register", {}, {"username": ["alice"], "password": "x",
                                            "auth": {"type": "m.login.dummy"}}, {}, 400, "M_BAD_JSON"),
            ("GET", f"{V3}/register/available", owner, None, {}, 400, "M_MISSING_PARAM"),
            ("POST", f"{V3}/refresh", {}, {}, {}, 400, "M_MISSING_PARAM"),
            # -- devices
            ("PUT", f"{V3}/devices/X", owner, {"display_name": 7}, {}, 400, "M_BAD_JSON"),
            ("POST", f"{V3}/delete_devices", owner, {"devices": "X"}, {}, 400, "M_BAD_JSON"),
            # -- rooms
            ("POST", f"{V3}/createRoom", owner, {"preset": "party"}, {}, 400, "M_INVALID_PARAM"),
            ("POST", f"{V3}/createRoom", owner, {"name": 5}, {}, 400, "M_BAD_JSON"),
            ("POST", f"{room}/invite", owner, {}, {}, 400, "M_MISSING_PARAM"),
            ("POST", f"{room}/invite", owner, {"user_id": 5}, {}, 400, "M_BAD_JSON"),
            ("POST", f"{room}/kick", owner, {"user_id": "not a user"}, {}, 400, "M_INVALID_PARAM"),
            ("POST", f"{room}/ban", owner, {}, {}, 400, "M_MISSING_PARAM"),
            ("POST", f"{room}/upgrade", owner, {}, {}, 400, "M_MISSING_PARAM"),
            ("POST", f"{room}/upgrade", owner, {"new_version": "999"}, {}, 400, "M_UNSUPPORTED_ROOM_VERSION"),
            # -- events
            ("PUT", f"{room}/send/m.room.message/b1", owner, [1, 2], {}, 400, "M_BAD_JSON"),
            ("PUT", f"{room}/state/m.room.topic", owner, "topic", {}, 400, "M_BAD_JSON"),
            ("PUT", f"{room}/redact/{quote(event_id)}/b2", owner, {"reason": 5}, {}, 400, "M_BAD_JSON"),
            ("POST", f"{room}/receipt/m.unknown/{quote(event_id)}", owner, {}, {}, 400, "M_INVALID_PARAM"),
            ("POST", f"{room}/read_markers", owner, {"m.fully_read": 5}, {}, 400, "M_BAD_JSON"),
            ("PUT", f"{room}/typing/{quote(alice)}", owner, {}, {}, 400, "M_MISSING_PARAM"),
            ("PUT", f"{room}/typing/{quote(alice)}", owner, {"typing": "yes"}, {}, 400, "M_BAD_JSON"),
            ("POST", f"{room}/report/{quote(event_id)}", owner, {"reason": 5}, {}, 400, "M_BAD_JSON"),
            # -- reads
            ("GET", f"{room}/messages", owner, None, {"dir": "sideways"}, 400, "M_INVALID_PARAM"),
            ("GET", f"{room}/messages", owner, None, {"dir": "b", "limit": "many"}, 400, "M_INVALID_PARAM"),
            ("GET", f"{room}/messages", owner, None, {"dir": "b", "filter": "{not json"}, 400, "M_NOT_JSON"),
            ("GET", f"{V3}/sync", owner, None, {"timeout": "soon"}, 400, "M_INVALID_PARAM"),
            ("GET", f"{V3}/sync", owner, None, {"set_presence": "asleep"}, 400, "M_INVALID_PARAM"),
            ("POST", f"{user}/filter", owner, {"room": {"timeline": {"limit": "ten"}}}, {}, 400, "M_BAD_JSON"),
            ("POST", f"{V3}/search", owner, {}, {}, 400, "M_MISSING_PARAM"),
            ("GET", f"{V1}/rooms/{room_id}/timestamp_to_event", owner, None, {"ts": "now", "dir": "f"},
             400, "M_INVALID_PARAM"),
            # -- ephemeral and per-user data
            ("PUT", f"{user}/account_data/m.fully_read", owner, {"event_id": event_id}, {}, 405, "M_BAD_JSON"),
            ("PUT", f"{user}/account_data/org.example", owner, [1], {}, 400, "M_BAD_JSON"),
            ("PUT", f"{user}/rooms/{room_id}/tags/u.work", owner, {"order": "first"}, {}, 400, "M_BAD_JSON"),
            ("PUT", f"{V3}/presence/{quote(alice)}/status", owner, {"presence": "asleep"}, {}, 400,
             "M_INVALID_PARAM"),
            # -- profiles and directory
            ("PUT", f"{V3}/profile/{quote(alice)}/displayname", owner, {"displayname": 5}, {}, 400, "M_BAD_JSON"),
            ("PUT", f"{V3}/profile/{quote(alice)}/displayname", owner, {}, {}, 400, "M_MISSING_PARAM"),
            ("PUT", f"{V3}/directory/list/room/{room_id}", owner, {"visibility": "everyone"}, {}, 400,
             "M_INVALID_PARAM"),
            ("PUT", f"{V3}/directory/room/{quote('#x:elsewhere.example')}", owner, {"room_id": room_id}, {},
             400, "M_INVALID_PARAM"),
            ("PUT", f"{V3}/directory/room/{quote('#x:' + alice.split(':', 1)[1])}", owner, {}, {}, 400,
             "M_MISSING_PARAM"),
            ("POST", f"{V3}/publicRooms", owner, {"limit": "ten"}, {}, 400, "M_BAD_JSON"),
            ("POST", f"{V3}/user_directory/search", owner, {}, {}, 400, "M_MISSING_PARAM"),
            # -- push
            ("PUT", f"{V3}/pushrules/global/sideways/x", owner, {"actions": []}, {}, 400, "M_INVALID_PARAM"),
            ("PUT", f"{V3}/pushrules/global/content/x", owner, {"pattern": "cake"}, {}, 400, "M_MISSING_PARAM"),
            ("PUT", f"{V3}/pushrules/global/content/x", owner, {"actions": ["notify"]}, {}, 400, "M_MISSING_PARAM"),
            ("PUT", f"{V3}/pushrules/global/override/.m.rule.master/enabled", owner, {"enabled": "no"}, {},
             400, "M_BAD_JSON"),
            ("POST", f"{V3}/pushers/set", owner, {"kind": "http"}, {}, 400, "M_MISSING_PARAM"),
            # -- visibility: joined history, read by a non-member (single events
            # are 404, "not found or you do not have permission", as the spec says)
            ("GET", f"{room}/messages", outsider, None, {"dir": "b"}, 403, "M_FORBIDDEN"),
            ("GET", f"{room}/event/{quote(event_id)}", outsider, None, {}, 404, "M_NOT_FOUND"),
            ("GET", f"{room}/context/{quote(event_id)}", outsider, None, {}, 404, "M_NOT_FOUND"),
            ("GET", f"{room}/state", outsider, None, {}, 403, "M_FORBIDDEN"),
            ("GET", f"{room}/members", outsider, None, {}, 403, "M_FORBIDDEN"),
            ("GET", f"{V1}/rooms/{room_id}/relations/{quote(event_id)}", outsider, None, {}, 404, "M_NOT_FOUND"),
            ("GET", f"{V1}/rooms/{room_id}/threads", outsider, None, {}, 403, "M_FORBIDDEN"),
            # -- power: a member at level 0 changes state
            ("PUT", f"{room}/state/m.room.name", member, {"name": "taken over"}, {}, 403, "M_FORBIDDEN"),
            ("PUT", f"{room}/state/m.room.power_levels", member, {"users": {bob: 100}}, {}, 403, "M_FORBIDDEN"),
            ("POST", f"{room}/kick", member, {"user_id": alice}, {}, 403, "M_FORBIDDEN"),
        ]
        failures = []
        for method, path, headers, body, query, status, errcode in cases:
            r = await http.request(method, path, headers=headers, params=query,
                                   json=body if body is not None or method != "GET" else None)
            answer = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            if (r.status_code, answer.get("errcode")) != (status, errcode):
                failures.append(f"{method} {path} {body!r} {query}: {r.status_code} {r.text[:200]}")
        assert not failures, "\n".join(failures)
        # Search finds nothing the non-member may not see.
        r = await http.post(f"{V3}/search", headers=outsider, json={"search_categories": {"room_events": {
            "search_term": "members", "filter": {"rooms": [room_id]}}}})
        assert r.status_code == 200 and r.json()["search_categories"]["room_events"]["results"] == [], r.text
        r = await http.post(f"{V3}/search", headers=member, json={"search_categories": {"room_events": {
            "search_term": "members", "filter": {"rooms": [room_id]}}}})
        assert [x["result"]["event_id"] for x in r.json()["search_categories"]["room_events"]["results"]] == [
            event_id], r.text

        assert await snapshot(http, owner, room_id, alice) == before
