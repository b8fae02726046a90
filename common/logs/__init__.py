"""The two backends of ``common.log.Log`` and the choice between them."""

from __future__ import annotations

from pathlib import Path

from common.log import Log
from common.logs.embedded import EmbeddedLog
from common.logs.kafka import KafkaLog

__all__ = ["EmbeddedLog", "KafkaLog", "open_log"]


def open_log(kafka_bootstrap: str | None, embedded_dir: Path, client_id: str) -> Log:
    """Kafka when a bootstrap address is configured (split deployment),
    otherwise the embedded log in ``embedded_dir`` (single process). The
    caller still calls ``start()``."""
    if kafka_bootstrap:
        return KafkaLog(kafka_bootstrap, client_id)
    return EmbeddedLog(embedded_dir)
