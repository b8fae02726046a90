"""Alembic environment of one component's database (see migrations/README.md).

Everything lives in common.storage.run_alembic_env; the name picks the version
table (alembic_version_<component>) and must be this directory's name.
"""

from common.storage import run_alembic_env

run_alembic_env("mediaapi")
