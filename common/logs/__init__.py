"""The two backends of ``common.log.Log`` and the choice between them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.log import Log
from common.logs.embedded import EmbeddedLog

if TYPE_CHECKING:
    from common.logs.kafka import KafkaLog

__all__ = ["DEFAULT_RETENTION_BYTES", "EmbeddedLog", "KafkaLog", "open_log"]

DEFAULT_RETENTION_BYTES = 1024 * 1024 * 1024


def __getattr__(name: str) -> Any:
    # aiokafka (several MB resident) is imported only where Kafka is used:
    # the single process on the embedded log never loads it.
    if name == "KafkaLog":
        from common.logs.kafka import KafkaLog

        return KafkaLog
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_log(
    kafka_bootstrap: str | None,
    embedded_dir: Path,
    client_id: str,
    *,
    partitions: int = 8,
    retention_bytes: int | None = DEFAULT_RETENTION_BYTES,
    kafka_session_timeout_ms: int = 10_000,
    kafka_replication_factor: int = 1,
) -> Log:
    """Kafka when a bootstrap address is configured (split deployment),
    otherwise the embedded log in ``embedded_dir`` (single process). The
    caller still calls ``start()``.

    ``partitions`` and ``retention_bytes`` (per partition; None keeps
    everything, or the broker's default) apply to topics the log creates.
    Logs are not the database: the default keeps 1 GiB per partition, far
    more than a consumer that is keeping up needs.
    ``kafka_session_timeout_ms`` is the consumer-group session timeout; Tansu
    makes a joining member wait half of it, so a test deployment may pass
    1000 (real Kafka brokers refuse less than 6000 by default).
    ``kafka_replication_factor`` applies to created topics (3 in production)."""
    if kafka_bootstrap:
        from common.logs.kafka import KafkaLog

        return KafkaLog(
            kafka_bootstrap,
            client_id,
            partitions=partitions,
            retention_bytes=retention_bytes,
            replication_factor=kafka_replication_factor,
            session_timeout_ms=kafka_session_timeout_ms,
            heartbeat_interval_ms=max(100, kafka_session_timeout_ms // 3),
        )
    return EmbeddedLog(embedded_dir, partitions, retention_bytes=retention_bytes)
