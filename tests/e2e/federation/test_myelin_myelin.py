"""Two Myelin servers federating on loopback, each with its own TLS
certificate and databases: every interop scenario (tests/e2e/federation/
scenarios.py), with the room or data on the first server and the user
reaching it on the second, then the other way round."""

from __future__ import annotations

import pytest

from tests.e2e.federation import scenarios
from tests.e2e.federation.harness import Peer

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["a_to_b", "b_to_a"])
def home_away(request: pytest.FixtureRequest, myelin_pair: tuple[Peer, Peer]) -> tuple[Peer, Peer]:
    """(home, away): the server holding the room or data, the one reaching it."""
    first, second = myelin_pair
    return (first, second) if request.param == "a_to_b" else (second, first)


@pytest.mark.parametrize("room_version", ["12", "10"])
async def test_invite_and_join(home_away: tuple[Peer, Peer], room_version: str) -> None:
    await scenarios.invite_and_join(*home_away, room_version)


async def test_messages_in_order(home_away: tuple[Peer, Peer]) -> None:
    await scenarios.messages_in_order(*home_away, "12")


async def test_state_changes(home_away: tuple[Peer, Peer]) -> None:
    await scenarios.state_changes(*home_away, "12")


async def test_leave_and_rejoin(home_away: tuple[Peer, Peer]) -> None:
    await scenarios.leave_and_rejoin(*home_away, "10")


async def test_join_public_room_by_alias(home_away: tuple[Peer, Peer]) -> None:
    await scenarios.join_by_alias(*home_away, "12")


async def test_remote_profile(home_away: tuple[Peer, Peer]) -> None:
    await scenarios.remote_profile(*home_away)


async def test_typing_and_receipts(home_away: tuple[Peer, Peer]) -> None:
    await scenarios.typing_and_receipts(*home_away)


async def test_to_device_message(home_away: tuple[Peer, Peer]) -> None:
    await scenarios.to_device_message(*home_away)


async def test_remote_key_query_and_claim(home_away: tuple[Peer, Peer]) -> None:
    await scenarios.remote_key_query(*home_away)


async def test_newcomer_backfills_history(home_away: tuple[Peer, Peer]) -> None:
    await scenarios.backfill_history(*home_away, "12")


async def test_remote_media_download(home_away: tuple[Peer, Peer]) -> None:
    await scenarios.remote_media(*home_away)


# -- beyond the list (one direction: both servers run the same code) -----------


async def test_burst_of_120_arrives_whole(myelin_pair: tuple[Peer, Peer]) -> None:
    await scenarios.large_concurrent_burst(*myelin_pair)


async def test_concurrent_renames_converge(myelin_pair: tuple[Peer, Peer]) -> None:
    await scenarios.concurrent_state_converges(*myelin_pair)


async def test_redaction_and_ban_cross(myelin_pair: tuple[Peer, Peer]) -> None:
    await scenarios.redaction_crosses(*myelin_pair)
    await scenarios.ban_crosses(*myelin_pair)


async def test_device_list_update_reaches_the_other_server(myelin_pair: tuple[Peer, Peer]) -> None:
    await scenarios.device_list_update(*myelin_pair)


async def test_rejected_invite_reaches_the_inviter(myelin_pair: tuple[Peer, Peer]) -> None:
    await scenarios.reject_invite(*myelin_pair)


async def test_public_room_directory_and_remote_thumbnail(myelin_pair: tuple[Peer, Peer]) -> None:
    await scenarios.public_room_directory(*myelin_pair)
    await scenarios.remote_thumbnail(*myelin_pair)


async def test_presence_reaches_the_other_server(myelin_pair: tuple[Peer, Peer]) -> None:
    await scenarios.presence_crosses(*myelin_pair)
