"""Account data, tags, push rules and pushers over HTTP (real user API, fake room server)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.component.clientapi.conftest import Harness, User

V3 = "/_matrix/client/v3"
ROOM = "!room:client.test"


async def put(h: Harness, user: User, path: str, body: Any) -> httpx.Response:
    return await h.http.put(V3 + path, json=body, headers=user.headers)


async def get(h: Harness, user: User, path: str) -> httpx.Response:
    return await h.http.get(V3 + path, headers=user.headers)


def errcode(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    code: str = response.json()["errcode"]
    return code


async def test_global_and_room_account_data(harness: Harness) -> None:
    alice = await harness.register("alice")
    path = f"/user/{alice.user_id}/account_data/org.example.conf"
    assert errcode(await get(harness, alice, path), 404) == "M_NOT_FOUND"
    assert (await put(harness, alice, path, {"a": 1})).json() == {}
    assert (await get(harness, alice, path)).json() == {"a": 1}
    room_path = f"/user/{alice.user_id}/rooms/{ROOM}/account_data/org.example.conf"
    assert errcode(await get(harness, alice, room_path), 404) == "M_NOT_FOUND"
    assert (await put(harness, alice, room_path, {"b": 2})).status_code == 200
    assert (await get(harness, alice, room_path)).json() == {"b": 2}
    assert (await get(harness, alice, path)).json() == {"a": 1}


async def test_account_data_errors(harness: Harness) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    path = f"/user/{alice.user_id}/account_data/org.example.conf"
    await put(harness, alice, path, {"a": 1})
    assert errcode(await get(harness, bob, path), 403) == "M_FORBIDDEN"
    assert errcode(await put(harness, bob, path, {"a": 2}), 403) == "M_FORBIDDEN"
    assert errcode(await get(harness, bob, f"/user/{alice.user_id}/rooms/{ROOM}/tags"), 403) == "M_FORBIDDEN"
    assert errcode(await put(harness, bob, f"/user/{alice.user_id}/rooms/{ROOM}/tags/u.x", {}), 403) \
        == "M_FORBIDDEN"
    assert (await get(harness, alice, path)).json() == {"a": 1}
    bad = await harness.http.put(V3 + path, content=b"[1, 2]", headers=alice.headers)
    assert errcode(bad, 400) == "M_BAD_JSON"
    bad = await harness.http.put(V3 + path, content=b"{nope", headers=alice.headers)
    assert errcode(bad, 400) == "M_NOT_JSON"
    for server_type in ("m.fully_read", "m.push_rules"):
        assert errcode(await put(harness, alice, f"/user/{alice.user_id}/account_data/{server_type}", {}),
                       405) == "M_BAD_JSON"
        assert errcode(await put(harness, alice, f"/user/{alice.user_id}/rooms/{ROOM}/account_data/{server_type}",
                                 {}), 405) == "M_BAD_JSON"
    assert errcode(await put(harness, alice, f"/user/{alice.user_id}/rooms/not-a-room/account_data/x", {}),
                   400) == "M_INVALID_PARAM"
    ignore = f"/user/{alice.user_id}/account_data/m.ignored_user_list"
    assert errcode(await put(harness, alice, ignore, {"ignored_users": ["@bob:client.test"]}), 400) == "M_BAD_JSON"
    assert (await put(harness, alice, ignore, {"ignored_users": {bob.user_id: {}}})).status_code == 200
    assert errcode(await put(harness, alice, ignore, {"ignored_users": {alice.user_id: {}}}), 400) \
        == "M_INVALID_PARAM"
    no_token = await harness.http.get(V3 + path)
    assert errcode(no_token, 401) == "M_MISSING_TOKEN"


async def test_tags(harness: Harness) -> None:
    alice = await harness.register("alice")
    tags = f"/user/{alice.user_id}/rooms/{ROOM}/tags"
    assert (await get(harness, alice, tags)).json() == {"tags": {}}
    assert (await put(harness, alice, f"{tags}/m.favourite", {"order": 0.25})).status_code == 200
    assert (await put(harness, alice, f"{tags}/u.work", {})).status_code == 200
    assert (await get(harness, alice, tags)).json() == {"tags": {"m.favourite": {"order": 0.25}, "u.work": {}}}
    # Tags are the room's m.tag account data.
    stored = await get(harness, alice, f"/user/{alice.user_id}/rooms/{ROOM}/account_data/m.tag")
    assert stored.json() == {"tags": {"m.favourite": {"order": 0.25}, "u.work": {}}}
    deleted = await harness.http.delete(V3 + f"{tags}/u.work", headers=alice.headers)
    assert deleted.status_code == 200
    deleted = await harness.http.delete(V3 + f"{tags}/u.never", headers=alice.headers)
    assert deleted.status_code == 200
    assert (await get(harness, alice, tags)).json() == {"tags": {"m.favourite": {"order": 0.25}}}
    assert errcode(await put(harness, alice, f"{tags}/u.bad", {"order": "first"}), 400) == "M_BAD_JSON"
    assert errcode(await get(harness, alice, f"/user/{alice.user_id}/rooms/nonsense/tags"), 400) \
        == "M_INVALID_PARAM"


async def test_push_rules_crud(harness: Harness) -> None:
    alice = await harness.register("alice")
    before_any_change = await get(harness, alice, f"/user/{alice.user_id}/account_data/m.push_rules")
    assert before_any_change.status_code == 200
    assert before_any_change.json()["global"]["override"][0]["rule_id"] == ".m.rule.master"
    everything = (await get(harness, alice, "/pushrules/")).json()
    assert set(everything["global"]) == {"override", "content", "room", "sender", "underride"}
    assert everything["global"]["override"][0]["rule_id"] == ".m.rule.master"
    assert (await get(harness, alice, "/pushrules/global/")).json() == everything["global"]
    mention = (await get(harness, alice, "/pushrules/global/override/.m.rule.is_user_mention")).json()
    assert mention["conditions"][0]["value"] == alice.user_id
    assert errcode(await get(harness, alice, "/pushrules/global/override/nothing"), 404) == "M_NOT_FOUND"

    assert (await put(harness, alice, "/pushrules/global/content/cake", {"pattern": "cake*lie",
                                                                        "actions": ["notify"]})).status_code == 200
    assert (await put(harness, alice, "/pushrules/global/content/pie", {"pattern": "pie",
                                                                       "actions": []})).status_code == 200
    placed = await harness.http.put(V3 + "/pushrules/global/content/tart", params={"after": "cake"},
                                    json={"pattern": "tart", "actions": []}, headers=alice.headers)
    assert placed.status_code == 200, placed.text
    content = (await get(harness, alice, "/pushrules/global/")).json()["content"]
    assert [r["rule_id"] for r in content] == ["pie", "cake", "tart"]
    assert (await get(harness, alice, "/pushrules/global/content/cake")).json() == {
        "rule_id": "cake", "default": False, "enabled": True, "pattern": "cake*lie", "actions": ["notify"]}

    enabled = "/pushrules/global/content/cake/enabled"
    assert (await get(harness, alice, enabled)).json() == {"enabled": True}
    assert (await put(harness, alice, enabled, {"enabled": False})).status_code == 200
    assert (await get(harness, alice, enabled)).json() == {"enabled": False}
    actions = "/pushrules/global/underride/.m.rule.message/actions"
    assert (await put(harness, alice, actions, {"actions": ["notify", {"set_tweak": "sound", "value": "x"}]}
                      )).status_code == 200
    assert (await get(harness, alice, actions)).json() == {"actions": ["notify", {"set_tweak": "sound",
                                                                                  "value": "x"}]}
    assert (await put(harness, alice, "/pushrules/global/override/.m.rule.master/enabled",
                      {"enabled": True})).status_code == 200
    # The stored rules are the m.push_rules account data.
    stored = await get(harness, alice, f"/user/{alice.user_id}/account_data/m.push_rules")
    assert stored.json()["global"]["override"][0] == {
        "rule_id": ".m.rule.master", "default": True, "enabled": True, "conditions": [], "actions": []}

    removed = await harness.http.delete(V3 + "/pushrules/global/content/pie", headers=alice.headers)
    assert removed.status_code == 200
    assert errcode(await get(harness, alice, "/pushrules/global/content/pie"), 404) == "M_NOT_FOUND"
    removed = await harness.http.delete(V3 + "/pushrules/global/content/pie", headers=alice.headers)
    assert errcode(removed, 404) == "M_NOT_FOUND"
    # Another user's rules are their own.
    bob = await harness.register("bob")
    assert errcode(await get(harness, bob, "/pushrules/global/content/cake"), 404) == "M_NOT_FOUND"


async def test_push_rule_errors(harness: Harness) -> None:
    alice = await harness.register("alice")
    assert errcode(await put(harness, alice, "/pushrules/global/override/.m.rule.mine", {"actions": []}),
                   400) == "M_UNKNOWN"
    # A missing field is M_MISSING_PARAM (issue 3), where Synapse says M_UNKNOWN.
    assert errcode(await put(harness, alice, "/pushrules/global/content/nopattern", {"actions": []}),
                   400) == "M_MISSING_PARAM"
    assert errcode(await put(harness, alice, "/pushrules/global/override/noactions", {}), 400) == "M_MISSING_PARAM"
    assert errcode(await put(harness, alice, "/pushrules/global/override/x", {"actions": "notify"}),
                   400) == "M_UNKNOWN"
    placed = await harness.http.put(V3 + "/pushrules/global/override/x", params={"before": "missing"},
                                    json={"actions": []}, headers=alice.headers)
    assert errcode(placed, 404) == "M_NOT_FOUND"
    placed = await harness.http.put(V3 + "/pushrules/global/override/x", params={"before": ".m.rule.master"},
                                    json={"actions": []}, headers=alice.headers)
    assert errcode(placed, 400) == "M_UNKNOWN"
    assert errcode(await put(harness, alice, "/pushrules/global/nonsense/x", {"actions": []}), 400) \
        == "M_INVALID_PARAM"
    assert errcode(await put(harness, alice, "/pushrules/device/override/x", {"actions": []}), 400) \
        == "M_INVALID_PARAM"
    assert errcode(await put(harness, alice, "/pushrules/global/override/.m.rule.master/enabled",
                             {"enabled": "yes"}), 400) == "M_BAD_JSON"
    assert errcode(await put(harness, alice, "/pushrules/global/override/missing/enabled",
                             {"enabled": True}), 404) == "M_NOT_FOUND"
    assert errcode(await put(harness, alice, "/pushrules/global/override/.m.rule.master/actions",
                             {"actions": [3]}), 400) == "M_UNKNOWN"
    removed = await harness.http.delete(V3 + "/pushrules/global/override/.m.rule.master", headers=alice.headers)
    assert errcode(removed, 400) == "M_UNKNOWN"
    bad = await harness.http.put(V3 + "/pushrules/global/override/x", content=b"nope", headers=alice.headers)
    assert errcode(bad, 400) == "M_NOT_JSON"


async def test_pushers(harness: Harness) -> None:
    alice = await harness.register("alice")
    pusher = {"pushkey": "abc", "kind": "http", "app_id": "org.example.app", "app_display_name": "App",
              "device_display_name": "Phone", "lang": "en", "data": {"url": "https://push.example/notify"}}
    assert (await get(harness, alice, "/pushers")).json() == {"pushers": []}
    response = await harness.http.post(V3 + "/pushers/set", json=pusher, headers=alice.headers)
    assert response.status_code == 200, response.text
    assert (await get(harness, alice, "/pushers")).json() == {"pushers": [pusher]}
    for missing in ("app_id", "pushkey", "kind", "data", "lang"):
        body = {k: v for k, v in pusher.items() if k != missing}
        response = await harness.http.post(V3 + "/pushers/set", json=body, headers=alice.headers)
        assert errcode(response, 400) == "M_MISSING_PARAM", missing
    response = await harness.http.post(V3 + "/pushers/set", json=pusher | {"data": {}}, headers=alice.headers)
    assert errcode(response, 400) == "M_INVALID_PARAM"
    response = await harness.http.post(V3 + "/pushers/set", json=pusher | {"app_id": "x" * 65},
                                       headers=alice.headers)
    assert errcode(response, 400) == "M_INVALID_PARAM"
    response = await harness.http.post(V3 + "/pushers/set", json={"pushkey": "abc", "app_id": "org.example.app",
                                                                  "kind": None}, headers=alice.headers)
    assert response.status_code == 200, response.text
    assert (await get(harness, alice, "/pushers")).json() == {"pushers": []}
