"""Myelin and Synapse (matrix-synapse from PyPI) federating on loopback:
every interop scenario (tests/e2e/federation/scenarios.py), with the room or
data on Myelin and the user reaching it from Synapse, then the other way
round. Synapse's own default is a v12 room; v10 is covered too."""

from __future__ import annotations

import pytest

from tests.e2e.federation import scenarios
from tests.e2e.federation.harness import Peer

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["myelin_home", "synapse_home"])
def home_away(request: pytest.FixtureRequest, myelin_and_synapse: tuple[Peer, Peer]) -> tuple[Peer, Peer]:
    """(home, away): the server holding the room or data, the one reaching it."""
    myelin, synapse = myelin_and_synapse
    return (myelin, synapse) if request.param == "myelin_home" else (synapse, myelin)


@pytest.mark.parametrize("room_version", ["12", "10"])
async def test_invite_and_join(home_away: tuple[Peer, Peer], room_version: str) -> None:
    await scenarios.invite_and_join(*home_away, room_version)


@pytest.mark.parametrize("room_version", ["12", "10"])
async def test_messages_in_order(home_away: tuple[Peer, Peer], room_version: str) -> None:
    await scenarios.messages_in_order(*home_away, room_version)


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
    await scenarios.backfill_history(*home_away, "10")


async def test_remote_media_download(home_away: tuple[Peer, Peer]) -> None:
    await scenarios.remote_media(*home_away)


# -- beyond the list ------------------------------------------------------------


async def test_burst_of_120_arrives_whole(home_away: tuple[Peer, Peer]) -> None:
    await scenarios.large_concurrent_burst(*home_away)


async def test_concurrent_renames_converge(home_away: tuple[Peer, Peer]) -> None:
    await scenarios.concurrent_state_converges(*home_away)


async def test_redaction_and_ban_cross(home_away: tuple[Peer, Peer]) -> None:
    await scenarios.redaction_crosses(*home_away)
    await scenarios.ban_crosses(*home_away)


async def test_device_list_update_reaches_the_other_server(home_away: tuple[Peer, Peer]) -> None:
    await scenarios.device_list_update(*home_away)


async def test_rejected_invite_reaches_the_inviter(home_away: tuple[Peer, Peer]) -> None:
    await scenarios.reject_invite(*home_away)


async def test_public_room_directory_and_remote_thumbnail(home_away: tuple[Peer, Peer]) -> None:
    await scenarios.public_room_directory(*home_away)
    await scenarios.remote_thumbnail(*home_away)


async def test_knock_restricted_join_upgrade(home_away: tuple[Peer, Peer]) -> None:
    await scenarios.knock_accepted(*home_away)
    await scenarios.restricted_join(*home_away)
    await scenarios.upgrade_followed(*home_away)


async def test_thread_reply_and_edit_relations(home_away: tuple[Peer, Peer]) -> None:
    await scenarios.edits_and_threads(*home_away)


async def test_presence_reaches_the_other_server(home_away: tuple[Peer, Peer]) -> None:
    await scenarios.presence_crosses(*home_away)
