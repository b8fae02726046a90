"""Example requests for the client-server API's operations, in the order a
scenario runs them against a live Myelin.

Each ``Example`` names a spec operation (method and the spec's full path
template) and what to send. Path parameters are filled by name from the
scenario's ``Context`` (``roomId``, ``userId``, ``eventId`` ...) unless the
example gives them; ``txnId`` is fresh for every call. An example whose
operation Myelin does not serve is passed over, so the table can describe
endpoints before they exist: when an engineer adds one, the scenario starts
calling it. ``needs`` names operations an example depends on (it is passed
over unless they are served too). ``keep`` stores values from a response
for later examples. Success and error answers are both examples.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a better horse battery staple"

V3 = "/_matrix/client/v3"
V1 = "/_matrix/client/v1"
MEDIA_V3 = "/_matrix/media/v3"
MEDIA_V1 = "/_matrix/media/v1"


class Context:
    """Values shared by the examples: path parameters by their spec names,
    access tokens by user, and anything else an example keeps."""

    def __init__(self, server_name: str) -> None:
        self.server_name = server_name
        self.run = uuid.uuid4().hex[:8]
        self.values: dict[str, Any] = {}
        self.tokens: dict[str, str] = {}

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def __setitem__(self, name: str, value: Any) -> None:
        self.values[name] = value

    def localpart(self, who: str) -> str:
        return f"{who}_{self.run}"

    def user_id(self, who: str) -> str:
        return f"@{self.localpart(who)}:{self.server_name}"


Lazy = Callable[[Context], Any]


def resolve(value: Any, context: Context) -> Any:
    """A value as sent: a callable is called with the context (for values
    only known once earlier examples ran), in a dict value too."""
    if callable(value):
        return value(context)
    if isinstance(value, dict):
        return {k: resolve(v, context) for k, v in value.items()}
    return value


class RawBody(bytes):
    """A body sent as these bytes rather than as JSON (for the error cases)."""


@dataclass(frozen=True)
class Example:
    method: str
    path: str                             # the spec's full path template
    body: Any = None                      # JSON value, Lazy, or RawBody
    query: dict[str, Any] = field(default_factory=dict)
    path_values: dict[str, Any] = field(default_factory=dict)
    user: str | None = "alice"            # whose access token; None sends none
    expect: int | tuple[int, ...] = 200
    errcode: str | None = None            # the errcode an error answer must carry
    keep: Callable[[Context, Any], None] | None = None
    needs: tuple[str, ...] = ()           # "METHOD /path" of operations this one relies on
    # The answer is a token failure (401 M_MISSING_TOKEN / M_UNKNOWN_TOKEN),
    # checked against the spec's common error object.
    token_failure: bool = False

    @property
    def operation_key(self) -> str:
        return f"{self.method} {self.path}"


def _keep_login(who: str) -> Callable[[Context, Any], None]:
    def keep(context: Context, body: Any) -> None:
        context.tokens[who] = body["access_token"]
        context[f"{who}_device"] = body["device_id"]
    return keep


def _expect_knock(context: Context, body: Any) -> None:
    knock_state = body["rooms"]["knock"][context["knockRoomId"]]["knock_state"]["events"]
    assert any(e["type"] == "m.room.member" and e["content"]["membership"] == "knock" for e in knock_state)


def _keep(name: str, field_name: str) -> Callable[[Context, Any], None]:
    def keep(context: Context, body: Any) -> None:
        context[name] = body[field_name]
    return keep


def _keep_media(name: str) -> Callable[[Context, Any], None]:
    def keep(context: Context, body: Any) -> None:
        context[name] = body["content_uri"].rsplit("/", 1)[1]
    return keep


def _server_name(context: Context) -> str:
    return context.server_name


def _keep_session(context: Context, body: Any) -> None:
    context["session"] = body["session"]


def _register(who: str) -> list[Example]:
    return [
        # The first step of interactive auth: 401 with the flows and a session.
        Example("POST", V3 + "/register", user=None, expect=401,
                body=lambda c: {"username": c.localpart(who), "password": PASSWORD},
                keep=_keep_session),
        Example("POST", V3 + "/register", user=None,
                body=lambda c: {"username": c.localpart(who), "password": PASSWORD,
                                "initial_device_display_name": f"{who}'s first device",
                                "auth": {"type": "m.login.dummy", "session": c["session"]}},
                keep=_keep_login(who)),
    ]


def _password_login(who: str, password: str = PASSWORD) -> Any:
    return lambda c: {"type": "m.login.password", "password": password,
                      "identifier": {"type": "m.id.user", "user": c.localpart(who)}}


BACKUP_ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"
BACKED_UP_KEY = {"first_message_index": 0, "forwarded_count": 0, "is_verified": False,
                 "session_data": {"ephemeral": "e", "ciphertext": "c", "mac": "m"}}


def _keep_backup_version(name: str) -> Callable[[Context, Any], None]:
    def keep(context: Context, body: Any) -> None:
        context[name] = body["version"]
    return keep


def _password_auth(who: str, password: str = PASSWORD) -> Lazy:
    return lambda c: {"type": "m.login.password", "password": password, "session": c["session"],
                      "identifier": {"type": "m.id.user", "user": c.localpart(who)}}


ALIAS = "#contract_{run}:{server}"


def _alias(context: Context) -> str:
    return ALIAS.format(run=context.run, server=context.server_name)


def _message(text: str) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": text}


PUSH_RULE = "org.example.contract"


def examples() -> list[Example]:
    """The scenario, in order."""
    room = V3 + "/rooms/{roomId}"
    return [
        # -- discovery, no token ------------------------------------------------
        Example("GET", "/_matrix/client/versions", user=None),
        Example("GET", "/.well-known/matrix/client", user=None, expect=(200, 404)),
        Example("GET", "/.well-known/matrix/support", user=None, expect=(200, 404)),
        Example("GET", V1 + "/auth_metadata", user=None, expect=(200, 404)),
        Example("GET", V3 + "/login", user=None),
        Example("GET", V3 + "/register/available", user=None, query={"username": lambda c: c.localpart("alice")}),
        Example("GET", V1 + "/register/m.login.registration_token/validity", user=None,
                query={"token": "nonsense"}, expect=(200, 403)),

        # -- accounts -------------------------------------------------------------
        *_register("alice"), *_register("bob"), *_register("carol"),
        Example("GET", V3 + "/register/available", user=None, expect=400, errcode="M_USER_IN_USE",
                query={"username": lambda c: c.localpart("alice")}),
        Example("POST", V3 + "/register", user=None, expect=400, errcode="M_USER_IN_USE",
                body=lambda c: {"username": c.localpart("alice"), "password": PASSWORD,
                                "auth": {"type": "m.login.dummy"}}),
        Example("POST", V3 + "/register", user=None, expect=400, errcode="M_NOT_JSON", body=RawBody(b"{not json")),
        Example("POST", V3 + "/login", user=None, body=_password_login("alice"), keep=_keep_login("alice2")),
        Example("POST", V3 + "/login", user=None, expect=403, errcode="M_FORBIDDEN",
                body=_password_login("alice", "wrong password")),
        Example("POST", V3 + "/login", user=None, expect=400, body={"type": "org.example.unknown"}),
        Example("GET", V3 + "/account/whoami"),
        Example("GET", V3 + "/capabilities"),
        Example("POST", V3 + "/refresh", user=None, body={"refresh_token": "nonsense"}, expect=(401,)),
        Example("POST", V3 + "/login", user=None, body=lambda c: {**_password_login("alice")(c), "refresh_token": True},
                keep=_keep("refreshToken", "refresh_token")),
        Example("POST", V3 + "/refresh", user=None, body=lambda c: {"refresh_token": c["refreshToken"]}),
        Example("POST", V3 + "/refresh", user=None, body={}, expect=400, errcode="M_MISSING_PARAM"),
        Example("POST", V3 + "/register/email/requestToken", user=None, expect=403, errcode="M_THREEPID_DENIED",
                body={"client_secret": "contract", "email": "alice@example.org", "send_attempt": 1}),
        Example("POST", V3 + "/register/msisdn/requestToken", user=None, expect=403, errcode="M_THREEPID_DENIED",
                body={"client_secret": "contract", "country": "GB", "phone_number": "07700900001",
                      "send_attempt": 1}),
        Example("POST", V3 + "/account/password/email/requestToken", user=None, expect=403,
                errcode="M_THREEPID_DENIED",
                body={"client_secret": "contract", "email": "alice@example.org", "send_attempt": 1}),
        Example("POST", V3 + "/account/password/msisdn/requestToken", user=None, expect=403,
                errcode="M_THREEPID_DENIED",
                body={"client_secret": "contract", "country": "GB", "phone_number": "07700900001",
                      "send_attempt": 1}),

        # -- profiles -------------------------------------------------------------
        Example("PUT", V3 + "/profile/{userId}/{keyName}", path_values={"keyName": "displayname"},
                body={"displayname": "Alice"}),
        Example("GET", V3 + "/profile/{userId}/{keyName}", path_values={"keyName": "displayname"}),
        Example("GET", V3 + "/profile/{userId}"),
        Example("PUT", V3 + "/profile/{userId}/{keyName}", path_values={"keyName": "avatar_url"},
                body={"avatar_url": "mxc://example.org/contract"}),
        Example("DELETE", V3 + "/profile/{userId}/{keyName}", path_values={"keyName": "avatar_url"}),
        Example("GET", V3 + "/profile/{userId}", expect=404, errcode="M_NOT_FOUND",
                path_values={"userId": lambda c: c.user_id("nobody")}),
        Example("PUT", V3 + "/profile/{userId}/{keyName}", path_values={"keyName": "displayname"},
                expect=403, user="bob", body={"displayname": "Not Alice"}),

        # -- filters --------------------------------------------------------------
        Example("POST", V3 + "/user/{userId}/filter", body={"room": {"timeline": {"limit": 10}}},
                keep=_keep("filterId", "filter_id")),
        Example("GET", V3 + "/user/{userId}/filter/{filterId}"),
        Example("GET", V3 + "/user/{userId}/filter/{filterId}", path_values={"filterId": "999999"},
                expect=404, errcode="M_NOT_FOUND"),
        Example("POST", V3 + "/user/{userId}/filter", expect=400, body={"room": {"timeline": {"limit": "ten"}}}),

        # -- rooms and events -----------------------------------------------------
        Example("POST", V3 + "/createRoom", keep=_keep("roomId", "room_id"),
                body={"preset": "public_chat", "name": "Contract", "topic": "Where the spec is checked"}),
        Example("POST", V3 + "/createRoom", expect=400, body={"preset": "no_such_preset"}),
        Example("POST", V3 + "/createRoom", keep=_keep("knockRoomId", "room_id"),
                body={"preset": "private_chat", "name": "Knock here",
                      "initial_state": [{"type": "m.room.join_rules", "state_key": "",
                                         "content": {"join_rule": "knock"}}]}),
        Example("PUT", room + "/send/{eventType}/{txnId}", path_values={"eventType": "m.room.message"},
                body=_message("hello from the contract test"), keep=_keep("eventId", "event_id")),
        Example("PUT", room + "/send/{eventType}/{txnId}", path_values={"eventType": "m.room.message"},
                body=_message("this one is redacted"), keep=_keep("redactedEventId", "event_id")),
        Example("PUT", room + "/send/{eventType}/{txnId}", path_values={"eventType": "m.room.message"},
                user="carol", expect=403, errcode="M_FORBIDDEN", body=_message("not joined")),
        Example("PUT", room + "/send/{eventType}/{txnId}", path_values={"eventType": "m.room.message"},
                expect=400, errcode="M_NOT_JSON", body=RawBody(b"not json")),
        Example("PUT", room + "/state/{eventType}/{stateKey}",
                path_values={"eventType": "m.room.topic", "stateKey": ""}, body={"topic": "A new topic"}),
        Example("GET", room + "/state/{eventType}/{stateKey}",
                path_values={"eventType": "m.room.topic", "stateKey": ""}),
        Example("GET", room + "/state/{eventType}/{stateKey}", expect=404, errcode="M_NOT_FOUND",
                path_values={"eventType": "org.example.none", "stateKey": ""}),
        Example("GET", room + "/state"),
        Example("GET", room + "/state", user="carol", expect=403, errcode="M_FORBIDDEN"),
        Example("POST", room + "/invite", body=lambda c: {"user_id": c.user_id("bob")}),
        Example("POST", room + "/join", user="bob", body={}),
        Example("POST", V3 + "/join/{roomIdOrAlias}", user="carol", body={},
                path_values={"roomIdOrAlias": lambda c: c["roomId"]}),
        Example("POST", V3 + "/join/{roomIdOrAlias}", user="carol", body={}, expect=404,
                path_values={"roomIdOrAlias": lambda c: f"#nowhere_{c.run}:{c.server_name}"}),
        Example("POST", V3 + "/knock/{roomIdOrAlias}", user="bob", body={"reason": "let me in"},
                path_values={"roomIdOrAlias": lambda c: c["knockRoomId"]}),
        Example("PUT", room + "/send/{eventType}/{txnId}", path_values={"eventType": "m.room.message"},
                user="bob", body=_message("hello from bob"), keep=_keep("bobEventId", "event_id")),
        Example("GET", room + "/members"),
        Example("GET", room + "/members", query={"membership": "join"}),
        Example("GET", room + "/joined_members"),
        Example("GET", room + "/messages", query={"dir": "b", "limit": "10"}),
        Example("GET", room + "/messages", query={"dir": "sideways"}, expect=400),
        Example("GET", room + "/context/{eventId}", query={"limit": "5"}),
        Example("GET", room + "/context/{eventId}", expect=404, path_values={"eventId": "$nosuchevent"}),
        Example("GET", room + "/event/{eventId}"),
        Example("GET", V3 + "/events/{eventId}"),
        Example("GET", V3 + "/events/{eventId}", expect=404, errcode="M_NOT_FOUND",
                path_values={"eventId": "$nosuchevent"}),
        Example("GET", room + "/event/{eventId}", expect=404, errcode="M_NOT_FOUND",
                path_values={"eventId": "$nosuchevent"}),
        Example("GET", V3 + "/joined_rooms"),
        Example("GET", V3 + "/sync", query={"timeout": "0"}, keep=_keep("since", "next_batch")),
        Example("GET", V3 + "/sync", query={"timeout": "0", "since": lambda c: c["since"],
                                            "filter": lambda c: c["filterId"]}),
        # Bob knocked on knockRoomId above: it shows under rooms.knock.
        Example("GET", V3 + "/sync", query={"timeout": "0", "filter": json.dumps({"room": {"timeline": {"limit": 1}}})},
                user="bob", keep=_expect_knock),
        Example("GET", V3 + "/sync", query={"timeout": "0", "filter": "{not json"}, expect=400),
        Example("PUT", room + "/redact/{eventId}/{txnId}", body={"reason": "contract"},
                path_values={"eventId": lambda c: c["redactedEventId"]}),
        # A thread reply, an edit and a reaction to alice's first message: the
        # answers below carry bundled aggregations.
        Example("PUT", room + "/send/{eventType}/{txnId}", path_values={"eventType": "m.room.message"},
                body=lambda c: {**_message("in a thread"),
                                "m.relates_to": {"rel_type": "m.thread", "event_id": c["eventId"]}},
                keep=_keep("threadReplyId", "event_id")),
        Example("PUT", room + "/send/{eventType}/{txnId}", path_values={"eventType": "m.room.message"},
                body=lambda c: {**_message("* hello, edited"), "m.new_content": _message("hello, edited"),
                                "m.relates_to": {"rel_type": "m.replace", "event_id": c["eventId"]}}),
        Example("PUT", room + "/send/{eventType}/{txnId}", path_values={"eventType": "m.reaction"},
                body=lambda c: {"m.relates_to": {"rel_type": "m.annotation", "event_id": c["eventId"],
                                                 "key": "+1"}}),
        Example("GET", V1 + "/rooms/{roomId}/relations/{eventId}"),
        Example("GET", V1 + "/rooms/{roomId}/relations/{eventId}", query={"dir": "f", "limit": "1",
                                                                          "recurse": "true"}),
        Example("GET", V1 + "/rooms/{roomId}/relations/{eventId}", expect=404, errcode="M_NOT_FOUND",
                path_values={"eventId": "$nosuchevent"}),
        Example("GET", V1 + "/rooms/{roomId}/relations/{eventId}/{relType}", path_values={"relType": "m.thread"}),
        Example("GET", V1 + "/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}",
                path_values={"relType": "m.annotation", "eventType": "m.reaction"}),
        Example("GET", room + "/event/{eventId}", path_values={"eventId": lambda c: c["threadReplyId"]},
                needs=("GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}",)),
        Example("GET", V1 + "/rooms/{roomId}/threads"),
        Example("GET", V1 + "/rooms/{roomId}/threads", query={"include": "participated", "limit": "1"}),
        Example("GET", V1 + "/rooms/{roomId}/threads", query={"include": "nobody"}, expect=400),
        Example("GET", V1 + "/rooms/{roomId}/threads", user="carol", expect=403, errcode="M_FORBIDDEN",
                path_values={"roomId": lambda c: c["knockRoomId"]}),
        Example("GET", V1 + "/rooms/{roomId}/hierarchy"),
        Example("GET", V1 + "/rooms/{roomId}/timestamp_to_event", query={"ts": "0", "dir": "f"}),
        Example("GET", V1 + "/rooms/{roomId}/timestamp_to_event", query={"ts": "0", "dir": "b"}, expect=404,
                errcode="M_NOT_FOUND"),
        Example("GET", V1 + "/room_summary/{roomIdOrAlias}", path_values={"roomIdOrAlias": lambda c: c["roomId"]}),
        Example("GET", room + "/initialSync"),
        Example("GET", V3 + "/events", query={"timeout": "0", "room_id": lambda c: c["roomId"]}),
        Example("GET", V3 + "/events", query={"timeout": "0", "from": "nonsense"}, expect=400,
                errcode="M_INVALID_PARAM"),
        Example("GET", V3 + "/initialSync", query={"limit": "2"}),
        Example("POST", V3 + "/search", body={"search_categories": {"room_events": {"search_term": "hello"}}}),
        Example("POST", V3 + "/search", body={"search_categories": {"room_events": {
            "search_term": "hello", "order_by": "recent", "keys": ["content.body"],
            "filter": {"limit": 1}, "event_context": {"before_limit": 1, "after_limit": 1, "include_profile": True},
            "groupings": {"group_by": [{"key": "room_id"}, {"key": "sender"}]}, "include_state": True}}}),
        Example("POST", V3 + "/search", body={"search_categories": {"room_events": {"search_term": "x",
                                                                                   "order_by": "sideways"}}},
                expect=400),

        # -- ephemeral: typing, receipts, read markers, presence, to-device -------
        Example("PUT", room + "/typing/{userId}", body={"typing": True, "timeout": 30000}),
        Example("PUT", room + "/typing/{userId}", body={"typing": False}),
        Example("PUT", room + "/typing/{userId}", user="bob", expect=403, body={"typing": True, "timeout": 1000}),
        Example("POST", room + "/receipt/{receiptType}/{eventId}", path_values={"receiptType": "m.read"}, body={},
                user="bob"),
        Example("POST", room + "/receipt/{receiptType}/{eventId}", path_values={"receiptType": "m.read.private"},
                body={}),
        Example("POST", room + "/receipt/{receiptType}/{eventId}", path_values={"receiptType": "org.example.x"},
                body={}, expect=400),
        Example("POST", room + "/read_markers",
                body=lambda c: {"m.fully_read": c["bobEventId"], "m.read": c["bobEventId"]}),
        Example("PUT", V3 + "/presence/{userId}/status", body={"presence": "online", "status_msg": "checking"}),
        Example("GET", V3 + "/presence/{userId}/status"),
        Example("PUT", V3 + "/sendToDevice/{eventType}/{txnId}", path_values={"eventType": "org.example.ping"},
                body=lambda c: {"messages": {c.user_id("bob"): {"*": {"ping": 1}}}}),

        # -- account data and tags ------------------------------------------------
        Example("PUT", V3 + "/user/{userId}/account_data/{type}", path_values={"type": "org.example.contract"},
                body={"answer": 42}),
        Example("GET", V3 + "/user/{userId}/account_data/{type}", path_values={"type": "org.example.contract"}),
        Example("GET", V3 + "/user/{userId}/account_data/{type}", path_values={"type": "org.example.none"},
                expect=404, errcode="M_NOT_FOUND"),
        Example("PUT", V3 + "/user/{userId}/rooms/{roomId}/account_data/{type}",
                path_values={"type": "org.example.contract"}, body={"colour": "green"}),
        Example("GET", V3 + "/user/{userId}/rooms/{roomId}/account_data/{type}",
                path_values={"type": "org.example.contract"}),
        Example("PUT", V3 + "/user/{userId}/account_data/{type}", path_values={"type": "org.example.contract"},
                user="bob", expect=403, body={"answer": 43}),
        Example("PUT", V3 + "/user/{userId}/rooms/{roomId}/tags/{tag}", path_values={"tag": "u.work"},
                body={"order": 0.5}),
        Example("GET", V3 + "/user/{userId}/rooms/{roomId}/tags"),
        Example("DELETE", V3 + "/user/{userId}/rooms/{roomId}/tags/{tag}", path_values={"tag": "u.work"}),

        # -- push rules and pushers -----------------------------------------------
        Example("GET", V3 + "/pushrules/"),
        Example("GET", V3 + "/pushrules/global/"),
        Example("PUT", V3 + "/pushrules/global/{kind}/{ruleId}", path_values={"kind": "override", "ruleId": PUSH_RULE},
                body={"actions": ["notify"],
                      "conditions": [{"kind": "event_match", "key": "content.body", "pattern": "contract"}]}),
        Example("GET", V3 + "/pushrules/global/{kind}/{ruleId}", path_values={"kind": "override", "ruleId": PUSH_RULE}),
        Example("GET", V3 + "/pushrules/global/{kind}/{ruleId}", expect=404, errcode="M_NOT_FOUND",
                path_values={"kind": "override", "ruleId": "org.example.none"}),
        Example("PUT", V3 + "/pushrules/global/{kind}/{ruleId}/enabled",
                path_values={"kind": "override", "ruleId": PUSH_RULE}, body={"enabled": False}),
        Example("GET", V3 + "/pushrules/global/{kind}/{ruleId}/enabled",
                path_values={"kind": "override", "ruleId": PUSH_RULE}),
        Example("PUT", V3 + "/pushrules/global/{kind}/{ruleId}/actions",
                path_values={"kind": "override", "ruleId": PUSH_RULE}, body={"actions": []}),
        Example("GET", V3 + "/pushrules/global/{kind}/{ruleId}/actions",
                path_values={"kind": "override", "ruleId": PUSH_RULE}),
        Example("DELETE", V3 + "/pushrules/global/{kind}/{ruleId}",
                path_values={"kind": "override", "ruleId": PUSH_RULE}),
        Example("GET", V3 + "/pushers"),
        Example("POST", V3 + "/pushers/set",
                body={"kind": "http", "app_id": "org.example.contract", "pushkey": "contract-key",
                      "app_display_name": "Contract", "device_display_name": "Contract device",
                      "lang": "en", "data": {"url": "https://push.example.org/_matrix/push/v1/notify"}}),
        Example("GET", V3 + "/notifications"),
        Example("GET", V3 + "/notifications", user="bob", query={"limit": "2"}),
        Example("GET", V3 + "/notifications", user="bob", query={"only": "highlight", "from": "999999999"}),
        Example("GET", V3 + "/notifications", query={"from": "not-a-token"}, expect=400, errcode="M_INVALID_PARAM"),
        Example("GET", V3 + "/notifications", query={"only": "everything"}, expect=400,
                errcode="M_INVALID_PARAM"),
        Example("GET", V3 + "/sync", user="bob", query={"timeout": "0", "filter": json.dumps(
            {"room": {"timeline": {"limit": 1, "unread_thread_notifications": True}}})}),

        # -- aliases and the room directory ---------------------------------------
        Example("PUT", V3 + "/directory/room/{roomAlias}", path_values={"roomAlias": _alias},
                body=lambda c: {"room_id": c["roomId"]}),
        Example("PUT", V3 + "/directory/room/{roomAlias}", path_values={"roomAlias": _alias},
                body=lambda c: {"room_id": c["roomId"]}, expect=409),
        Example("GET", V3 + "/directory/room/{roomAlias}", path_values={"roomAlias": _alias},
                needs=("PUT /_matrix/client/v3/directory/room/{roomAlias}",)),
        Example("GET", V3 + "/directory/room/{roomAlias}", expect=404, errcode="M_NOT_FOUND",
                path_values={"roomAlias": lambda c: f"#nowhere_{c.run}:{c.server_name}"}),
        Example("GET", room + "/aliases"),
        Example("POST", V3 + "/join/{roomIdOrAlias}", user="bob", body={}, path_values={"roomIdOrAlias": _alias},
                needs=("PUT /_matrix/client/v3/directory/room/{roomAlias}",)),
        Example("DELETE", V3 + "/directory/room/{roomAlias}", path_values={"roomAlias": _alias},
                needs=("PUT /_matrix/client/v3/directory/room/{roomAlias}",)),
        Example("PUT", V3 + "/directory/list/room/{roomId}", body={"visibility": "public"}),
        Example("GET", V3 + "/directory/list/room/{roomId}", user=None),
        Example("GET", V3 + "/directory/list/room/{roomId}", user=None, expect=404, errcode="M_NOT_FOUND",
                path_values={"roomId": "!nosuchroom"}),
        Example("GET", V3 + "/publicRooms", user=None, query={"limit": "10"}),
        Example("POST", V3 + "/publicRooms", body={"limit": 10, "filter": {"generic_search_term": "Contract"}}),
        Example("POST", V3 + "/user_directory/search", body={"search_term": "bob", "limit": 5}),
        Example("POST", V3 + "/user_directory/search", body={"limit": 5}, expect=400, errcode="M_MISSING_PARAM"),

        # -- membership changes ---------------------------------------------------
        Example("POST", room + "/kick", body=lambda c: {"user_id": c.user_id("carol"), "reason": "contract"}),
        Example("POST", room + "/ban", body=lambda c: {"user_id": c.user_id("carol"), "reason": "contract"}),
        Example("POST", room + "/unban", body=lambda c: {"user_id": c.user_id("carol")}),
        Example("POST", room + "/kick", user="bob", expect=403, errcode="M_FORBIDDEN",
                body=lambda c: {"user_id": c.user_id("alice")}),
        Example("POST", room + "/leave", user="bob", body={}),
        Example("POST", room + "/forget", user="bob", body={}),
        Example("POST", room + "/upgrade", body={"new_version": "11"}, keep=_keep("upgradedRoomId", "replacement_room")),
        Example("POST", room + "/report/{eventId}", body={"reason": "contract"}),
        Example("POST", room + "/report/{eventId}", body={}, expect=404, errcode="M_NOT_FOUND",
                path_values={"eventId": "$nosuchevent"}),
        Example("POST", room + "/report", body={"reason": "contract"}),
        Example("POST", room + "/report", body={"reason": "contract"}, expect=404, errcode="M_NOT_FOUND",
                path_values={"roomId": lambda c: f"!nosuchroom:{c.server_name}"}),
        Example("POST", V3 + "/users/{userId}/report", path_values={"userId": lambda c: c.user_id("bob")},
                body={"reason": "contract"}),
        Example("POST", V3 + "/users/{userId}/report", path_values={"userId": lambda c: c.user_id("nobody")},
                body={"reason": "contract"}, expect=404, errcode="M_NOT_FOUND"),
        Example("GET", V1 + "/mutual_rooms", query={"user_id": lambda c: c.user_id("bob")}),
        Example("GET", V1 + "/mutual_rooms", expect=400, errcode="M_MISSING_PARAM"),
        Example("GET", V1 + "/mutual_rooms", query={"user_id": lambda c: c.user_id("alice")}, expect=400,
                errcode="M_INVALID_PARAM"),

        # -- odds and ends ---------------------------------------------------------
        Example("POST", V3 + "/user/{userId}/openid/request_token", body={}),
        Example("GET", V3 + "/voip/turnServer"),
        Example("GET", V3 + "/thirdparty/protocols"),
        Example("GET", V3 + "/thirdparty/protocol/{protocol}", path_values={"protocol": "irc"}, expect=404,
                errcode="M_NOT_FOUND"),
        Example("GET", V3 + "/thirdparty/location/{protocol}", path_values={"protocol": "irc"}),
        Example("GET", V3 + "/thirdparty/user/{protocol}", path_values={"protocol": "irc"}),
        Example("GET", V3 + "/thirdparty/location", query={"alias": "#freenode_#matrix:example.org"}),
        Example("GET", V3 + "/thirdparty/user", query={"userid": "@_irc_bob:example.org"}),
        Example("POST", V3 + "/user/{userId}/openid/request_token", body={}, expect=403, errcode="M_FORBIDDEN",
                path_values={"userId": lambda c: c.user_id("bob")}),
        Example("GET", V1 + "/media/config"),
        Example("GET", V3 + "/admin/whois/{userId}", expect=(200, 403)),
        Example("GET", V3 + "/admin/whois/{userId}", path_values={"userId": lambda c: c.user_id("bob")},
                expect=403, errcode="M_FORBIDDEN"),
        Example("GET", V3 + "/account/3pid"),
        Example("POST", V3 + "/account/3pid/email/requestToken", expect=400, errcode="M_THREEPID_MEDIUM_NOT_SUPPORTED",
                body={"client_secret": "contract", "email": "alice@example.org", "send_attempt": 1}),
        Example("POST", V3 + "/account/3pid/msisdn/requestToken", expect=400,
                errcode="M_THREEPID_MEDIUM_NOT_SUPPORTED",
                body={"client_secret": "contract", "country": "GB", "phone_number": "07700900001",
                      "send_attempt": 1}),
        Example("POST", V3 + "/account/3pid/add", body={"client_secret": "contract", "sid": "1"}, expect=401,
                keep=_keep_session),
        Example("POST", V3 + "/account/3pid/add", expect=400, errcode="M_THREEPID_AUTH_FAILED",
                body=lambda c: {"client_secret": "contract", "sid": "1", "auth": _password_auth("alice")(c)}),
        Example("POST", V3 + "/account/3pid/bind", expect=400, errcode="M_SERVER_NOT_TRUSTED",
                body={"client_secret": "contract", "id_server": "id.example.org", "id_access_token": "t",
                      "sid": "1"}),
        Example("POST", V3 + "/account/3pid/unbind", body={"medium": "email", "address": "alice@example.org"}),
        Example("POST", V3 + "/account/3pid/delete", body={"medium": "email", "address": "alice@example.org"}),
        Example("POST", V3 + "/account/3pid", expect=403, errcode="M_THREEPID_AUTH_FAILED",
                body={"three_pid_creds": {"client_secret": "contract", "sid": "1"}}),

        # -- end-to-end encryption keys --------------------------------------------
        Example("GET", V3 + "/room_keys/version", expect=404, errcode="M_NOT_FOUND"),
        Example("POST", V3 + "/keys/query", body=lambda c: {"device_keys": {c.user_id("bob"): []}}),
        Example("POST", V3 + "/keys/upload", body={}),
        Example("POST", V3 + "/keys/claim", body={"one_time_keys": {}}),
        Example("GET", V3 + "/keys/changes", query={"from": lambda c: c["since"], "to": lambda c: c["since"]}),
        Example("POST", V3 + "/keys/device_signing/upload", body=lambda c: {"master_key": {
            "user_id": c.user_id("alice"), "usage": ["master"], "keys": {"ed25519:contractkey": "contractkey"}}}),
        Example("POST", V3 + "/keys/signatures/upload", body={}),
        Example("POST", V3 + "/room_keys/version", body={"algorithm": BACKUP_ALGORITHM, "auth_data": {"public_key": "k"}},
                keep=_keep_backup_version("backup_version")),
        Example("GET", V3 + "/room_keys/version/{version}", path_values={"version": lambda c: c["backup_version"]}),
        Example("GET", V3 + "/room_keys/version/{version}", path_values={"version": "999"}, expect=404,
                errcode="M_NOT_FOUND"),
        Example("PUT", V3 + "/room_keys/version/{version}", path_values={"version": lambda c: c["backup_version"]},
                body={"algorithm": BACKUP_ALGORITHM, "auth_data": {"public_key": "k2"}}),
        Example("PUT", V3 + "/room_keys/version/{version}", path_values={"version": lambda c: c["backup_version"]},
                body={"algorithm": "org.example.other", "auth_data": {}}, expect=400, errcode="M_INVALID_PARAM"),
        Example("PUT", V3 + "/room_keys/keys", query={"version": lambda c: c["backup_version"]},
                body={"rooms": {"!backup:example.org": {"sessions": {"s1": BACKED_UP_KEY}}}}),
        Example("PUT", V3 + "/room_keys/keys/{roomId}", path_values={"roomId": "!backup:example.org"},
                query={"version": lambda c: c["backup_version"]}, body={"sessions": {"s2": BACKED_UP_KEY}}),
        Example("PUT", V3 + "/room_keys/keys/{roomId}/{sessionId}",
                path_values={"roomId": "!backup:example.org", "sessionId": "s3"},
                query={"version": lambda c: c["backup_version"]}, body=BACKED_UP_KEY),
        Example("PUT", V3 + "/room_keys/keys/{roomId}/{sessionId}",
                path_values={"roomId": "!backup:example.org", "sessionId": "s3"},
                query={"version": "999"}, body=BACKED_UP_KEY, expect=404, errcode="M_NOT_FOUND"),
        Example("GET", V3 + "/room_keys/keys", query={"version": lambda c: c["backup_version"]}),
        Example("GET", V3 + "/room_keys/keys/{roomId}", path_values={"roomId": "!backup:example.org"},
                query={"version": lambda c: c["backup_version"]}),
        Example("GET", V3 + "/room_keys/keys/{roomId}/{sessionId}",
                path_values={"roomId": "!backup:example.org", "sessionId": "s1"},
                query={"version": lambda c: c["backup_version"]}),
        Example("GET", V3 + "/room_keys/keys/{roomId}/{sessionId}",
                path_values={"roomId": "!backup:example.org", "sessionId": "nosuch"},
                query={"version": lambda c: c["backup_version"]}, expect=404, errcode="M_NOT_FOUND"),
        Example("DELETE", V3 + "/room_keys/keys/{roomId}/{sessionId}",
                path_values={"roomId": "!backup:example.org", "sessionId": "s3"},
                query={"version": lambda c: c["backup_version"]}),
        Example("DELETE", V3 + "/room_keys/keys/{roomId}", path_values={"roomId": "!backup:example.org"},
                query={"version": lambda c: c["backup_version"]}),
        Example("DELETE", V3 + "/room_keys/keys", query={"version": lambda c: c["backup_version"]}),
        Example("POST", V3 + "/room_keys/version", body={"algorithm": BACKUP_ALGORITHM, "auth_data": {}},
                keep=_keep_backup_version("backup_version2")),
        Example("PUT", V3 + "/room_keys/keys", query={"version": lambda c: c["backup_version"]},
                body={"rooms": {}}, expect=403, errcode="M_WRONG_ROOM_KEYS_VERSION"),
        Example("DELETE", V3 + "/room_keys/version/{version}", path_values={"version": lambda c: c["backup_version2"]}),
        Example("DELETE", V3 + "/room_keys/version/{version}", path_values={"version": lambda c: c["backup_version2"]},
                expect=404, errcode="M_NOT_FOUND"),

        # -- devices, passwords, sessions ending -----------------------------------
        Example("GET", V3 + "/devices"),
        Example("GET", V3 + "/devices/{deviceId}", path_values={"deviceId": lambda c: c["alice_device"]}),
        Example("GET", V3 + "/devices/{deviceId}", path_values={"deviceId": "NOSUCHDEVICE"},
                expect=404, errcode="M_NOT_FOUND"),
        Example("PUT", V3 + "/devices/{deviceId}", path_values={"deviceId": lambda c: c["alice_device"]},
                body={"display_name": "Alice's renamed device"}),
        Example("DELETE", V3 + "/devices/{deviceId}", path_values={"deviceId": lambda c: c["alice2_device"]},
                body={}, expect=401, keep=_keep_session),
        Example("DELETE", V3 + "/devices/{deviceId}", path_values={"deviceId": lambda c: c["alice2_device"]},
                body={"auth": _password_auth("alice", "not the password")}, expect=401, errcode="M_FORBIDDEN"),
        Example("DELETE", V3 + "/devices/{deviceId}", path_values={"deviceId": lambda c: c["alice2_device"]},
                body={"auth": _password_auth("alice")}),
        Example("PUT", V3 + "/devices/{deviceId}", path_values={"deviceId": "NOSUCHDEVICE"},
                body={"display_name": "x"}, expect=404, errcode="M_NOT_FOUND"),
        Example("POST", V1 + "/login/get_token", body={}, expect=401, keep=_keep_session),
        Example("POST", V1 + "/login/get_token", body=lambda c: {"auth": _password_auth("alice")(c)},
                keep=_keep("loginToken", "login_token")),
        Example("POST", V3 + "/login", user=None, body=lambda c: {"type": "m.login.token", "token": c["loginToken"]}),
        Example("POST", V3 + "/login", user=None, expect=403, errcode="M_FORBIDDEN",
                body=lambda c: {"type": "m.login.token", "token": c["loginToken"]}),
        Example("POST", V3 + "/login", user=None, body=_password_login("alice"), keep=_keep_login("alice3")),
        Example("POST", V3 + "/delete_devices", body=lambda c: {"devices": [c["alice3_device"]]}, expect=401,
                keep=_keep_session),
        Example("POST", V3 + "/delete_devices",
                body=lambda c: {"devices": [c["alice3_device"]], "auth": _password_auth("alice")(c)}),
        Example("POST", V3 + "/account/password", user="carol", body={"new_password": NEW_PASSWORD},
                expect=401, keep=_keep_session),
        Example("POST", V3 + "/account/password", user="carol",
                body=lambda c: {"new_password": NEW_PASSWORD, "logout_devices": False,
                                "auth": _password_auth("carol")(c)}),
        # The content repository (media bytes are not JSON: downloads are exercised by their errors).
        Example("POST", MEDIA_V3 + "/upload", body=RawBody(b"contract bytes"), query={"filename": "c.txt"},
                keep=_keep_media("uploadedMediaId")),
        Example("GET", V1 + "/media/config"),
        Example("GET", MEDIA_V3 + "/config"),
        Example("POST", MEDIA_V1 + "/create", body={}, keep=_keep_media("createdMediaId")),
        Example("PUT", MEDIA_V3 + "/upload/{serverName}/{mediaId}", body=RawBody(b"later"),
                path_values={"serverName": _server_name, "mediaId": lambda c: c["createdMediaId"]}),
        Example("PUT", MEDIA_V3 + "/upload/{serverName}/{mediaId}", body=RawBody(b"again"),
                path_values={"serverName": _server_name, "mediaId": lambda c: c["createdMediaId"]},
                expect=409, errcode="M_CANNOT_OVERWRITE_MEDIA"),
        Example("GET", V1 + "/media/thumbnail/{serverName}/{mediaId}", query={"width": 32, "height": 32},
                path_values={"serverName": _server_name, "mediaId": lambda c: c["uploadedMediaId"]},
                expect=400, errcode="M_UNKNOWN"),
        *[Example("GET", path, user=user, query=query, expect=404, errcode="M_NOT_FOUND",
                  path_values={"serverName": _server_name, "mediaId": "noSuchMedia", "fileName": "f.txt"})
          for path, user, query in [
              (V1 + "/media/download/{serverName}/{mediaId}", "alice", {}),
              (V1 + "/media/download/{serverName}/{mediaId}/{fileName}", "alice", {}),
              (V1 + "/media/thumbnail/{serverName}/{mediaId}", "alice", {"width": 32, "height": 32}),
              (MEDIA_V3 + "/download/{serverName}/{mediaId}", None, {}),
              (MEDIA_V3 + "/download/{serverName}/{mediaId}/{fileName}", None, {}),
              (MEDIA_V3 + "/thumbnail/{serverName}/{mediaId}", None, {"width": 32, "height": 32}),
          ]],
        # Previews of loopback addresses are refused.
        Example("GET", V1 + "/media/preview_url", query={"url": "http://127.0.0.1/"}, expect=403,
                errcode="M_FORBIDDEN"),
        Example("GET", MEDIA_V3 + "/preview_url", query={"url": "http://localhost/"}, expect=403,
                errcode="M_FORBIDDEN"),
        Example("POST", V3 + "/login", user=None, body=_password_login("bob"), keep=_keep_login("bob2")),
        Example("POST", V3 + "/logout", user="bob2"),
        Example("POST", V3 + "/logout/all", user="bob"),
        Example("GET", V3 + "/account/whoami", user="bob", expect=401, errcode="M_UNKNOWN_TOKEN",
                token_failure=True),
        Example("POST", V3 + "/account/deactivate", user="carol", body={}, expect=401, keep=_keep_session),
        Example("POST", V3 + "/account/deactivate", user="carol",
                body=lambda c: {"auth": _password_auth("carol", NEW_PASSWORD)(c)}),
    ]
