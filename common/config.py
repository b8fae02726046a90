"""Myelin's configuration: one YAML file for every process of a deployment.

The single process reads all of it. A split deployment gives every process
the same file; each reads its own section and the addresses of the others
(``components``). Unknown keys are refused so a typo is an error at start,
not a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from matrixlib.room_versions import DEFAULT_ROOM_VERSION, KNOWN_ROOM_VERSIONS

COMPONENT_NAMES = ("roomserver", "userapi", "clientapi", "syncapi", "federationapi", "mediaapi")


class ConfigError(ValueError):
    pass


@dataclass
class RateLimit:
    """A token bucket: ``burst`` requests at once, refilled at ``per_second``."""

    per_second: float
    burst: int


@dataclass
class RateLimits:
    enabled: bool = True
    send_per_user: RateLimit = field(default_factory=lambda: RateLimit(per_second=5.0, burst=20))
    login_per_ip: RateLimit = field(default_factory=lambda: RateLimit(per_second=0.2, burst=5))
    register_per_ip: RateLimit = field(default_factory=lambda: RateLimit(per_second=0.2, burst=5))
    # Logins per account (whatever the address), and failed logins per
    # account (a wrong password uses one; none left: 429 before checking).
    login_per_account: RateLimit = field(default_factory=lambda: RateLimit(per_second=0.2, burst=5))
    failed_login_per_account: RateLimit = field(default_factory=lambda: RateLimit(per_second=0.17, burst=3))
    # Per user, as Synapse's rc_joins.local, rc_invites.per_issuer and
    # rc_room_creation (each also counts as a send).
    join_per_user: RateLimit = field(default_factory=lambda: RateLimit(per_second=0.1, burst=10))
    invite_per_user: RateLimit = field(default_factory=lambda: RateLimit(per_second=0.3, burst=10))
    room_creation_per_user: RateLimit = field(default_factory=lambda: RateLimit(per_second=0.016, burst=10))


@dataclass
class Registration:
    # Registration with m.login.dummy, without email or captcha.
    open: bool = False
    # Guest accounts (POST /register?kind=guest), whether or not the
    # registration of full accounts is open.
    allow_guests: bool = True


@dataclass
class ThumbnailSize:
    """A thumbnail the media repository makes of every image: fitted inside
    width x height ("scale") or cut to exactly that size ("crop")."""

    width: int
    height: int
    method: str


def _default_thumbnail_sizes() -> list[ThumbnailSize]:
    # The sizes the spec's content repository module recommends.
    return [ThumbnailSize(32, 32, "crop"), ThumbnailSize(96, 96, "crop"), ThumbnailSize(320, 240, "scale"),
            ThumbnailSize(640, 480, "scale"), ThumbnailSize(800, 600, "scale")]


@dataclass
class MediaConfig:
    max_upload_size_bytes: int = 50 * 1024 * 1024
    thumbnail_sizes: list[ThumbnailSize] = field(default_factory=_default_thumbnail_sizes)
    # Images with more pixels than this are not decoded for thumbnails.
    max_thumbnail_source_pixels: int = 32_000_000
    url_preview_enabled: bool = True
    # Previews of private/loopback/link-local addresses (after DNS) are refused unless set.
    url_preview_allow_private_addresses: bool = False
    url_preview_max_bytes: int = 10 * 1024 * 1024


@dataclass
class ComponentAddress:
    """Where a component listens in a split deployment. In the single
    process every component runs in process and these are unused."""

    grpc: str = ""
    http: str = ""


@dataclass
class OldVerifyKey:
    """A key this server signed with before: its unpadded base64 public key
    and when (ms) it stopped being used. Published as old_verify_keys."""

    key: str
    expired_ts: int


@dataclass
class TrustedKeyServer:
    """A notary asked for other servers' keys; ``verify_keys`` (key ID ->
    unpadded base64 public key) check its signature on what it answers."""

    server_name: str
    verify_keys: dict[str, str] = field(default_factory=dict)


@dataclass
class Config:
    server_name: str
    data_dir: Path
    signing_key_path: Path
    default_room_version: str = DEFAULT_ROOM_VERSION
    # The public client-server listener (the router in a split deployment).
    client_listen: str = "127.0.0.1:8008"
    # The URL clients reach the server at (well-known, login); empty: https://<server_name>/.
    public_baseurl: str = ""
    # The federation listener; empty turns federation off.
    federation_listen: str = ""
    tls_cert_path: str = ""
    tls_key_path: str = ""
    # A base PostgreSQL URL; each component gets its own database
    # (<name>_<component>). Empty: SQLite files in data_dir.
    postgres_url: str = ""
    # Kafka bootstrap servers; empty: the embedded log in data_dir/log.
    kafka_bootstrap: str = ""
    # How soon Kafka notices a consumer that died. Joining a group waits
    # about half of it; tests on Tansu set it low (real Kafka wants >= 6000).
    kafka_session_timeout_ms: int = 10000
    registration: Registration = field(default_factory=Registration)
    rate_limits: RateLimits = field(default_factory=RateLimits)
    # Password hashing cost: scrypt's n is 2**password_scrypt_log2_n (15: about
    # 70 ms a hash). Lowered only for tests and benchmarks.
    password_scrypt_log2_n: int = 15
    components: dict[str, ComponentAddress] = field(default_factory=dict)
    # Seconds an event over the input call may wait for the room server.
    input_timeout_seconds: float = 30.0
    # A secret for tokens that must not be guessable (e.g. UIA sessions).
    macaroon_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    # How long access tokens live (ms): those issued with a refresh token
    # (the client asked with refresh_token: true), and the others (0: for ever).
    refreshable_access_token_lifetime_ms: int = 5 * 60 * 1000
    nonrefreshable_access_token_lifetime_ms: int = 0
    # Federation: past signing keys (key ID -> key), notaries for other
    # servers' keys (none by default), certificate checks on outgoing
    # requests, and whether peers may be private/loopback addresses (tests).
    old_signing_keys: dict[str, OldVerifyKey] = field(default_factory=dict)
    trusted_key_servers: list[TrustedKeyServer] = field(default_factory=list)
    federation_verify_tls: bool = True
    federation_allow_private_addresses: bool = False
    # The federation sender's retries of an unreachable destination: the
    # first after this many seconds, doubling up to the maximum.
    federation_retry_initial_seconds: float = 1.0
    federation_retry_max_seconds: float = 3600.0
    # Whether this process runs the federation sender. One sender per
    # deployment: with several federation API processes, turn it off in all
    # but one (their destination queues are shared).
    federation_sender_enabled: bool = True
    media: MediaConfig = field(default_factory=MediaConfig)
    # What GET /.well-known/matrix/support answers ({"contacts": [...],
    # "support_page": ...}); empty: 404.
    well_known_support: dict[str, Any] = field(default_factory=dict)
    # TURN servers for VoIP (GET /voip/turnServer): their URIs, and either
    # the shared secret of the TURN REST API (coturn's use-auth-secret) or
    # a fixed username and password. No URIs: clients are told of none.
    turn_uris: list[str] = field(default_factory=list)
    turn_shared_secret: str = ""
    turn_username: str = ""
    turn_password: str = ""
    turn_user_lifetime_ms: int = 60 * 60 * 1000
    turn_allow_guests: bool = True

    def address_of(self, component: str) -> ComponentAddress:
        return self.components.get(component, ComponentAddress())

    def validate(self) -> None:
        if not self.server_name:
            raise ConfigError("server_name is required")
        if self.default_room_version not in KNOWN_ROOM_VERSIONS:
            raise ConfigError(f"default_room_version {self.default_room_version!r} is not supported")
        for name in self.components:
            if name not in COMPONENT_NAMES:
                raise ConfigError(f"unknown component {name!r} in components")
        for notary in self.trusted_key_servers:
            if not notary.verify_keys:
                raise ConfigError(f"trusted key server {notary.server_name!r} needs verify_keys")
        for size in self.media.thumbnail_sizes:
            if size.method not in ("crop", "scale") or size.width < 1 or size.height < 1:
                raise ConfigError(f"bad media.thumbnail_sizes entry {size}")


def _from_dict(cls: Any, data: dict[str, Any], where: str) -> Any:
    """Builds a dataclass from YAML data, recursing into nested dataclasses
    and refusing unknown keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"unknown setting {where}.{key}")
        ftype = fields[key].type
        if ftype in ("RateLimit", "RateLimits", "Registration"):
            kwargs[key] = _from_dict(globals()[ftype], value, f"{where}.{key}")
        elif key == "components":
            kwargs[key] = {
                name: _from_dict(ComponentAddress, addr or {}, f"{where}.components.{name}")
                for name, addr in (value or {}).items()
            }
        elif key == "old_signing_keys":
            kwargs[key] = {key_id: _from_dict(OldVerifyKey, old, f"{where}.{key}.{key_id}")
                           for key_id, old in (value or {}).items()}
        elif key == "media":
            kwargs[key] = _from_dict(MediaConfig, value or {}, f"{where}.{key}")
        elif key == "thumbnail_sizes":
            kwargs[key] = [_from_dict(ThumbnailSize, size, f"{where}.{key}") for size in value or []]
        elif key == "trusted_key_servers":
            kwargs[key] = [_from_dict(TrustedKeyServer, notary, f"{where}.{key}") for notary in value or []]
        elif ftype == "Path":
            kwargs[key] = Path(value)
        else:
            kwargs[key] = value
    return cls(**kwargs)


def load_config(path: Path) -> Config:
    with path.open() as f:
        data = yaml.safe_load(f) or {}
    config: Config = _from_dict(Config, data, "config")
    # Relative paths are relative to the config file, so a data directory
    # can be moved as a whole.
    base = path.resolve().parent
    config.data_dir = (base / config.data_dir).resolve()
    config.signing_key_path = (base / config.signing_key_path).resolve()
    config.validate()
    return config


def config_to_dict(config: Config) -> dict[str, Any]:
    data = dataclasses.asdict(config)
    data["data_dir"] = str(config.data_dir)
    data["signing_key_path"] = str(config.signing_key_path)
    return data


def save_config(config: Config, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False)
    path.write_text("# Myelin configuration (see README.md)\n" + text)
