"""Schema migrations in a short-lived child process.

Alembic and Mako (its template engine) take ~11 MB of the serving process's
memory for as long as it runs, only to upgrade the schemas once at start. The
``myelin`` command therefore upgrades every database it is about to open in a
child process (``python -m homeserver.migrate``), which reports the revisions
it left, and tells ``common.storage`` so (``note_schema_at_head``): opening a
database then only checks that its version table still holds exactly those
revisions. Anything else (the child was not run, or the table changed since)
takes ``open_database``'s usual path, which upgrades or refuses in process.

A failed migration fails the start: the child's error goes to the server's
stderr and ``migrate_in_child_process`` raises ``MigrationFailed``.

The child reads the database URLs as JSON on stdin (not argv: a PostgreSQL
URL may carry a password) and writes ``{component: [revisions]}`` to stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from common.config import Config
from common.storage import database_url_for, note_schema_at_head

#: The directory holding the ``homeserver`` package, for the child's import path.
SOURCE_ROOT = Path(__file__).resolve().parent.parent

#: Seconds the migrations may take before the start is abandoned.
MIGRATION_TIMEOUT_S = 600.0


class MigrationFailed(RuntimeError):
    """The child process could not bring a schema to head."""


def database_urls(config: Config, components: Iterable[str]) -> dict[str, str]:
    """Each component's database URL, as its ``open_*`` function computes it."""
    return {name: database_url_for(name, postgres_url=config.postgres_url or None, data_dir=config.data_dir)
            for name in components}


def migrate_in_child_process(urls: Mapping[str, str], *, python: str | None = None) -> dict[str, list[str]]:
    """Upgrades each component's database at ``urls`` to head in a child
    process and records the result with ``note_schema_at_head``. Returns the
    revisions per component. Raises ``MigrationFailed`` if the child fails."""
    if not urls:
        return {}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SOURCE_ROOT), env.get("PYTHONPATH", "")) if p)
    try:
        done = subprocess.run(
            [python or sys.executable, "-m", "homeserver.migrate"], input=json.dumps(dict(urls)),
            stdout=subprocess.PIPE, stderr=None, text=True, env=env, timeout=MIGRATION_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        raise MigrationFailed(f"migrations did not finish within {MIGRATION_TIMEOUT_S:.0f} s") from e
    if done.returncode != 0:
        raise MigrationFailed(f"migrating {', '.join(urls)} failed (exit status {done.returncode}; "
                              "the error is above)")
    try:
        revisions = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as e:
        raise MigrationFailed(f"the migration process's answer is not JSON: {done.stdout[-500:]!r}") from e
    if not isinstance(revisions, dict) or set(revisions) != set(urls):
        raise MigrationFailed(f"the migration process answered for {revisions!r}, asked for {sorted(urls)}")
    for component, url in urls.items():
        note_schema_at_head(url, component, revisions[component])
    return {component: list(revisions[component]) for component in urls}


async def migrate_databases(urls: Mapping[str, str]) -> dict[str, list[str]]:
    """In this process: each database at head (``open_database`` migrates), and its revisions."""
    from common.storage import current_revisions, open_database

    revisions: dict[str, list[str]] = {}
    for component, url in urls.items():
        database = await open_database(url, component)
        try:
            revisions[component] = sorted(await current_revisions(database.engine, component))
        finally:
            await database.close()
    return revisions


def main() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    urls = json.loads(sys.stdin.read())
    if not isinstance(urls, dict) or not all(isinstance(v, str) for v in urls.values()):
        raise SystemExit("expected a JSON object of component -> database URL on stdin")
    print(json.dumps(asyncio.run(migrate_databases(urls))), flush=True)


if __name__ == "__main__":
    main()
