"""Every kind of process freezes what its start-up built once it serves
(homeserver/startup_gc.py): the single process and each split personality
(issue 6: full collections walked all start-up objects, 1-1.8 ms per sent
event)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

import homeserver.monolith
import homeserver.personalities
from common.config import ComponentAddress, Config
from homeserver.startup_gc import freeze_startup_objects
from matrixlib.signing import generate_signing_key, write_signing_key_file


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def accepts(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Cycle:
    me: object = None


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Whatever a test freezes goes back to the collector afterwards."""
    try:
        yield
    finally:
        gc.unfreeze()


def test_the_helper_collects_then_freezes(unfrozen: None) -> None:
    gc.unfreeze()
    garbage = Cycle()
    garbage.me = garbage  # only a collection frees it
    gone = weakref.ref(garbage)
    del garbage
    freeze_startup_objects()
    assert gc.get_freeze_count() > 0
    assert gone() is None  # collected before the freeze, not frozen with the rest


def config_for(tmp_path: Path, **components: ComponentAddress) -> Config:
    signing_key_path = tmp_path / "signing.key"
    write_signing_key_file(signing_key_path, generate_signing_key("a1"))
    return Config(server_name="test", data_dir=tmp_path, signing_key_path=signing_key_path,
                  client_listen=f"127.0.0.1:{free_port()}", components=components)


async def test_a_personality_freezes_once_it_serves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    config = config_for(tmp_path, mediaapi=ComponentAddress(http=f"127.0.0.1:{port}"),
                        userapi=ComponentAddress(grpc=f"127.0.0.1:{free_port()}"))
    frozen = asyncio.Event()
    serving_when_frozen: list[bool] = []

    def spy() -> None:
        serving_when_frozen.append(accepts(port))
        frozen.set()

    monkeypatch.setattr(homeserver.personalities, "freeze_startup_objects", spy)
    task = asyncio.create_task(homeserver.personalities.run_personality(config, "mediaapi"))
    try:
        await asyncio.wait_for(frozen.wait(), 30)
        await asyncio.sleep(0.05)
        assert serving_when_frozen == [True]  # once, after start-up
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_the_single_process_freezes_once_it_serves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = config_for(tmp_path)
    port = int(config.client_listen.rpartition(":")[2])
    serving_when_frozen: list[bool] = []
    monkeypatch.setattr(homeserver.monolith, "freeze_startup_objects",
                        lambda: serving_when_frozen.append(accepts(port)))
    started = asyncio.Event()
    task = asyncio.create_task(homeserver.monolith.run_monolith(config, started=started))
    try:
        await asyncio.wait_for(started.wait(), 60)
        assert serving_when_frozen == [True]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
