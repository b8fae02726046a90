"""The servers a benchmark run compares, started the same way each time.

- ``myelin``: the single process, SQLite files and the embedded log;
- ``myelin-split``: one process per component, PostgreSQL and Kafka (Tansu),
  the router in front;
- ``synapse``: Synapse from PyPI in bench/.work/synapse-venv, SQLite;
- ``synapse-pg``: the same Synapse on PostgreSQL.

Both servers get their rate limits out of the way (Myelin's
``--no-rate-limits``, Synapse's ``rc_*`` limiters) and the same
password-hashing cost: Synapse's ``bcrypt_rounds`` and the scrypt cost of
Myelin's ``password_scrypt_log2_n`` whose hash takes the closest time on this
machine (see ``calibrate_hash_cost``). PostgreSQL and Tansu are started once
per run (tests/harness starters) and shared by the targets that need them;
their own CPU time is not counted in the servers' figures.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.measure import ProcessMonitor
from bench.synapse import ensure_synapse_installed, start_synapse, synapse_version
from tests.e2e import harness
from tests.e2e.harness import ROOT, free_port
from tests.harness.postgres import PostgresServer, start_postgres
from tests.harness.tansu import start_tansu, stop_tansu

TARGETS = ("myelin", "myelin-split", "synapse", "synapse-pg")
# Which Synapse deployment each Myelin deployment is compared with.
REFERENCE = {"myelin": "synapse", "myelin-split": "synapse-pg"}

HASH_PROBE_PASSWORD = "bench-password-123"


@dataclass
class HashCost:
    bcrypt_rounds: int
    bcrypt_ms: float
    scrypt_log2_n: int
    scrypt_ms: float


def calibrate_hash_cost(bcrypt_rounds: int = 4) -> HashCost:
    """The scrypt cost whose hash takes about as long here as a bcrypt hash at
    ``bcrypt_rounds`` (Synapse's tests use 4: under a millisecond)."""
    python = ensure_synapse_installed()
    # The fastest of several rounds: on a busy machine the slower rounds
    # measure the other processes.
    probe = subprocess.run(
        [str(python), "-c",
         "import bcrypt, time\n"
         "rounds = []\n"
         "for _ in range(7):\n"
         "    t = time.perf_counter()\n"
         f"    for _ in range(10): bcrypt.hashpw({HASH_PROBE_PASSWORD!r}.encode(), bcrypt.gensalt({bcrypt_rounds}))\n"
         "    rounds.append((time.perf_counter() - t) / 10 * 1000)\n"
         "print(min(rounds))"],
        capture_output=True, text=True, check=True)
    bcrypt_ms = float(probe.stdout.strip())

    from userapi.internal.passwords import ScryptParams, hash_password

    def scrypt_ms(log2_n: int) -> float:
        rounds = []
        for _ in range(7):
            started = time.perf_counter()
            for _ in range(5):
                hash_password(HASH_PROBE_PASSWORD, ScryptParams(n=2**log2_n))
            rounds.append((time.perf_counter() - started) / 5 * 1000)
        return min(rounds)

    timings = {log2_n: scrypt_ms(log2_n) for log2_n in range(6, 13)}
    best = min(timings, key=lambda n: abs(math.log(timings[n] / bcrypt_ms)))
    return HashCost(bcrypt_rounds, bcrypt_ms, best, timings[best])


@dataclass
class Target:
    name: str
    base_url: str
    server_name: str
    version: str
    monitor: ProcessMonitor
    stop_servers: Callable[[], None]
    workdir: Path
    # Process name -> PID (one entry for a single process).
    pids: dict[str, int] = field(default_factory=dict)
    # Whether it serves federation (TLS on the port of its server name).
    federation: bool = False

    def stop(self) -> None:
        self.monitor.stop()
        self.stop_servers()


def myelin_version() -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True)
    suffix = "+uncommitted" if dirty.stdout.strip() else ""
    return f"0.1.0 ({commit.stdout.strip() or 'unknown'}{suffix})"


class SharedServices:
    """PostgreSQL and Tansu, started on first use and stopped by ``close()``."""

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._postgres: PostgresServer | None = None
        self._tansu: subprocess.Popen[bytes] | None = None
        self._bootstrap = ""

    def postgres(self) -> PostgresServer:
        if self._postgres is None:
            self._postgres = start_postgres(self._workdir)
        return self._postgres

    def kafka_bootstrap(self) -> str:
        if self._tansu is None:
            self._tansu, self._bootstrap = start_tansu(self._workdir / "tansu.log")
        return self._bootstrap

    def postgres_version(self) -> str:
        server = self.postgres()
        out = subprocess.run([str(server.bin_dir / "postgres"), "--version"], capture_output=True, text=True)
        return out.stdout.strip()

    def close(self) -> None:
        if self._tansu is not None:
            stop_tansu(self._tansu)
            self._tansu = None
        if self._postgres is not None:
            self._postgres.stop()
            self._postgres = None


def _set_hash_cost(config_path: Path, scrypt_log2_n: int) -> None:
    data = yaml.safe_load(config_path.read_text())
    data["password_scrypt_log2_n"] = scrypt_log2_n
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))


@contextlib.contextmanager
def _configs_with_hash_cost(cost: HashCost) -> Iterator[None]:
    """While inside, the e2e harness's generated configs carry the benchmark's
    hashing cost. The harness is reused as it is (it knows the split
    deployment's processes and ports as they change); its config generator is
    wrapped for the duration, since its starters take no config overrides."""
    original = harness.generate_config

    def generate(workdir: Path, *extra: str, client_port: int) -> Path:
        path = original(workdir, *extra, client_port=client_port)
        _set_hash_cost(path, cost.scrypt_log2_n)
        return path

    harness.generate_config = generate
    try:
        yield
    finally:
        harness.generate_config = original


def _myelin_target(name: str, hs: harness.RunningHomeserver, workdir: Path) -> Target:
    pids = {process_name: p.pid for process_name, p in hs.processes.items()}
    return Target(name, hs.base_url, hs.server_name, myelin_version(), ProcessMonitor(list(pids.values())),
                  hs.stop, workdir, pids)


def _start_myelin(workdir: Path, cost: HashCost) -> Target:
    federation_port = free_port()
    server_name = f"localhost:{federation_port}"
    with _configs_with_hash_cost(cost):
        hs = harness.start_monolith(workdir, "--server-name", server_name, "--federation-port",
                                    str(federation_port), "--insecure-federation-for-tests")
    # Its name is the federation port's (the harness names it after the client port).
    hs.server_name = server_name
    target = _myelin_target("myelin", hs, workdir)
    target.federation = True
    return target


def _start_myelin_split(workdir: Path, cost: HashCost, shared: SharedServices) -> Target:
    postgres_url = shared.postgres().create_database(f"myelinbench_{uuid.uuid4().hex[:8]}")
    with _configs_with_hash_cost(cost):
        hs = harness.start_split(workdir, postgres_url=postgres_url, kafka_bootstrap=shared.kafka_bootstrap())
    return _myelin_target("myelin-split", hs, workdir)


def _start_synapse(name: str, workdir: Path, cost: HashCost, postgres_url: str | None) -> Target:
    synapse = start_synapse(workdir, free_port(), postgres_url=postgres_url, bcrypt_rounds=cost.bcrypt_rounds,
                            federation_port=free_port())
    pids = {"synapse": synapse.process.pid}
    return Target(name, synapse.base_url, synapse.server_name, synapse_version(),
                  ProcessMonitor(list(pids.values())), synapse.stop, workdir, pids, federation=True)


def start_target(name: str, workdir: Path, cost: HashCost, shared: SharedServices) -> Target:
    if name == "myelin":
        return _start_myelin(workdir, cost)
    if name == "myelin-split":
        return _start_myelin_split(workdir, cost, shared)
    if name == "synapse":
        return _start_synapse(name, workdir, cost, None)
    if name == "synapse-pg":
        # Synapse wants a database in the C locale: the test cluster is initialised with --no-locale.
        url = shared.postgres().create_database(f"synapsebench_{uuid.uuid4().hex[:8]}")
        return _start_synapse(name, workdir, cost, url)
    raise ValueError(f"unknown target {name!r}; known: {', '.join(TARGETS)}")


@contextlib.contextmanager
def running_target(name: str, workdir: Path, cost: HashCost, shared: SharedServices) -> Iterator[Target]:
    target = start_target(name, workdir, cost, shared)
    try:
        yield target
    finally:
        target.stop()
