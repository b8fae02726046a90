"""POST /rooms/{roomId}/forget: only after leaving; a forgotten room leaves
/sync's leave section (include_leave too) until a newer membership."""

from __future__ import annotations

from myelin.roomserver.v1 import roomserver_pb2 as rs_pb

from tests.component.syncapi.conftest import ALICE, BOB, Env, membership_response, shared_room

INCLUDE_LEAVE = '{"room": {"include_leave": true}}'


def answer_memberships(env: Env) -> None:
    """The fake room server answers membership queries from the state it wrote."""
    async def query_membership_for_user(
            req: rs_pb.QueryMembershipForUserRequest) -> rs_pb.QueryMembershipForUserResponse:
        feed = env.feeds.get(req.room_id)
        return membership_response(None if feed is None else feed.state, req.user_id)
    setattr(env.roomserver, "query_membership_for_user", query_membership_for_user)  # noqa: B010


async def test_forget_only_after_leaving_and_hides_the_room(env: Env) -> None:
    room = await shared_room(env, BOB)
    answer_memberships(env)
    token = env.token(BOB)
    headers = {"Authorization": f"Bearer {token}"}
    path = f"/_matrix/client/v3/rooms/{room.room_id}/forget"

    joined = await env.client.post(path, json={}, headers=headers)
    assert joined.status_code == 400 and joined.json()["errcode"] == "M_UNKNOWN"

    since = await env.next_batch(token)
    await env.send(room.leave(BOB))
    assert room.room_id in (await env.sync(token, filter=INCLUDE_LEAVE))["rooms"]["leave"]

    forgotten = await env.client.post(path, json={}, headers=headers)
    assert forgotten.status_code == 200 and forgotten.json() == {}
    assert room.room_id not in (await env.sync(token, filter=INCLUDE_LEAVE))["rooms"]["leave"]
    # An incremental sync over the leave no longer mentions it either.
    assert room.room_id not in (await env.sync(token, since=since))["rooms"]["leave"]

    # Joining and leaving again brings the room back.
    await env.send(room.join(BOB), room.leave(BOB))
    assert room.room_id in (await env.sync(token, filter=INCLUDE_LEAVE))["rooms"]["leave"]


async def test_forget_a_room_never_joined_is_a_no_op(env: Env) -> None:
    room = await shared_room(env)
    answer_memberships(env)
    token = env.token(BOB)
    response = await env.client.post(f"/_matrix/client/v3/rooms/{room.room_id}/forget", json={},
                                     headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert (await env.sync(env.token(ALICE)))["rooms"]["join"].keys() == {room.room_id}
    no_token = await env.client.post(f"/_matrix/client/v3/rooms/{room.room_id}/forget", json={})
    assert no_token.status_code == 401
