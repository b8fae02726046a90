"""Reporting events and rooms (report_content.yaml) against the real room
server, in process and over gRPC."""

from __future__ import annotations

from clientapi.routing.report import MAX_REASON_CHARS
from tests.component.clientapi.conftest import SERVER_NAME, Harness
from tests.component.clientapi.test_clientapi_real_roomserver import harness, real_roomserver

__all__ = ["harness", "real_roomserver"]

V3 = "/_matrix/client/v3"


async def test_reporting_an_event_needs_a_joined_user_who_can_see_it(harness: Harness) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    room_id = await harness.create_room(alice, preset="public_chat", initial_state=[
        {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}}])
    sent = await harness.send(alice, room_id, {"msgtype": "m.text", "body": "rude"}, "t1")
    event_id = sent.json()["event_id"]
    path = f"{V3}/rooms/{room_id}/report/{event_id}"

    ok = await harness.http.post(path, json={"reason": "rude", "score": -100}, headers=alice.headers)
    assert ok.status_code == 200 and ok.json() == {}
    # The spec's v1.18 body has only a reason; an empty body is fine too.
    assert (await harness.http.post(path, json={}, headers=alice.headers)).status_code == 200
    reports = await harness.clientapi.services.database.event_reports()
    assert [(r.user_id, r.event_id, r.reason, r.score) for r in reports] == [
        (alice.user_id, event_id, "rude", -100), (alice.user_id, event_id, None, None)]

    # Not joined, then joined after the event under history_visibility joined: 404 both times.
    outsider = await harness.http.post(path, json={"reason": "x"}, headers=bob.headers)
    assert outsider.status_code == 404 and outsider.json()["errcode"] == "M_NOT_FOUND"
    joined = await harness.http.post(f"{V3}/rooms/{room_id}/join", json={}, headers=bob.headers)
    assert joined.status_code == 200, joined.text
    hidden = await harness.http.post(path, json={"reason": "x"}, headers=bob.headers)
    assert hidden.status_code == 404
    later = (await harness.send(alice, room_id, {"msgtype": "m.text", "body": "ruder"}, "t2")).json()["event_id"]
    seen = await harness.http.post(f"{V3}/rooms/{room_id}/report/{later}", json={"reason": "x"},
                                   headers=bob.headers)
    assert seen.status_code == 200

    unknown = await harness.http.post(f"{V3}/rooms/{room_id}/report/$nope", json={}, headers=alice.headers)
    assert unknown.status_code == 404
    other_room = await harness.create_room(alice)
    elsewhere = await harness.http.post(f"{V3}/rooms/{other_room}/report/{event_id}", json={},
                                        headers=alice.headers)
    assert elsewhere.status_code == 404
    for bad in ({"score": 5}, {"score": "bad"}, {"reason": 7}, {"reason": "x" * (MAX_REASON_CHARS + 1)}):
        refused = await harness.http.post(path, json=bad, headers=alice.headers)
        assert refused.status_code == 400, bad
    not_json = await harness.http.post(path, content=b"nope", headers=alice.headers)
    assert not_json.status_code == 400 and not_json.json()["errcode"] == "M_NOT_JSON"
    assert (await harness.http.post(path, json={})).status_code == 401


async def test_reporting_a_room(harness: Harness) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    room_id = await harness.create_room(alice)
    # Bob need not be in the room.
    ok = await harness.http.post(f"{V3}/rooms/{room_id}/report", json={"reason": "spam room"},
                                 headers=bob.headers)
    assert ok.status_code == 200 and ok.json() == {}
    reports = await harness.clientapi.services.database.room_reports()
    assert [(r.room_id, r.user_id, r.reason) for r in reports] == [(room_id, bob.user_id, "spam room")]
    unknown = await harness.http.post(f"{V3}/rooms/!nope:client.test/report", json={"reason": "x"},
                                      headers=bob.headers)
    assert unknown.status_code == 404 and unknown.json()["errcode"] == "M_NOT_FOUND"
    missing = await harness.http.post(f"{V3}/rooms/{room_id}/report", json={}, headers=bob.headers)
    assert missing.status_code == 400 and missing.json()["errcode"] == "M_MISSING_PARAM"


async def test_reporting_a_user(harness: Harness) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    ok = await harness.http.post(f"{V3}/users/{bob.user_id}/report", json={"reason": "rude"},
                                 headers=alice.headers)
    assert ok.status_code == 200 and ok.json() == {}
    remote = await harness.http.post(f"{V3}/users/@someone:elsewhere.example/report", json={"reason": ""},
                                     headers=alice.headers)
    assert remote.status_code == 200
    reports = await harness.clientapi.services.database.user_reports()
    assert [(r.target_user_id, r.user_id, r.reason) for r in reports] == [
        (bob.user_id, alice.user_id, "rude"), ("@someone:elsewhere.example", alice.user_id, "")]
    unknown = await harness.http.post(f"{V3}/users/@nobody:{SERVER_NAME}/report", json={"reason": "x"},
                                      headers=alice.headers)
    assert unknown.status_code == 404 and unknown.json()["errcode"] == "M_NOT_FOUND"
    missing = await harness.http.post(f"{V3}/users/{bob.user_id}/report", json={}, headers=alice.headers)
    assert missing.status_code == 400 and missing.json()["errcode"] == "M_MISSING_PARAM"
    not_a_user = await harness.http.post(f"{V3}/users/bob/report", json={"reason": "x"}, headers=alice.headers)
    assert not_a_user.status_code == 400
