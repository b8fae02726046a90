"""SRV lookups with dnspython against a local DNS server (UDP on loopback)
that answers from a table, so no real DNS is needed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import dns.asyncresolver
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from federationapi.client import DnsSrvLookup, SrvTarget

RECORDS = {
    "_matrix-fed._tcp.a.test.": ["10 0 8448 low.a.test.", "5 0 443 first.a.test."],
    "_matrix-fed._tcp.none.test.": ["0 0 0 ."],
}


class DnsServer(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text()
        if name in RECORDS and question.rdtype == dns.rdatatype.SRV:
            response.answer.append(dns.rrset.from_text_list(name, 60, "IN", "SRV", RECORDS[name]))
        else:
            response.set_rcode(dns.rcode.NXDOMAIN)
        self.transport.sendto(response.to_wire(), addr)  # type: ignore[attr-defined]


@pytest.fixture
async def lookup() -> AsyncIterator[DnsSrvLookup]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(DnsServer, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = port
    resolver.lifetime = 5
    try:
        yield DnsSrvLookup(resolver)
    finally:
        transport.close()


async def test_srv_targets_come_lowest_priority_first(lookup: DnsSrvLookup) -> None:
    assert await lookup("_matrix-fed._tcp.a.test") == [SrvTarget("first.a.test", 443), SrvTarget("low.a.test", 8448)]


async def test_no_record_and_the_dot_target_mean_none(lookup: DnsSrvLookup) -> None:
    assert await lookup("_matrix-fed._tcp.missing.test") == []
    assert await lookup("_matrix-fed._tcp.none.test") == []
