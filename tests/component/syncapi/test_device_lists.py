"""device_lists in /sync and GET /keys/changes, fed by userapi.device_list_update
(local and remote users alike): changes of users who share a room with the
syncing user, and of nobody else; a newcomer to a room is changed; someone
who left the last shared room is left."""

from __future__ import annotations

from typing import Any

from myelin.userapi.v1 import device_list_log_pb2 as dl_pb

from common.topics import USERAPI_DEVICE_LIST_UPDATE
from syncapi.tokens import StreamToken
from tests.builders import TestRoom
from tests.component.syncapi.conftest import Env, wait_until

ALICE = "@alice:test"
CAROL = "@carol:test"
ZOE = "@zoe:remote.example"


async def device_list_update(env: Env, user_id: str, *, local: bool) -> None:
    before = env.syncapi.notifier.stream_position("device_list")
    update = dl_pb.DeviceListUpdate(user_id=user_id, kind=dl_pb.DeviceListUpdate.DEVICE, device_id="D",
                                    origin_local=local)
    await env.log.append(USERAPI_DEVICE_LIST_UPDATE.name, user_id.encode(), update.SerializeToString())
    await wait_until(lambda: env.syncapi.notifier.stream_position("device_list") > before)


def device_lists(body: dict[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = body.get("device_lists", {"changed": [], "left": []})
    return found


async def test_changes_reach_room_mates_only(env: Env) -> None:
    room = TestRoom("12", creator=ALICE)
    await env.send_room(room)
    alice, carol = env.token(ALICE), env.token(CAROL)
    alice_since = (await env.sync(alice))["next_batch"]
    carol_since = (await env.sync(carol))["next_batch"]

    # Zoe (remote) joins: she is new to Alice, whose client must start tracking her.
    await env.send(room.join(ZOE))
    body = await env.sync(alice, since=alice_since)
    assert device_lists(body) == {"changed": [ZOE], "left": []}
    alice_since = body["next_batch"]

    # Zoe's devices change (learnt over federation): Alice hears of it, Carol does not.
    await device_list_update(env, ZOE, local=False)
    body = await env.sync(alice, since=alice_since, timeout=1000)
    assert device_lists(body)["changed"] == [ZOE]
    assert ZOE not in device_lists(await env.sync(carol, since=carol_since))["changed"]
    changes = await env.get("/_matrix/client/v3/keys/changes", alice, **{"from": alice_since,
                                                                        "to": body["next_batch"]})
    assert changes.json() == {"changed": [ZOE], "left": []}
    # Alice's own devices are hers to track too.
    alice_since = body["next_batch"]
    await device_list_update(env, ALICE, local=True)
    body = await env.sync(alice, since=alice_since, timeout=1000)
    assert device_lists(body)["changed"] == [ALICE]
    alice_since = body["next_batch"]

    # Zoe leaves the only room she shared with Alice.
    before_leave = alice_since
    await env.send(room.leave(ZOE))
    body = await env.sync(alice, since=alice_since)
    assert device_lists(body) == {"changed": [], "left": [ZOE]}
    changes = await env.get("/_matrix/client/v3/keys/changes", alice, **{"from": before_leave,
                                                                        "to": body["next_batch"]})
    assert changes.json() == {"changed": [], "left": [ZOE]}
    # Later changes of hers no longer concern Alice.
    await device_list_update(env, ZOE, local=False)
    body = await env.sync(alice, since=body["next_batch"])
    assert ZOE not in device_lists(body)["changed"]
    assert StreamToken.parse(body["next_batch"]).device_list > StreamToken.parse(before_leave).device_list


async def test_keys_changes_needs_both_tokens(env: Env) -> None:
    alice = env.token(ALICE)
    since = (await env.sync(alice))["next_batch"]
    missing = await env.get("/_matrix/client/v3/keys/changes", alice, **{"from": since})
    assert missing.status_code == 400 and missing.json()["errcode"] == "M_MISSING_PARAM"
    bad = await env.get("/_matrix/client/v3/keys/changes", alice, **{"from": "x", "to": since})
    assert bad.status_code == 400 and bad.json()["errcode"] == "M_INVALID_PARAM"
