"""The federation sender sends on what a remote user did through our
make_join/send_join (and leave, knock) handshake, as the resident must
(server-server API "Joining Rooms"); what reached us over /send it never
sends back out."""

from __future__ import annotations

from tests.component.federationapi.sender_fakes import ALICE, Env, env, room_with

__all__ = ["env"]  # the fixture, imported


async def test_a_join_through_our_handshake_reaches_the_rooms_other_servers(env: Env) -> None:
    first = await env.destination()
    second = await env.destination()
    bob, carol, dave = f"@bob:{first.server_name}", f"@carol:{second.server_name}", f"@dave:{second.server_name}"
    await env.start_sender()
    room = await room_with(env, bob)
    # Carol joined through our send_join: the federation API inputs it without an origin.
    await env.output.write(room.join(carol))
    # Dave's join came from his server over /send: his server sends it itself.
    await env.output.write(room.join(dave), origin=second.server_name)
    await env.output.write(room.message(ALICE, "after"))
    await first.wait_for(lambda: "after" in first.bodies())
    assert [(p["type"], p.get("state_key")) for p in first.pdus()] == [
        ("m.room.member", carol), ("m.room.message", None)]
