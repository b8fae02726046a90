"""Real end-to-end encryption with matrix-nio (its e2e extra: vodozemac, in
a per-test store): two users in an encrypted room send messages the other
decrypts, Olm-sharing the Megolm session over /keys/query, /keys/claim and
/sendToDevice; a second device of one of them, logged in afterwards,
decrypts what is sent after. The single process."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import nio
import pytest

from tests.e2e.harness import RunningHomeserver

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"
# nio 0.26 assumes room IDs with a server part: an older room version has them.
ROOM_VERSION = "11"


async def _client(base_url: str, user: str, store: Path, device_name: str) -> nio.AsyncClient:
    await asyncio.to_thread(store.mkdir, parents=True, exist_ok=True)
    config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
    client = nio.AsyncClient(base_url, user, store_path=str(store), config=config)
    logged_in = await client.login(PASSWORD, device_name=device_name)
    assert isinstance(logged_in, nio.LoginResponse), logged_in
    await _sync(client)
    return client


async def _sync(client: nio.AsyncClient) -> nio.SyncResponse:
    response = await client.sync(timeout=1000, full_state=client.next_batch is None)
    assert isinstance(response, nio.SyncResponse), response
    # What nio's sync_forever would do between syncs.
    if client.should_upload_keys:
        assert isinstance(await client.keys_upload(), nio.KeysUploadResponse)
    if client.should_query_keys:
        assert isinstance(await client.keys_query(), nio.KeysQueryResponse)
    return response


async def _send(client: nio.AsyncClient, room_id: str, text: str) -> str:
    await _sync(client)
    sent = await client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": text},
                                  ignore_unverified_devices=True)
    assert isinstance(sent, nio.RoomSendResponse), sent
    return str(sent.event_id)


async def _decrypted(client: nio.AsyncClient, room_id: str, event_id: str) -> str:
    """Syncs until the event arrives decrypted; answers its body."""
    for _ in range(40):
        response = await _sync(client)
        room = response.rooms.join.get(room_id)
        for event in room.timeline.events if room else []:
            if event.event_id != event_id:
                continue
            assert isinstance(event, nio.RoomMessageText), f"{client.user_id} could not decrypt: {event}"
            assert event.decrypted
            return str(event.body)
    raise AssertionError(f"{client.user_id} never received {event_id}")


async def test_nio_users_exchange_encrypted_messages(monolith: RunningHomeserver, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:6]
    names = [f"nio_alice_{run}", f"nio_bob_{run}"]
    for name in names:
        registering = nio.AsyncClient(monolith.base_url, name)
        assert isinstance(await registering.register(name, PASSWORD), nio.RegisterResponse)
        await registering.close()
    alice = await _client(monolith.base_url, names[0], tmp_path / "alice", "alice laptop")
    bob = await _client(monolith.base_url, names[1], tmp_path / "bob", "bob phone")
    clients = [alice, bob]
    try:
        created = await alice.room_create(invite=[bob.user_id], room_version=ROOM_VERSION, initial_state=[
            {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
        assert isinstance(created, nio.RoomCreateResponse), created
        room_id = created.room_id
        for _ in range(20):
            await _sync(bob)
            if room_id in bob.invited_rooms:
                break
        assert isinstance(await bob.join(room_id), nio.JoinResponse)
        for _ in range(20):
            await _sync(alice)
            room = alice.rooms.get(room_id)
            if room is not None and room.encrypted and bob.user_id in room.users:
                break

        first = await _send(alice, room_id, "hello bob, from nio")
        assert await _decrypted(bob, room_id, first) == "hello bob, from nio"
        reply = await _send(bob, room_id, "hello alice, from nio")
        assert await _decrypted(alice, room_id, reply) == "hello alice, from nio"

        # Bob's second device: Alice learns of it through device_lists.changed.
        bob2 = await _client(monolith.base_url, names[1], tmp_path / "bob2", "bob tablet")
        clients.append(bob2)
        for _ in range(20):
            await _sync(alice)
            if any(d.id == bob2.device_id for d in alice.device_store.active_user_devices(bob.user_id)):
                break
            await asyncio.sleep(0.2)
        later = await _send(alice, room_id, "for both of bob's devices")
        assert await _decrypted(bob2, room_id, later) == "for both of bob's devices"
        assert await _decrypted(bob, room_id, later) == "for both of bob's devices"
    finally:
        for client in clients:
            await client.close()
