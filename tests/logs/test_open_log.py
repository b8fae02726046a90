"""open_log: the configuration picks the backend and its settings."""

from __future__ import annotations

from pathlib import Path

from common.logs import DEFAULT_RETENTION_BYTES, EmbeddedLog, KafkaLog, open_log


def test_a_kafka_address_means_kafka() -> None:
    log = open_log("broker:9092", Path("/unused"), "myelin-syncapi", partitions=4, kafka_session_timeout_ms=1000)
    assert isinstance(log, KafkaLog)
    assert (log.bootstrap_servers, log.client_id, log.partitions) == ("broker:9092", "myelin-syncapi", 4)
    assert log.session_timeout_ms == 1000
    assert log.heartbeat_interval_ms < log.session_timeout_ms
    assert log.retention_bytes == DEFAULT_RETENTION_BYTES


def test_no_kafka_address_means_the_embedded_log(tmp_path: Path) -> None:
    for bootstrap in (None, ""):
        log = open_log(bootstrap, tmp_path, "myelin", retention_bytes=None)
        assert isinstance(log, EmbeddedLog)
        assert log.directory == tmp_path
        assert log.retention_bytes is None
    assert open_log(None, tmp_path, "myelin").retention_bytes == DEFAULT_RETENTION_BYTES  # type: ignore[attr-defined]
