"""The sync API's tables: SQLAlchemy Core ``Table`` objects on one ``MetaData``.

The schema itself is created by the hand-written migrations in
``migrations/syncapi/``; these objects mirror it for building statements
(``tests/component/syncapi`` checks that they match).
"""

from sqlalchemy import MetaData

metadata = MetaData()
