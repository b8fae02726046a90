"""generate-config writes a config that loads, and bad configs are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.config import ConfigError, load_config
from homeserver.cli import generate_config, main


def test_generate_config_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "myelin.yaml"
    generate_config(server_name="localhost:8448", data_dir=tmp_path / "data", output=out,
                    client_port=18008, federation_port=18448, open_registration=True,
                    rate_limits=False, postgres_url="postgresql://u@127.0.0.1:5432/myelin",
                    kafka_bootstrap="127.0.0.1:9092", split_base_port=30000)
    config = load_config(out)
    assert config.server_name == "localhost:8448"
    assert config.client_listen == "127.0.0.1:18008"
    assert config.federation_listen == "127.0.0.1:18448"
    assert config.registration.open is True
    assert config.rate_limits.enabled is False
    assert config.kafka_bootstrap == "127.0.0.1:9092"
    assert config.address_of("roomserver").grpc == "127.0.0.1:30000"
    assert config.address_of("syncapi").http == "127.0.0.1:30003"
    assert config.signing_key_path.exists()
    assert config.default_room_version == "12"


def test_cli_generate_config(tmp_path: Path) -> None:
    out = tmp_path / "c.yaml"
    main(["generate-config", "--server-name", "example.org", "--data-dir", str(tmp_path / "d"),
          "-o", str(out), "--open-registration", "--no-rate-limits"])
    config = load_config(out)
    assert config.server_name == "example.org"
    assert config.registration.open and not config.rate_limits.enabled


def test_signing_key_is_kept_on_regeneration(tmp_path: Path) -> None:
    out = tmp_path / "c.yaml"
    generate_config(server_name="a", data_dir=tmp_path, output=out)
    key = (tmp_path / "signing.key").read_text()
    generate_config(server_name="a", data_dir=tmp_path, output=out)
    assert (tmp_path / "signing.key").read_text() == key


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("server_name: a\ndata_dir: .\nsigning_key_path: k\nbogus: 1\n", "unknown setting config.bogus"),
        ("server_name: a\ndata_dir: .\nsigning_key_path: k\ndefault_room_version: '99'\n", "not supported"),
        ("server_name: a\ndata_dir: .\nsigning_key_path: k\nregistration: {nope: true}\n", "registration.nope"),
        ("server_name: a\ndata_dir: .\nsigning_key_path: k\n"
         "media: {thumbnail_sizes: [{width: 1, height: 1, method: zoom}]}\n", "media.thumbnail_sizes"),
        ("server_name: a\ndata_dir: .\nsigning_key_path: k\ncomponents: {pushapi: {}}\n", "unknown component"),
    ],
)
def test_bad_config_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)
