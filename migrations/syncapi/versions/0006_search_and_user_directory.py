"""Full-text search over room events, and the user directory.

Revision ID: syncapi_0006
Revises: syncapi_0005
Create Date: 2026-11-26

Schema changelog (syncapi):
  syncapi_0006: syncapi_search (FTS5 on SQLite; tsvector + GIN on PostgreSQL), filled from the
  events already stored; syncapi_user_directory and syncapi_directory_public_rooms, filled from
  the current state.
"""

from alembic import op

revision = "syncapi_0006"
down_revision = "syncapi_0005"
branch_labels = None
depends_on = None

# (event type, content key, the spec's key name) of the indexed text.
_INDEXED = (("m.room.message", "body", "content.body"), ("m.room.name", "name", "content.name"),
            ("m.room.topic", "topic", "content.topic"))


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute(
            """
            CREATE TABLE syncapi_search (
                stream_pos BIGINT PRIMARY KEY,
                event_id TEXT NOT NULL,
                room_id TEXT NOT NULL,
                key TEXT NOT NULL,
                value TEXT NOT NULL,
                vector TSVECTOR NOT NULL
            )
            """
        )
        op.execute("CREATE INDEX syncapi_search_vector ON syncapi_search USING GIN (vector)")
        op.execute("CREATE INDEX syncapi_search_room ON syncapi_search (room_id, stream_pos)")
        for event_type, field, key in _INDEXED:
            op.execute(
                f"""
                INSERT INTO syncapi_search (stream_pos, event_id, room_id, key, value, vector)
                SELECT stream_pos, event_id, room_id, '{key}', v, to_tsvector('english', v) FROM (
                    SELECT stream_pos, event_id, room_id, (event_json::jsonb -> 'content') ->> '{field}' AS v
                    FROM syncapi_events WHERE type = '{event_type}' AND NOT state_only
                ) AS found WHERE v IS NOT NULL AND v <> ''
                """
            )
    else:
        # The rowid is the event's stream position; only `value` is tokenised.
        op.execute(
            "CREATE VIRTUAL TABLE syncapi_search USING fts5("
            "event_id UNINDEXED, room_id UNINDEXED, key UNINDEXED, value, tokenize = 'unicode61')"
        )
        for event_type, field, key in _INDEXED:
            op.execute(
                f"""
                INSERT INTO syncapi_search (rowid, event_id, room_id, key, value)
                SELECT stream_pos, event_id, room_id, '{key}', json_extract(event_json, '$.content.{field}')
                FROM syncapi_events WHERE type = '{event_type}' AND NOT state_only
                AND json_type(event_json, '$.content.{field}') = 'text'
                AND json_extract(event_json, '$.content.{field}') <> ''
                """
            )
    # The user directory: the latest profile each user joined a room with.
    op.execute(
        """
        CREATE TABLE syncapi_user_directory (
            user_id TEXT PRIMARY KEY,
            display_name TEXT,
            avatar_url TEXT
        )
        """
    )
    # Rooms whose join rule is public now: their members are found by anyone.
    op.execute("CREATE TABLE syncapi_directory_public_rooms (room_id TEXT PRIMARY KEY)")
    # One row per joined user, with the profile of (one of) their join events.
    if postgres:
        name = "(e.event_json::jsonb -> 'content') ->> '{}'"
    else:
        name = "json_extract(e.event_json, '$.content.{}')"
    op.execute(
        "INSERT INTO syncapi_user_directory (user_id, display_name, avatar_url) "
        f"SELECT s.state_key, MAX({name.format('displayname')}), MAX({name.format('avatar_url')}) "
        "FROM syncapi_current_room_state s JOIN syncapi_events e ON e.event_id = s.event_id "
        "WHERE s.type = 'm.room.member' AND s.membership = 'join' GROUP BY s.state_key"
    )
    if postgres:
        op.execute(
            "INSERT INTO syncapi_directory_public_rooms (room_id) SELECT s.room_id "
            "FROM syncapi_current_room_state s JOIN syncapi_events e ON e.event_id = s.event_id "
            "WHERE s.type = 'm.room.join_rules' AND s.state_key = '' "
            "AND (e.event_json::jsonb -> 'content') ->> 'join_rule' = 'public'"
        )
    else:
        op.execute(
            "INSERT INTO syncapi_directory_public_rooms (room_id) SELECT s.room_id "
            "FROM syncapi_current_room_state s JOIN syncapi_events e ON e.event_id = s.event_id "
            "WHERE s.type = 'm.room.join_rules' AND s.state_key = '' "
            "AND json_extract(e.event_json, '$.content.join_rule') = 'public'"
        )


def downgrade() -> None:
    op.execute("DROP TABLE syncapi_directory_public_rooms")
    op.execute("DROP TABLE syncapi_user_directory")
    op.execute("DROP TABLE syncapi_search")
