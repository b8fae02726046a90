"""The media repository: uploaded and cached remote media, and thumbnails.

Revision ID: mediaapi_0001
Revises:
Create Date: 2026-11-26

Schema changelog (mediaapi):
  mediaapi_0001: mediaapi_media, mediaapi_thumbnails.
"""

from alembic import op

revision = "mediaapi_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE mediaapi_media (
            -- The server name of the mxc:// URI: ours for uploads, the
            -- origin for cached remote media.
            media_origin TEXT NOT NULL,
            media_id TEXT NOT NULL,
            -- Empty until the content is there (POST /create, then PUT).
            content_type TEXT NOT NULL,
            size_bytes BIGINT,
            upload_name TEXT,
            -- The local uploader; NULL for remote media.
            user_id TEXT,
            created_ts BIGINT NOT NULL,
            -- Where the bytes are in the media store; NULL while pending.
            store_key TEXT,
            sha256 TEXT,
            -- For a created but not yet uploaded ID: when it stops being usable.
            unused_expires_ts BIGINT,
            -- When thumbnails were made (NULL: not yet); also set when none
            -- could be (not an image, broken, smaller than every size).
            thumbnailed_ts BIGINT,
            PRIMARY KEY (media_origin, media_id)
        )
        """
    )
    op.execute("CREATE INDEX mediaapi_media_user ON mediaapi_media (user_id, created_ts)")
    op.execute(
        """
        CREATE TABLE mediaapi_thumbnails (
            media_origin TEXT NOT NULL,
            media_id TEXT NOT NULL,
            -- The configured size and method the thumbnail was made for.
            target_width INTEGER NOT NULL,
            target_height INTEGER NOT NULL,
            method TEXT NOT NULL,
            -- Its real size (a scaled thumbnail keeps the image's aspect).
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            content_type TEXT NOT NULL,
            size_bytes BIGINT NOT NULL,
            store_key TEXT NOT NULL,
            created_ts BIGINT NOT NULL,
            PRIMARY KEY (media_origin, media_id, target_width, target_height, method)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE mediaapi_thumbnails")
    op.execute("DROP INDEX mediaapi_media_user")
    op.execute("DROP TABLE mediaapi_media")
