"""Alembic environment of the client API (version table alembic_version_clientapi)."""

from common.storage import run_alembic_env

run_alembic_env("clientapi")
