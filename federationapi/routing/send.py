"""PUT /_matrix/federation/v1/send/{txnId}: another server pushes PDUs and
EDUs to us (server-server-api "Transactions", transactions.yaml). The
request is authenticated already (``request.ctx.origin``); the work is
``federationapi.internal.inbound.transaction``."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from common.http import json_response, parse_json_body
from federationapi.internal.inbound.transaction import TransactionHandler

V1 = "/_matrix/federation/v1"


def add_send_routes(blueprint: Blueprint, handler: TransactionHandler) -> None:
    async def send_transaction(request: Request, txn_id: str) -> HTTPResponse:
        body = parse_json_body(request)
        return json_response(await handler.handle(request.ctx.origin, txn_id, body))

    blueprint.add_route(send_transaction, f"{V1}/send/<txn_id>", methods=["PUT"], name="send", unquote=True)
