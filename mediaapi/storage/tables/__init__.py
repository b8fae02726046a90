"""The media API's tables: one module each, all on ``METADATA``."""

from sqlalchemy import MetaData

METADATA = MetaData()
