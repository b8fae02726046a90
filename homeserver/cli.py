"""The `myelin` command.

    myelin [--config FILE]                       every component in one process
    myelin --config FILE roomserver              one component of a split deployment
           (likewise userapi, clientapi, syncapi, federationapi, router)
    myelin generate-config --server-name NAME --data-dir DIR -o FILE [flags]
    myelin --config FILE generate-nginx          the router's table as an nginx server block

A first start without a config file writes one for localhost (and a signing
key) at the given path, then starts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import uvloop

from common.config import COMPONENT_NAMES, ComponentAddress, Config, load_config, save_config
from homeserver.memory import configure_process_memory

PERSONALITIES = (*COMPONENT_NAMES, "router")


def generate_config(
    *,
    server_name: str,
    data_dir: Path,
    output: Path,
    client_port: int = 8008,
    federation_port: int | None = None,
    open_registration: bool = False,
    rate_limits: bool = True,
    postgres_url: str = "",
    kafka_bootstrap: str = "",
    split_base_port: int | None = None,
    default_room_version: str | None = None,
    kafka_session_timeout_ms: int | None = None,
    tls_cert: str = "",
    tls_key: str = "",
    insecure_federation_for_tests: bool = False,
    turn_uris: list[str] | None = None,
    turn_shared_secret: str = "",
) -> Config:
    """Writes a working config and, if missing, a signing key."""
    from matrixlib.signing import generate_signing_key, write_signing_key_file

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    key_path = data_dir / "signing.key"
    config = Config(server_name=server_name, data_dir=data_dir, signing_key_path=key_path)
    config.client_listen = f"127.0.0.1:{client_port}"
    if federation_port:
        config.federation_listen = f"127.0.0.1:{federation_port}"
    config.tls_cert_path, config.tls_key_path = tls_cert, tls_key
    if insecure_federation_for_tests:
        config.federation_verify_tls = False
        config.federation_allow_private_addresses = True
    config.registration.open = open_registration
    config.turn_uris, config.turn_shared_secret = list(turn_uris or []), turn_shared_secret
    config.rate_limits.enabled = rate_limits
    config.postgres_url = postgres_url
    config.kafka_bootstrap = kafka_bootstrap
    if default_room_version:
        config.default_room_version = default_room_version
    if kafka_session_timeout_ms:
        config.kafka_session_timeout_ms = kafka_session_timeout_ms
    if split_base_port:
        config.components = {
            "roomserver": ComponentAddress(grpc=f"127.0.0.1:{split_base_port}"),
            "userapi": ComponentAddress(grpc=f"127.0.0.1:{split_base_port + 1}"),
            "clientapi": ComponentAddress(http=f"127.0.0.1:{split_base_port + 2}"),
            "syncapi": ComponentAddress(http=f"127.0.0.1:{split_base_port + 3}"),
            "federationapi": ComponentAddress(http=f"127.0.0.1:{split_base_port + 4}",
                                              grpc=f"127.0.0.1:{split_base_port + 5}"),
            "mediaapi": ComponentAddress(http=f"127.0.0.1:{split_base_port + 6}"),
        }
    config.validate()
    if not key_path.exists():
        write_signing_key_file(key_path, generate_signing_key("a_" + _random_key_version()))
    save_config(config, output)
    return config


def _random_key_version() -> str:
    import secrets
    import string

    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(4))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="myelin", description="A Matrix homeserver built on event logs.")
    parser.add_argument("--config", type=Path, default=Path("data/myelin.yaml"),
                        help="the config file (written for localhost on first start if missing)")
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command")
    for name in PERSONALITIES:
        sub.add_parser(name, help=f"run only the {name}")
    sub.add_parser("generate-nginx", help="print an nginx server block routing one base URL to the components")
    gen = sub.add_parser("generate-config", help="write a config file and a signing key")
    gen.add_argument("--server-name", help="required unless --federation-port P is given (then localhost:P)")
    gen.add_argument("--data-dir", type=Path, required=True)
    gen.add_argument("-o", "--output", type=Path, required=True)
    gen.add_argument("--client-port", type=int, default=8008)
    gen.add_argument("--federation-port", type=int)
    gen.add_argument("--open-registration", action="store_true",
                     help="allow registration without verification")
    gen.add_argument("--no-rate-limits", action="store_true")
    gen.add_argument("--postgres", default="", help="base PostgreSQL URL; one database per component")
    gen.add_argument("--kafka", default="", help="Kafka bootstrap servers (host:port)")
    gen.add_argument("--split-base-port", type=int,
                     help="give each component its own listener, from this port up")
    gen.add_argument("--default-room-version")
    gen.add_argument("--kafka-session-timeout-ms", type=int)
    gen.add_argument("--tls-cert", default="", help="federation certificate (default: a self-signed one)")
    gen.add_argument("--tls-key", default="")
    gen.add_argument("--insecure-federation-for-tests", action="store_true",
                     help="do not check peers' certificates and allow loopback/private peers")
    gen.add_argument("--turn-uri", action="append", default=[], help="a TURN server URI (repeatable)")
    gen.add_argument("--turn-shared-secret", default="", help="the TURN servers' REST API shared secret")
    return parser


def main(argv: list[str] | None = None) -> None:
    configure_process_memory()
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "generate-config":
        server_name = args.server_name or (f"localhost:{args.federation_port}" if args.federation_port else "")
        if not server_name:
            raise SystemExit("generate-config needs --server-name (or --federation-port)")
        generate_config(
            server_name=server_name, data_dir=args.data_dir, output=args.output,
            client_port=args.client_port, federation_port=args.federation_port,
            open_registration=args.open_registration, rate_limits=not args.no_rate_limits,
            postgres_url=args.postgres, kafka_bootstrap=args.kafka,
            split_base_port=args.split_base_port, default_room_version=args.default_room_version,
            kafka_session_timeout_ms=args.kafka_session_timeout_ms,
            tls_cert=args.tls_cert, tls_key=args.tls_key,
            turn_uris=args.turn_uri, turn_shared_secret=args.turn_shared_secret,
            insecure_federation_for_tests=args.insecure_federation_for_tests,
        )
        print(f"wrote {args.output}", file=sys.stderr)
        return
    if not args.config.exists():
        if args.command not in (None,):
            raise SystemExit(f"{args.config} does not exist; write one with `myelin generate-config`")
        data_dir = args.config.parent
        generate_config(server_name="localhost", data_dir=data_dir, output=args.config,
                        open_registration=True)
        logging.getLogger("myelin").info("wrote a config for localhost to %s", args.config)
    config = load_config(args.config)
    if args.command == "generate-nginx":
        from homeserver.routes import nginx_config

        upstreams = {n: config.address_of(n).http for n in ("clientapi", "syncapi", "federationapi", "mediaapi")}
        print(nginx_config(config.client_listen, upstreams))
        return
    # The schemas are brought to head in a child process, so that Alembic
    # never loads into the server (see homeserver/migrate.py).
    _migrate_in_child_process(config, COMPONENT_NAMES if args.command is None
                              else [args.command] if args.command in COMPONENT_NAMES else [])
    if args.command is None:
        from homeserver.monolith import run_monolith

        _run(run_monolith(config))
    else:
        from homeserver.personalities import run_personality

        _run(run_personality(config, args.command))


def _migrate_in_child_process(config: Config, components: Sequence[str]) -> None:
    from homeserver.migrate import MigrationFailed, database_urls, migrate_in_child_process

    try:
        migrate_in_child_process(database_urls(config, components))
    except MigrationFailed as e:
        raise SystemExit(f"myelin: {e}") from e


def _run(main_coro: Coroutine[Any, Any, None]) -> None:
    """Runs until the coroutine ends or SIGINT/SIGTERM cancels it."""

    async def runner() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        await main_coro

    with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
        # uvloop: asyncio's API on libuv. Every component spends its time in
        # socket I/O and callbacks (HTTP, gRPC, Kafka, PostgreSQL); on uvloop
        # the split deployment's send burst costs ~17% less CPU per event.
        uvloop.run(runner())


if __name__ == "__main__":
    main()
