"""The federation settings: generate-config's federation flags, and the new
config fields surviving a save and load."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.config import ConfigError, OldVerifyKey, TrustedKeyServer, load_config, save_config
from federationapi.client import FederationClient
from homeserver.cli import main
from matrixlib.signing import read_signing_key_file


def test_federation_port_gives_the_server_name_and_insecure_flag_for_tests(tmp_path: Path) -> None:
    output = tmp_path / "myelin.yaml"
    main(["generate-config", "--federation-port", "18448", "--data-dir", str(tmp_path / "data"), "-o", str(output),
          "--insecure-federation-for-tests"])
    config = load_config(output)
    assert config.server_name == "localhost:18448"
    assert config.federation_listen == "127.0.0.1:18448"
    assert config.federation_verify_tls is False
    assert config.federation_allow_private_addresses is True


def test_defaults_are_safe(tmp_path: Path) -> None:
    output = tmp_path / "myelin.yaml"
    main(["generate-config", "--server-name", "example.org", "--data-dir", str(tmp_path / "data"), "-o", str(output),
          "--tls-cert", "/etc/cert.pem", "--tls-key", "/etc/key.pem"])
    config = load_config(output)
    assert (config.tls_cert_path, config.tls_key_path) == ("/etc/cert.pem", "/etc/key.pem")
    assert config.federation_verify_tls is True
    assert config.federation_allow_private_addresses is False
    assert config.trusted_key_servers == []
    client = FederationClient.from_config(config, read_signing_key_file(config.signing_key_path))
    assert client.server_name == "example.org"


def test_server_name_is_required_without_federation_port(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["generate-config", "--data-dir", str(tmp_path), "-o", str(tmp_path / "x.yaml")])


def test_old_keys_and_notaries_round_trip(tmp_path: Path) -> None:
    output = tmp_path / "myelin.yaml"
    main(["generate-config", "--server-name", "example.org", "--data-dir", str(tmp_path / "data"), "-o", str(output)])
    config = load_config(output)
    config.old_signing_keys = {"ed25519:old": OldVerifyKey(key="AAAA", expired_ts=123)}
    config.trusted_key_servers = [TrustedKeyServer(server_name="notary.example", verify_keys={"ed25519:n": "BBBB"})]
    save_config(config, output)
    loaded = load_config(output)
    assert loaded.old_signing_keys == config.old_signing_keys
    assert loaded.trusted_key_servers == config.trusted_key_servers


def test_a_notary_without_keys_is_refused(tmp_path: Path) -> None:
    output = tmp_path / "myelin.yaml"
    main(["generate-config", "--server-name", "example.org", "--data-dir", str(tmp_path / "data"), "-o", str(output)])
    text = output.read_text()
    assert "trusted_key_servers: []\n" in text
    output.write_text(text.replace("trusted_key_servers: []\n", "trusted_key_servers:\n- server_name: notary.example\n"))
    with pytest.raises(ConfigError, match="verify_keys"):
        load_config(output)
