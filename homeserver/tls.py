"""TLS for the federation listener: the configured certificate, or a
self-signed one made on first start (for tests and loopback peers)."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

from common.config import Config


def ensure_self_signed_certificate(directory: Path, server_name: str) -> tuple[Path, Path]:
    cert = directory / "federation.crt"
    key = directory / "federation.key"
    if not (cert.exists() and key.exists()):
        host = server_name.rsplit(":", 1)[0] if not server_name.endswith("]") else server_name
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
             "-subj", f"/CN={host}", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )
    return cert, key


def federation_ssl_context(config: Config) -> ssl.SSLContext:
    if config.tls_cert_path and config.tls_key_path:
        cert, key = Path(config.tls_cert_path), Path(config.tls_key_path)
    else:
        cert, key = ensure_self_signed_certificate(config.data_dir, config.server_name)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    return context
