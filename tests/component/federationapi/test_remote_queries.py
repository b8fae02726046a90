"""The remote lookups' handling of what other servers answer: the GET
fallback of /publicRooms for servers without the POST form (with the filter
applied here), and answers of the wrong shape or errors turned into the
client-server API's errors, through both bindings of the federation API
(in process, gRPC). A fake client stands in for the network (the real
exchange is tests/e2e/test_remote_lookups.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from myelin.federationapi.v1 import federationapi_pb2 as pb

from common import errors
from common.config import Config
from federationapi.api import FederationInternalAPI
from federationapi.client import FederationClient, FederationError, HttpResponseError
from federationapi.grpc.client import GrpcFederationAPIClient
from federationapi.grpc.server import serve_grpc
from federationapi.internal.api import FederationInternalAPIImpl
from federationapi.internal.context import FederationContext
from tests.component.federationapi.conftest import OUR_KEY, OUR_NAME


@dataclass
class FakeClient:
    answers: dict[tuple[str, str], Any]
    calls: list[tuple[str, str, str, Any]] = field(default_factory=list)

    def _answer(self, method: str, destination: str, path: str, payload: Any) -> Any:
        self.calls.append((method, destination, path, payload))
        answer = self.answers.get((method, path))
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def get_json(self, destination: str, path: str, query: dict[str, Any] | None = None) -> Any:
        return self._answer("GET", destination, path, query)

    async def post_json(self, destination: str, path: str, content: Any, query: Any = None) -> Any:
        return self._answer("POST", destination, path, content)


def context_with(client: FakeClient) -> FederationContext:
    return FederationContext(config=Config(server_name=OUR_NAME, data_dir=Path("."), signing_key_path=Path("k")), signing_key=OUR_KEY,
                             client=cast(FederationClient, client), keyring=cast(Any, None),
                             database=cast(Any, None), roomserver=cast(Any, None))


Binding = Callable[[FakeClient], Awaitable[FederationInternalAPI]]


@pytest.fixture(params=["inprocess", "grpc"])
async def binding(request: pytest.FixtureRequest) -> AsyncIterator[Binding]:
    """Makes the federation API over a fake client, in the binding under test."""
    servers: list[grpc.aio.Server] = []
    channels: list[grpc.aio.Channel] = []

    async def make(client: FakeClient) -> FederationInternalAPI:
        impl = FederationInternalAPIImpl(context_with(client))
        if request.param == "inprocess":
            return impl
        server, port = await serve_grpc(impl, "127.0.0.1:0")
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        servers.append(server)
        channels.append(channel)
        return GrpcFederationAPIClient(channel)

    yield make
    for channel in channels:
        await channel.close()
    for server in servers:
        await server.stop(None)


ROOMS = [{"room_id": "!a:other", "name": "Gardening", "num_joined_members": 3, "world_readable": False,
          "guest_can_join": False},
         {"room_id": "!b:other", "name": "Cooking", "num_joined_members": 2, "world_readable": False,
          "guest_can_join": False},
         "not a room"]
PATH = "/_matrix/federation/v1/publicRooms"


async def test_public_rooms_falls_back_to_get_and_filters_here(binding: Binding) -> None:
    client = FakeClient({("POST", PATH): HttpResponseError(404, b'{"errcode":"M_UNRECOGNIZED"}', "other"),
                         ("GET", PATH): {"chunk": ROOMS, "next_batch": "n1", "total_room_count_estimate": 9}})
    answer = await (await binding(client)).query_public_rooms(pb.QueryPublicRoomsRequest(
        server_name="other", request_json=json.dumps(
            {"limit": 5, "since": "s0", "filter": {"generic_search_term": "garden"}}).encode()))
    body = json.loads(answer.response_json)
    assert [c["room_id"] for c in body["chunk"]] == ["!a:other"]
    assert body["next_batch"] == "n1" and body["total_room_count_estimate"] == 9
    assert [c[0] for c in client.calls] == ["POST", "GET"]
    assert client.calls[1][3] == {"limit": "5", "since": "s0"}


async def test_public_rooms_post_answer_is_passed_on_without_refiltering(binding: Binding) -> None:
    client = FakeClient({("POST", PATH): {"chunk": ROOMS}})
    answer = await (await binding(client)).query_public_rooms(pb.QueryPublicRoomsRequest(
        server_name="other", request_json=json.dumps({"filter": {"generic_search_term": "garden"}}).encode()))
    # The remote filtered (or chose not to): only entries that are not rooms go.
    assert [c["room_id"] for c in json.loads(answer.response_json)["chunk"]] == ["!a:other", "!b:other"]
    assert [c[0] for c in client.calls] == ["POST"]


@pytest.mark.parametrize("failure", [HttpResponseError(500, b"", "other"), FederationError("unreachable")])
async def test_public_rooms_failure_is_502(binding: Binding, failure: Exception) -> None:
    client = FakeClient({("POST", PATH): failure})
    with pytest.raises(errors.MatrixError) as caught:
        await (await binding(client)).query_public_rooms(pb.QueryPublicRoomsRequest(server_name="other"))
    assert caught.value.status == 502


async def test_profile_keeps_only_profile_strings_and_errors_are_404(binding: Binding) -> None:
    path = "/_matrix/federation/v1/query/profile"
    client = FakeClient({("GET", path): {"displayname": "Oz", "avatar_url": 7, "extra": "x"}})
    answer = await (await binding(client)).query_profile(pb.QueryProfileRequest(user_id="@oz:other"))
    assert json.loads(answer.profile_json) == {"displayname": "Oz"}
    assert client.calls[0][1:] == ("other", path, {"user_id": "@oz:other"})
    for failure in (HttpResponseError(404, b"{}", "other"), FederationError("down"), ["not", "a", "dict"]):
        client = FakeClient({("GET", path): failure})
        with pytest.raises(errors.NotFound):
            await (await binding(client)).query_profile(pb.QueryProfileRequest(user_id="@oz:other"))
    with pytest.raises(errors.InvalidParam):
        await (await binding(client)).query_profile(pb.QueryProfileRequest(user_id=f"@me:{OUR_NAME}"))


async def test_alias_needs_a_room_id_and_always_lists_the_alias_server(binding: Binding) -> None:
    path = "/_matrix/federation/v1/query/directory"
    client = FakeClient({("GET", path): {"room_id": "!r:third", "servers": ["third", 5]}})
    answer = await (await binding(client)).query_room_alias(pb.QueryRoomAliasRequest(alias="#a:other"))
    assert (answer.room_id, list(answer.servers)) == ("!r:third", ["third", "other"])
    client = FakeClient({("GET", path): {"servers": ["other"]}})
    with pytest.raises(errors.NotFound):
        await (await binding(client)).query_room_alias(pb.QueryRoomAliasRequest(alias="#a:other"))
