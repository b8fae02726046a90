"""End-to-end encryption keys, device list streams and key backup.

Revision ID: userapi_0005
Revises: userapi_0004
Create Date: 2026-11-26

Schema changelog (userapi):
  userapi_0005: userapi_device_keys, userapi_one_time_keys, userapi_fallback_keys,
  userapi_cross_signing_keys, userapi_cross_signing_sigs, userapi_device_list_streams,
  userapi_key_backup_versions, userapi_key_backup_keys.
"""

from alembic import op

revision = "userapi_0005"
down_revision = "userapi_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE userapi_device_keys (
            -- Local users' devices and remote users' devices learnt over federation.
            user_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            -- The device keys as uploaded (signed JSON); "" for a remote device known without keys.
            key_json TEXT NOT NULL,
            -- Remote devices only: local ones take theirs from userapi_devices.
            display_name TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (user_id, device_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE userapi_one_time_keys (
            user_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            -- "<algorithm>:<key id>", as uploaded.
            key_id TEXT NOT NULL,
            algorithm TEXT NOT NULL,
            key_json TEXT NOT NULL,
            PRIMARY KEY (user_id, device_id, key_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE userapi_fallback_keys (
            user_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            algorithm TEXT NOT NULL,
            key_id TEXT NOT NULL,
            key_json TEXT NOT NULL,
            -- Claimed at least once (it stays claimable until replaced).
            used BOOLEAN NOT NULL DEFAULT FALSE,
            PRIMARY KEY (user_id, device_id, algorithm)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE userapi_cross_signing_keys (
            user_id TEXT NOT NULL,
            -- "master", "self_signing" or "user_signing".
            key_type TEXT NOT NULL,
            key_json TEXT NOT NULL,
            PRIMARY KEY (user_id, key_type)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE userapi_cross_signing_sigs (
            -- Who signed, with which key ("ed25519:<public key>" or "ed25519:<device ID>").
            origin_user_id TEXT NOT NULL,
            origin_key_id TEXT NOT NULL,
            -- What was signed: a device ID or a cross-signing public key.
            target_user_id TEXT NOT NULL,
            target_key_id TEXT NOT NULL,
            signature TEXT NOT NULL,
            PRIMARY KEY (origin_user_id, origin_key_id, target_user_id, target_key_id)
        )
        """
    )
    op.execute("CREATE INDEX userapi_cross_signing_sigs_target ON userapi_cross_signing_sigs "
               "(target_user_id, target_key_id)")
    op.execute(
        """
        CREATE TABLE userapi_device_list_streams (
            -- The latest m.device_list_update stream ID of a user (local: issued
            -- here; remote: the last one received and applied).
            user_id TEXT NOT NULL PRIMARY KEY,
            stream_id BIGINT NOT NULL
        )
        """
    )
    op.execute(
        """
        CREATE TABLE userapi_key_backup_versions (
            user_id TEXT NOT NULL,
            version BIGINT NOT NULL,
            algorithm TEXT NOT NULL,
            auth_data_json TEXT NOT NULL,
            -- Changes whenever the backup's keys change.
            etag BIGINT NOT NULL DEFAULT 0,
            deleted BOOLEAN NOT NULL DEFAULT FALSE,
            PRIMARY KEY (user_id, version)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE userapi_key_backup_keys (
            user_id TEXT NOT NULL,
            version BIGINT NOT NULL,
            room_id TEXT NOT NULL,
            session_id TEXT NOT NULL,
            first_message_index BIGINT NOT NULL,
            forwarded_count BIGINT NOT NULL,
            is_verified BOOLEAN NOT NULL,
            session_data_json TEXT NOT NULL,
            PRIMARY KEY (user_id, version, room_id, session_id)
        )
        """
    )


def downgrade() -> None:
    for table in ("userapi_key_backup_keys", "userapi_key_backup_versions", "userapi_device_list_streams",
                  "userapi_cross_signing_sigs", "userapi_cross_signing_keys", "userapi_fallback_keys",
                  "userapi_one_time_keys", "userapi_device_keys"):
        op.execute(f"DROP TABLE {table}")
