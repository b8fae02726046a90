"""Starts a throwaway PostgreSQL cluster for tests, the e2e harness and benchmarks.

``start_postgres()`` works outside pytest and returns a ``PostgresServer`` (``.url``,
``.stop()``). The pytest fixtures built on it are registered for the whole suite in
``tests/conftest.py``:

- ``postgres_url`` (session): ``postgresql://postgres@127.0.0.1:PORT/postgres``, the
  superuser's URL of a cluster that lives for the test session;
- ``fresh_postgres_database`` (per test): the URL of a new, empty database on that cluster,
  dropped after the test.

The server binaries come from Debian's ``postgresql`` package (/usr/lib/postgresql/N/bin;
``scripts/test.sh`` installs it). PostgreSQL refuses to run as root, so as root the cluster
belongs to the ``postgres`` system user, or to a ``myelin-pg`` system user created for the
purpose. The cluster trusts every local connection, listens on 127.0.0.1 only, and runs
with fsync off: it is for tests, and its data is deleted when it stops.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

STARTUP_TIMEOUT = 60.0
SUPERUSER = "postgres"
FALLBACK_SYSTEM_USER = "myelin-pg"


def postgres_bin_dir() -> Path:
    """The newest installed PostgreSQL server's bin directory."""
    candidates = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/postgres")]
    if not candidates:
        raise RuntimeError(
            "no PostgreSQL server in /usr/lib/postgresql/*/bin: install Debian's postgresql "
            "package (scripts/test.sh does)"
        )
    return max(candidates, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _server_user() -> str | None:
    """The system user to run the server as, or None to run it as ourselves (not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", FALLBACK_SYSTEM_USER):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FALLBACK_SYSTEM_USER],
        check=True, capture_output=True,
    )
    return FALLBACK_SYSTEM_USER


def _run_as(user: str | None, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    command = ["runuser", "-u", user, "--", *argv] if user else argv
    return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload, no-any-return]


@dataclass
class PostgresServer:
    """A running throwaway cluster; ``url`` is its superuser's URL (database ``postgres``)."""

    host: str
    port: int
    superuser: str
    root: Path
    bin_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql://{self.superuser}@{self.host}:{self.port}/{name}"

    def _client(self, tool: str, *args: str) -> None:
        subprocess.run(
            [str(self.bin_dir / tool), "-h", self.host, "-p", str(self.port), "-U", self.superuser, *args],
            check=True, capture_output=True, text=True, timeout=60,
        )

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (a fresh random name by default); returns its URL."""
        name = name or f"test_{uuid.uuid4().hex[:12]}"
        self._client("createdb", name)
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        # --force disconnects whatever a test left connected (PostgreSQL 13+).
        self._client("dropdb", "--force", "--if-exists", name)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Immediate shutdown (like ``pg_ctl stop -m immediate``), then delete the cluster."""
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        shutil.rmtree(self.root, ignore_errors=True)


def _wait_until_ready(server: PostgresServer) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"postgres exited with {server.process.returncode}:\n{server.log_text()}")
        ready = subprocess.run(
            [str(server.bin_dir / "pg_isready"), "-q", "-h", server.host, "-p", str(server.port),
             "-U", server.superuser, "-d", "postgres", "-t", "2"],
            check=False, capture_output=True,
        )
        if ready.returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"postgres did not become ready in {STARTUP_TIMEOUT}s:\n{server.log_text()}")


def start_postgres(workdir: Path | None = None) -> PostgresServer:
    """Initialise and start a throwaway cluster on a free 127.0.0.1 port.

    The cluster lives in a new directory under ``workdir`` when the server's user can use it,
    else under the system temporary directory (pytest's own temporary directories are private
    to root). The server is this process's child and gets SIGQUIT if this thread exits, so a
    killed test run leaves no cluster behind: call it from a thread that outlives the cluster.
    """
    bin_dir = postgres_bin_dir()
    user = _server_user()
    parent = _usable_parent(workdir, user)
    _remove_abandoned_clusters(parent or Path(tempfile.gettempdir()))
    root = Path(tempfile.mkdtemp(prefix="myelin-pg-", dir=parent))
    try:
        data_dir, socket_dir = root / "data", root / "sock"
        socket_dir.mkdir()
        log_path = root / "postgres.log"
        log_path.touch()
        if user:
            entry = pwd.getpwnam(user)
            for path in (root, socket_dir, log_path):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        root.chmod(0o755)  # so the test process can read the log
        # Unix socket paths are limited to ~107 bytes; clients here use TCP anyway.
        socket_setting = str(socket_dir) if len(str(socket_dir)) < 90 else ""
        _run_as(user, [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", SUPERUSER, "--auth=trust",
                       "-E", "UTF8", "--no-locale", "--no-sync"], cwd=root)
        for _ in range(3):
            port = free_port()
            server_argv = [
                str(bin_dir / "postgres"), "-D", str(data_dir), "-p", str(port), "-k", socket_setting,
                "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off", "-c", "max_connections=300", "-c", "shared_buffers=32MB",
                "-c", "logging_collector=off",
            ]
            # setpriv execs the server in place (runuser would fork and sit in between), so the
            # parent-death signal reaches the postmaster itself.
            prefix = ["setpriv", "--pdeathsig", "QUIT"]
            if user:
                prefix += [f"--reuid={user}", f"--regid={user}", "--init-groups"]
            log_file = log_path.open("ab")
            try:
                process = subprocess.Popen(
                    [*prefix, "--", *server_argv], stdout=log_file, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, cwd=root,
                )
            finally:
                log_file.close()
            server = PostgresServer(host="127.0.0.1", port=port, superuser=SUPERUSER, root=root,
                                    bin_dir=bin_dir, process=process, log_path=log_path)
            try:
                _wait_until_ready(server)
            except RuntimeError:
                if process.poll() is not None and "already in use" in server.log_text():
                    continue  # someone took the port between our probe and the server's bind
                server.stop()
                raise
            return server
        raise RuntimeError(f"could not find a free port for postgres:\n{log_path.read_text()}")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def _remove_abandoned_clusters(parent: Path, min_age_seconds: float = 600.0) -> None:
    """Delete cluster directories a killed test run left behind (their server is gone)."""
    now = time.time()
    for root in parent.glob("myelin-pg-*"):
        try:
            if now - root.stat().st_mtime < min_age_seconds:
                continue  # possibly still starting up
            pid_file = root / "data" / "postmaster.pid"
            if pid_file.exists():
                pid = int(pid_file.read_text().split("\n", 1)[0])
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 0)
                    continue  # its server is running
            shutil.rmtree(root, ignore_errors=True)
        except (OSError, ValueError):
            continue


def _usable_parent(workdir: Path | None, user: str | None) -> Path | None:
    if workdir is None:
        return None
    workdir.mkdir(parents=True, exist_ok=True)
    if user is None:
        return workdir
    # The server's user must be able to reach its directory through every parent.
    probe = subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(workdir)],
                           check=False, capture_output=True)
    return workdir if probe.returncode == 0 else None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """The superuser URL of the session's throwaway cluster (database ``postgres``)."""
    return postgres_server.url


@pytest.fixture
def fresh_postgres_database(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL (``postgresql://...``) of a new, empty database, dropped after the test."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url.rsplit("/", 1)[1])
