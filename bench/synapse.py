"""Runs Synapse (matrix-synapse from PyPI, in its own virtualenv) on loopback
so a benchmark can put the same workload on it and on Myelin in one run.

Settings follow shared/INTEROP-NOTES.md: open registration without
verification, rate limits raised out of the way, SQLite (or PostgreSQL when
given a database URL), plain HTTP for clients.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import yaml

WORK = Path(__file__).resolve().parent / ".work"
VENV = WORK / "synapse-venv"

_UNLIMITED = {"per_second": 100000, "burst_count": 100000}


def ensure_synapse_installed() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    # psycopg2 comes with the postgres extra: the benchmarks also run Synapse on PostgreSQL.
    probe = subprocess.run([str(python), "-c", "import synapse, psycopg2"], capture_output=True)
    if probe.returncode != 0:
        print("installing matrix-synapse into bench/.work/synapse-venv ...", file=sys.stderr)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "matrix-synapse[postgres]"], check=True)
    return python


@dataclass
class RunningSynapse:
    base_url: str
    server_name: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def synapse_version() -> str:
    python = ensure_synapse_installed()
    probe = subprocess.run([str(python), "-c", "import synapse; print(synapse.__version__)"],
                           capture_output=True, text=True, check=True)
    # Synapse appends the state of the git checkout it finds around its
    # package, here Myelin's (the virtualenv lives in bench/.work): drop it.
    return probe.stdout.split()[0]


def _database_section(workdir: Path, postgres_url: str | None) -> dict[str, object]:
    if postgres_url is None:
        return {"name": "sqlite3", "args": {"database": str(workdir / "homeserver.db")}}
    url = urlsplit(postgres_url)
    return {"name": "psycopg2", "args": {
        "user": url.username or "postgres", "password": url.password or "", "host": url.hostname,
        "port": url.port or 5432, "database": url.path.lstrip("/"), "cp_min": 5, "cp_max": 10}}


def _federation_settings(workdir: Path, federation_port: int) -> dict[str, object]:
    """A TLS federation listener on the port of the server name (a
    self-signed pair), for peers on loopback (shared/INTEROP-NOTES.md)."""
    from homeserver.tls import ensure_self_signed_certificate

    cert, key = ensure_self_signed_certificate(workdir, "localhost")
    return {
        "listener": {"port": federation_port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": True,
                     "resources": [{"names": ["federation"], "compress": False}]},
        "tls_certificate_path": str(cert),
        "tls_private_key_path": str(key),
        "federation_verify_certificates": False,
        "ip_range_blacklist": [],
        "ip_range_whitelist": ["127.0.0.1"],
    }


def start_synapse(workdir: Path, port: int, *, postgres_url: str | None = None,
                  bcrypt_rounds: int = 4, federation_port: int | None = None) -> RunningSynapse:
    """Synapse on 127.0.0.1:``port`` (clients, plain HTTP), on SQLite in
    ``workdir``, or on PostgreSQL when ``postgres_url`` names an empty
    database (Synapse wants it in the C locale, as the test cluster is).
    With ``federation_port`` its name is localhost:<that port>, where it
    serves federation over TLS."""
    python = ensure_synapse_installed()
    workdir.mkdir(parents=True, exist_ok=True)
    server_name = f"localhost:{federation_port or port}"
    config = workdir / "homeserver.yaml"
    subprocess.run(
        [str(python), "-m", "synapse.app.homeserver", "--server-name", server_name,
         "--config-path", str(config), "--generate-config", "--report-stats=no",
         "--data-directory", str(workdir)],
        check=True, capture_output=True, cwd=workdir,
    )
    overrides = {
        "listeners": [{"port": port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
                       "x_forwarded": False, "resources": [{"names": ["client"], "compress": False}]}],
        "database": _database_section(workdir, postgres_url),
        "enable_registration": True,
        "enable_registration_without_verification": True,
        "bcrypt_rounds": bcrypt_rounds,
        "trusted_key_servers": [],
        "report_stats": False,
        "presence": {"enabled": False},
        **{name: _UNLIMITED for name in (
            "rc_message", "rc_registration", "rc_login", "rc_joins", "rc_joins_per_room", "rc_invites",
            "rc_room_creation", "rc_presence", "rc_admin_redaction", "rc_3pid_validation",
            "rc_third_party_invite", "rc_federation", "rc_key_requests", "rc_media_create",
            "rc_delayed_event_mgmt", "rc_reports")},
    }
    # Sections with nested shapes take the nested form.
    overrides["rc_login"] = {"address": _UNLIMITED, "account": _UNLIMITED, "failed_attempts": _UNLIMITED}
    overrides["rc_joins"] = {"local": _UNLIMITED, "remote": _UNLIMITED}
    overrides["rc_invites"] = {"per_room": _UNLIMITED, "per_user": _UNLIMITED, "per_issuer": _UNLIMITED}
    overrides["rc_federation"] = {"window_size": 1000, "sleep_limit": 100000, "sleep_delay": 1,
                                  "reject_limit": 100000, "concurrent": 100000}
    if federation_port is not None:
        federation = _federation_settings(workdir, federation_port)
        listeners: list[object] = overrides["listeners"]  # type: ignore[assignment]
        listeners.append(federation.pop("listener"))
        overrides.update(federation)
    override_path = workdir / "overrides.yaml"
    override_path.write_text(yaml.safe_dump(overrides))
    log = (workdir / "synapse.log").open("ab")
    process = subprocess.Popen(
        [str(python), "-m", "synapse.app.homeserver", "-c", str(config), "-c", str(override_path)],
        cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"synapse exited; see {workdir / 'synapse.log'}")
        try:
            if httpx.get(base_url + "/_matrix/client/versions", timeout=2).status_code == 200:
                return RunningSynapse(base_url=base_url, server_name=server_name, process=process)
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError("synapse did not start in 120 s")
