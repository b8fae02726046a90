"""Alembic environment of the user API (version table alembic_version_userapi)."""

from common.storage import run_alembic_env

run_alembic_env("userapi")
