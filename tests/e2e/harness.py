"""Starts real Myelin processes for end-to-end tests and benchmarks.

``start_monolith`` runs the single process (SQLite, embedded log);
``start_split`` runs every component in its own process on PostgreSQL and
Kafka (Tansu) with the router in front, so tests use one base URL either
way. Each process logs to a file in the work directory; when a start fails,
the error carries the log's tail.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
SPLIT_ORDER = ("roomserver", "userapi", "clientapi", "syncapi", "federationapi", "mediaapi", "router")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_range(count: int) -> int:
    """A base port such that base .. base+count-1 are all free."""
    for _ in range(200):
        base = random.randint(20000, 60000 - count)
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                sockets.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free port range")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "gen"), env.get("PYTHONPATH", "")])
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def myelin_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "homeserver.cli", *args]


@dataclass
class RunningHomeserver:
    base_url: str
    server_name: str
    workdir: Path
    config_path: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def log_tail(self, name: str, lines: int = 60) -> str:
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def start(self, name: str, *args: str) -> None:
        log = (self.workdir / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            myelin_command("--config", str(self.config_path), *args),
            cwd=ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT,
        )

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes[name]
        process.send_signal(sig)
        process.wait(timeout=30)

    def wait_ready(self, name: str, port: int, *, http: bool, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        process = self.processes[name]
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = self.log_tail(name)
                if "Address already in use" in tail:
                    raise PortTaken(f"{name}: {tail.splitlines()[-1]}")
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail}")
            try:
                if http:
                    r = httpx.get(f"http://127.0.0.1:{port}/_matrix/client/versions", timeout=2)
                    if r.status_code < 500:
                        return
                else:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        return
            except (OSError, httpx.HTTPError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{name} was not ready after {timeout}s:\n{self.log_tail(name)}")

    def stop(self) -> None:
        for name in reversed(list(self.processes)):
            process = self.processes[name]
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def generate_config(workdir: Path, *extra: str, client_port: int) -> Path:
    config_path = workdir / "myelin.yaml"
    subprocess.run(
        myelin_command("generate-config", "--server-name", f"localhost:{client_port}",
                       "--data-dir", str(workdir / "data"), "-o", str(config_path),
                       "--client-port", str(client_port), "--open-registration", "--no-rate-limits",
                       *extra),
        cwd=ROOT, env=_env(), check=True, capture_output=True,
    )
    return config_path


class PortTaken(RuntimeError):
    """A port picked as free was taken by someone else before we bound it."""


def _with_fresh_ports(start: Callable[[Path], RunningHomeserver], workdir: Path) -> RunningHomeserver:
    # Ports are picked free and bound moments later by another process; on
    # a busy machine something else may take one in between, so try again
    # with new ports in a new directory.
    for attempt in range(3):
        try:
            return start(workdir if attempt == 0 else workdir.with_name(f"{workdir.name}-{attempt}"))
        except PortTaken:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def start_monolith(workdir: Path, *extra_config: str) -> RunningHomeserver:
    return _with_fresh_ports(lambda wd: _start_monolith(wd, *extra_config), workdir)


def start_split(workdir: Path, *, postgres_url: str, kafka_bootstrap: str) -> RunningHomeserver:
    return _with_fresh_ports(
        lambda wd: _start_split(wd, postgres_url=postgres_url, kafka_bootstrap=kafka_bootstrap), workdir)


def _start_monolith(workdir: Path, *extra_config: str) -> RunningHomeserver:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config_path = generate_config(workdir, *extra_config, client_port=port)
    hs = RunningHomeserver(base_url=f"http://127.0.0.1:{port}", server_name=f"localhost:{port}",
                           workdir=workdir, config_path=config_path, ports={"monolith": port})
    hs.start("monolith")
    try:
        hs.wait_ready("monolith", port, http=True)
    except BaseException:
        hs.stop()
        raise
    return hs


def _start_split(workdir: Path, *, postgres_url: str, kafka_bootstrap: str) -> RunningHomeserver:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    # base+5: the federation API's gRPC port; base+6: the media API.
    base = free_port_range(7)
    config_path = generate_config(workdir, "--postgres", postgres_url, "--kafka", kafka_bootstrap,
                                  "--split-base-port", str(base),
                                  "--kafka-session-timeout-ms", "1000", client_port=port)
    ports = {"roomserver": base, "userapi": base + 1, "clientapi": base + 2, "syncapi": base + 3,
             "federationapi": base + 4, "mediaapi": base + 6, "router": port}
    hs = RunningHomeserver(base_url=f"http://127.0.0.1:{port}", server_name=f"localhost:{port}",
                           workdir=workdir, config_path=config_path, ports=ports)
    try:
        for name in SPLIT_ORDER:
            hs.start(name, name)
            hs.wait_ready(name, ports[name], http=name not in ("roomserver", "userapi"))
    except BaseException:
        hs.stop()
        raise
    return hs


def restart_component(hs: RunningHomeserver, name: str) -> None:
    hs.start(name, name)
    hs.wait_ready(name, hs.ports[name], http=name not in ("roomserver", "userapi"))
