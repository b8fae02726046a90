"""The split deployment's routing table sends each path to its component."""

from __future__ import annotations

import pytest

from homeserver.routes import component_for_path, nginx_config


@pytest.mark.parametrize(
    ("path", "component"),
    [
        ("/_matrix/client/v3/sync", "syncapi"),
        ("/_matrix/client/r0/sync", "syncapi"),
        ("/_matrix/client/v3/rooms/!abc:localhost/messages", "syncapi"),
        ("/_matrix/client/v3/rooms/!abc/members", "syncapi"),
        ("/_matrix/client/v3/rooms/!abc/joined_members", "syncapi"),
        ("/_matrix/client/v3/rooms/!abc/context/$ev", "syncapi"),
        ("/_matrix/client/v3/rooms/!abc/initialSync", "syncapi"),
        ("/_matrix/client/v3/events/$ev", "syncapi"),
        ("/_matrix/client/v3/events", "syncapi"),
        ("/_matrix/client/v3/initialSync", "syncapi"),
        ("/_matrix/client/v3/rooms/!abc/event/$ev", "syncapi"),
        ("/_matrix/client/v1/rooms/!abc/relations/$ev", "syncapi"),
        ("/_matrix/client/v1/rooms/!abc/relations/$ev/m.thread", "syncapi"),
        ("/_matrix/client/v1/rooms/!abc/relations/$ev/m.annotation/m.reaction", "syncapi"),
        ("/_matrix/client/v1/rooms/!abc/threads", "syncapi"),
        ("/_matrix/client/v1/rooms/!abc/timestamp_to_event", "syncapi"),
        ("/_matrix/client/v3/rooms/!abc/report/$ev", "clientapi"),
        ("/_matrix/client/v3/rooms/!abc/report", "clientapi"),
        ("/_matrix/client/v3/user/@a:b/filter", "syncapi"),
        ("/_matrix/client/v3/user/@a:b/filter/7", "syncapi"),
        ("/_matrix/client/v3/rooms/!abc/send/m.room.message/t1", "clientapi"),
        ("/_matrix/client/v3/rooms/!abc/state/m.room.name/", "clientapi"),
        ("/_matrix/client/v3/createRoom", "clientapi"),
        ("/_matrix/client/versions", "clientapi"),
        ("/_matrix/client/v3/user/@a:b/account_data/x", "clientapi"),
        ("/_matrix/federation/v1/version", "federationapi"),
        ("/_matrix/key/v2/server", "federationapi"),
        ("/_matrix/media/v3/upload", "mediaapi"),
        ("/_matrix/media/v1/create", "mediaapi"),
        ("/_matrix/media/v3/download/a.org/abc", "mediaapi"),
        ("/_matrix/client/v1/media/thumbnail/a.org/abc", "mediaapi"),
        ("/_matrix/client/v1/media/config", "mediaapi"),
        ("/_matrix/federation/v1/media/download/abc", "federationapi"),
        ("/unknown", "clientapi"),
    ],
)
def test_component_for_path(path: str, component: str) -> None:
    assert component_for_path(path) == component


def test_nginx_config_names_every_upstream() -> None:
    text = nginx_config("8008", {"clientapi": "127.0.0.1:1", "syncapi": "127.0.0.1:2",
                                 "federationapi": "127.0.0.1:3", "mediaapi": "127.0.0.1:4"})
    assert "proxy_pass http://127.0.0.1:2;" in text
    assert "proxy_pass http://127.0.0.1:3;" in text
    assert "proxy_pass http://127.0.0.1:4;" in text
    assert text.rstrip().endswith("}")
