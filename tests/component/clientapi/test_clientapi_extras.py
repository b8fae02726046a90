"""The smaller endpoints: OpenID tokens (issued by the client API, checked by
the federation API's userinfo), mutual rooms, whois, third-party lookups
without application services, DELETE /profile, well-known support,
auth_metadata, registration token validity and the capabilities."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
import pytest
from sanic import Blueprint

from common.http import make_app, serve_app
from common.openid import OpenIDTokens
from federationapi.auth import needs_authentication
from federationapi.routing.openid import USERINFO_PATH, add_openid_routes
from tests.component.clientapi.conftest import SERVER_NAME, Harness

V3 = "/_matrix/client/v3"
V1 = "/_matrix/client/v1"


@pytest.fixture
async def userinfo(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    """The federation API's userinfo, with the same secret as the client API."""
    blueprint = Blueprint(f"openid_{uuid.uuid4().hex[:8]}")
    add_openid_routes(blueprint, OpenIDTokens(harness.clientapi.services.config.macaroon_secret))
    serving = await serve_app(make_app(f"openid_test_{uuid.uuid4().hex}", [blueprint]), "127.0.0.1:0")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{serving.port}") as http:
        yield http
    await serving.stop()


async def test_openid_token_round_trip(harness: Harness, userinfo: httpx.AsyncClient) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    response = await harness.http.post(f"{V3}/user/{quote(alice.user_id)}/openid/request_token", json={},
                                       headers=alice.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["matrix_server_name"] == SERVER_NAME
    assert body["expires_in"] == 3600
    answer = await userinfo.get(USERINFO_PATH, params={"access_token": body["access_token"]})
    assert answer.status_code == 200 and answer.json() == {"sub": alice.user_id}
    # The third party calls without X-Matrix.
    assert not needs_authentication(USERINFO_PATH)

    tampered = body["access_token"][:-2] + ("AA" if not body["access_token"].endswith("AA") else "BB")
    for token in (tampered, "nonsense", alice.access_token):
        answer = await userinfo.get(USERINFO_PATH, params={"access_token": token})
        assert (answer.status_code, answer.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    answer = await userinfo.get(USERINFO_PATH)
    assert (answer.status_code, answer.json()["errcode"]) == (400, "M_MISSING_PARAM")
    response = await harness.http.post(f"{V3}/user/{quote(alice.user_id)}/openid/request_token", json={},
                                       headers=bob.headers)
    assert (response.status_code, response.json()["errcode"]) == (403, "M_FORBIDDEN")


def test_openid_tokens_expire() -> None:
    tokens = OpenIDTokens("secret")
    token = tokens.issue("@a:b", now_ms=1000)
    assert tokens.user_of(token, now_ms=1000 + tokens.lifetime_ms - 1) == "@a:b"
    assert tokens.user_of(token, now_ms=1000 + tokens.lifetime_ms) is None
    assert OpenIDTokens("another secret").user_of(token, now_ms=1000) is None


async def test_mutual_rooms_and_whois(harness: Harness) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    shared = await harness.create_room(alice, preset="public_chat")
    await harness.create_room(alice, preset="public_chat")
    response = await harness.http.post(f"{V3}/rooms/{shared}/join", json={}, headers=bob.headers)
    assert response.status_code == 200, response.text
    response = await harness.http.get(f"{V1}/mutual_rooms", params={"user_id": bob.user_id}, headers=alice.headers)
    assert response.json() == {"joined": [shared], "count": 1}
    response = await harness.http.get(f"{V1}/mutual_rooms", params={"user_id": "not-a-user"}, headers=alice.headers)
    assert response.json() == {"joined": [], "count": 0}
    response = await harness.http.get(f"{V1}/mutual_rooms", params={"user_id": bob.user_id, "from": "x"},
                                      headers=alice.headers)
    assert (response.status_code, response.json()["errcode"]) == (400, "M_INVALID_PARAM")

    response = await harness.http.get(f"{V3}/admin/whois/{quote(alice.user_id)}", headers=alice.headers)
    assert response.status_code == 200, response.text
    assert response.json()["user_id"] == alice.user_id
    assert list(response.json()["devices"]) == [alice.device_id]
    response = await harness.http.get(f"{V3}/admin/whois/{quote(alice.user_id)}", headers=bob.headers)
    assert (response.status_code, response.json()["errcode"]) == (403, "M_FORBIDDEN")


async def test_third_party_lookups_without_bridges(harness: Harness) -> None:
    alice = await harness.register("alice")
    assert (await harness.http.get(f"{V3}/thirdparty/protocols", headers=alice.headers)).json() == {}
    response = await harness.http.get(f"{V3}/thirdparty/protocol/irc", headers=alice.headers)
    assert (response.status_code, response.json()["errcode"]) == (404, "M_NOT_FOUND")
    for path in ("/thirdparty/location/irc", "/thirdparty/user/irc", "/thirdparty/location", "/thirdparty/user"):
        response = await harness.http.get(V3 + path, headers=alice.headers)
        assert (response.status_code, response.json()) == (200, []), path
    response = await harness.http.get(f"{V3}/thirdparty/protocols")
    assert response.status_code == 401


async def test_delete_profile_field(harness: Harness) -> None:
    alice = await harness.register("alice")
    bob = await harness.register("bob")
    url = f"{V3}/profile/{quote(alice.user_id)}"
    await harness.http.put(f"{url}/avatar_url", json={"avatar_url": "mxc://a/b"}, headers=alice.headers)
    assert (await harness.http.get(url)).json() == {"displayname": "alice", "avatar_url": "mxc://a/b"}
    response = await harness.http.delete(f"{url}/avatar_url", headers=bob.headers)
    assert (response.status_code, response.json()["errcode"]) == (403, "M_FORBIDDEN")
    response = await harness.http.delete(f"{url}/avatar_url", headers=alice.headers)
    assert response.status_code == 200, response.text
    assert (await harness.http.get(url)).json() == {"displayname": "alice"}
    response = await harness.http.delete(f"{url}/displayname", headers=alice.headers)
    assert (await harness.http.get(url)).json() == {}
    response = await harness.http.delete(f"{url}/x.custom", headers=alice.headers)
    assert response.status_code in (400, 404)


async def test_discovery_and_capabilities(harness: Harness) -> None:
    alice = await harness.register("alice")
    capabilities = (await harness.http.get(f"{V3}/capabilities", headers=alice.headers)).json()["capabilities"]
    assert capabilities["m.get_login_token"] == {"enabled": True}
    assert capabilities["m.profile_fields"] == {"enabled": True, "allowed": ["displayname", "avatar_url"]}
    response = await harness.http.get("/.well-known/matrix/support")
    assert response.status_code == 404
    harness.clientapi.services.config.well_known_support = {"support_page": "https://example.org/help"}
    response = await harness.http.get("/.well-known/matrix/support")
    assert response.json() == {"support_page": "https://example.org/help"}
    response = await harness.http.get(f"{V1}/auth_metadata")
    assert (response.status_code, response.json()["errcode"]) == (404, "M_UNRECOGNIZED")
    validity = f"{V1}/register/m.login.registration_token/validity"
    response = await harness.http.get(validity, params={"token": "abc"})
    assert response.json() == {"valid": False}
    response = await harness.http.get(validity)
    assert (response.status_code, response.json()["errcode"]) == (400, "M_MISSING_PARAM")
    harness.clientapi.services.config.registration.open = False
    response = await harness.http.get(validity, params={"token": "abc"})
    assert (response.status_code, response.json()["errcode"]) == (403, "M_FORBIDDEN")


def test_turn_credentials_of_the_rest_api() -> None:
    import base64
    import hashlib
    import hmac

    from clientapi.routing.voip import turn_credentials

    answer = turn_credentials(user_id="@a:b", uris=["turn:t.example:3478"], shared_secret="s3cret", username="",
                              password="", lifetime_ms=3_600_000, now_ms=1_000_000_000)
    assert answer["username"] == "1003600:@a:b" and answer["ttl"] == 3600
    expected = base64.b64encode(hmac.new(b"s3cret", b"1003600:@a:b", hashlib.sha1).digest()).decode()
    assert answer["password"] == expected and answer["uris"] == ["turn:t.example:3478"]
    fixed = turn_credentials(user_id="@a:b", uris=["turns:t.example:443"], shared_secret="", username="u",
                             password="p", lifetime_ms=60_000, now_ms=0)
    assert fixed == {"username": "u", "password": "p", "uris": ["turns:t.example:443"], "ttl": 60}
    assert turn_credentials(user_id="@a:b", uris=[], shared_secret="x", username="", password="",
                            lifetime_ms=1, now_ms=0) == {}


async def test_turn_server_endpoint(harness: Harness) -> None:
    alice = await harness.register("alice")
    response = await harness.http.get(f"{V3}/voip/turnServer", headers=alice.headers)
    assert (response.status_code, response.json()) == (200, {})
    config = harness.clientapi.services.config
    config.turn_uris, config.turn_shared_secret = ["turn:turn.example.org:3478"], "secret"
    body = (await harness.http.get(f"{V3}/voip/turnServer", headers=alice.headers)).json()
    assert body["username"].endswith(":" + alice.user_id) and body["uris"] == ["turn:turn.example.org:3478"]
    guest = (await harness.http.post(f"{V3}/register", params={"kind": "guest"}, json={})).json()
    guest_headers = {"Authorization": f"Bearer {guest['access_token']}"}
    assert (await harness.http.get(f"{V3}/voip/turnServer", headers=guest_headers)).status_code == 200
    config.turn_allow_guests = False
    response = await harness.http.get(f"{V3}/voip/turnServer", headers=guest_headers)
    assert (response.status_code, response.json()["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN")


async def test_login_token_for_another_client(harness: Harness) -> None:
    alice = await harness.register("alice", "pw-alice")
    challenge = await harness.http.post(f"{V1}/login/get_token", json={}, headers=alice.headers)
    assert challenge.status_code == 401 and challenge.json()["flows"] == [{"stages": ["m.login.password"]}]
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id},
            "session": challenge.json()["session"]}
    wrong = await harness.http.post(f"{V1}/login/get_token", json={"auth": {**auth, "password": "nope"}},
                                    headers=alice.headers)
    assert (wrong.status_code, wrong.json()["errcode"]) == (401, "M_FORBIDDEN")
    response = await harness.http.post(f"{V1}/login/get_token", json={"auth": {**auth, "password": "pw-alice"}},
                                       headers=alice.headers)
    assert response.status_code == 200, response.text
    token = response.json()["login_token"]
    assert response.json()["expires_in_ms"] == 120_000

    login = await harness.http.post(f"{V3}/login", json={"type": "m.login.token", "token": token,
                                                         "initial_device_display_name": "second client"})
    assert login.status_code == 200, login.text
    assert login.json()["user_id"] == alice.user_id and login.json()["device_id"] != alice.device_id
    whoami = await harness.http.get(f"{V3}/account/whoami",
                                    headers={"Authorization": f"Bearer {login.json()['access_token']}"})
    assert whoami.json()["user_id"] == alice.user_id
    # Single use; and only tokens this server made.
    for bad in (token, token[:-3] + "abc", "nonsense"):
        again = await harness.http.post(f"{V3}/login", json={"type": "m.login.token", "token": bad})
        assert (again.status_code, again.json()["errcode"]) == (403, "M_FORBIDDEN")
    flows = (await harness.http.get(f"{V3}/login")).json()["flows"]
    assert {"type": "m.login.token", "get_login_token": True} in flows


def test_login_tokens_expire() -> None:
    from clientapi.internal.login_tokens import LoginTokens

    now = [1000.0]
    tokens = LoginTokens("secret", clock=lambda: now[0])
    first, second = tokens.issue("@a:b"), tokens.issue("@a:b")
    now[0] += 119
    assert tokens.consume(first) == "@a:b"
    now[0] += 2
    assert tokens.consume(second) is None
