"""UDP probes: a real request of the service usually found on the port, so that
a listening service answers (most ignore an empty datagram).

The requests are built with scapy's layers where scapy has them; each asks for
something harmless and public (a root name server list, the time, sysDescr, an
IKE proposal).  Silence stays ``open|filtered``: UDP cannot tell those apart.
Services that answer from another port (TFTP) cannot be matched to a probe, so
they get no special request.
"""

from __future__ import annotations

import functools
import secrets
import struct
from collections.abc import Callable
from ipaddress import IPv4Address

from agent.checksum import finish, word_sum

TTL = 64


def _dns() -> bytes:
    from scapy.layers.dns import DNS, DNSQR

    query = DNS(id=secrets.randbits(16), rd=1, qd=DNSQR(qname=".", qtype="NS"))

    return bytes(query)


def _mdns() -> bytes:
    from scapy.layers.dns import DNS, DNSQR

    # Ask for a unicast reply (RFC 6762, 5.4): a probe is not a multicast peer.
    question = DNSQR(
        qname="_services._dns-sd._udp.local", qtype="PTR", unicastresponse=1
    )

    return bytes(DNS(id=0, qd=question))


def _ntp() -> bytes:
    from scapy.layers.ntp import NTP

    return bytes(NTP(version=4, mode=3))  # a client request


def _netbios() -> bytes:
    from scapy.layers.netbios import NBNSHeader, NBNSNodeStatusRequest

    return bytes(NBNSHeader(NAME_TRN_ID=secrets.randbits(16)) / NBNSNodeStatusRequest())


def _snmp() -> bytes:
    from scapy.asn1.asn1 import ASN1_OID
    from scapy.layers.snmp import SNMP, SNMPget, SNMPvarbind

    sys_descr = SNMPvarbind(oid=ASN1_OID("1.3.6.1.2.1.1.1.0"))
    request = SNMPget(id=secrets.randbits(16), varbindlist=[sys_descr])

    return bytes(SNMP(version=1, community="public", PDU=request))  # v2c


def _ike() -> bytes:
    from scapy.layers.isakmp import (
        ISAKMP,
        ISAKMP_payload_Proposal,
        ISAKMP_payload_SA,
        ISAKMP_payload_Transform,
    )

    transform = ISAKMP_payload_Transform(
        transform_count=1,
        transforms=[
            ("Encryption", "AES-CBC"),
            ("KeyLength", 128),
            ("Hash", "SHA"),
            ("GroupDesc", "2048MODPgr"),
            ("Authentication", "PSK"),
            ("LifeType", "Seconds"),
            ("LifeDuration", 86400),
        ],
    )
    proposal = ISAKMP_payload_Proposal(trans_nb=1, trans=transform)
    header = ISAKMP(
        init_cookie=secrets.token_bytes(8),
        exch_type="identity protection",
        next_payload="SA",
    )

    return bytes(header / ISAKMP_payload_SA(prop=proposal))


def _ike_nat_t() -> bytes:
    return bytes(4) + _ike()  # the non-ESP marker (RFC 3948, 2.2)


def _radius() -> bytes:
    from scapy.layers.radius import Radius, RadiusAttribute

    user = RadiusAttribute(type=1, value=b"segscan-probe")
    request = Radius(code=1, id=1, authenticator=secrets.token_bytes(16))

    return bytes(request / user)


def _portmap() -> bytes:
    # ONC RPC call (RFC 5531): portmapper v2, NULL procedure, no credentials.
    return struct.pack("!10I", secrets.randbits(32), 0, 2, 100000, 2, 0, 0, 0, 0, 0)


def _text(text: str) -> Callable[[], bytes]:
    return lambda: text.replace("\n", "\r\n").encode()


_BUILDERS: dict[int, Callable[[], bytes]] = {
    53: _dns,
    111: _portmap,
    123: _ntp,
    137: _netbios,
    161: _snmp,
    500: _ike,
    1812: _radius,
    1900: _text(
        "M-SEARCH * HTTP/1.1\nHOST: 239.255.255.250:1900\n"
        'MAN: "ssdp:discover"\nMX: 1\nST: ssdp:all\n\n'
    ),
    4500: _ike_nat_t,
    5060: _text(
        "OPTIONS sip:segscan@invalid SIP/2.0\n"
        "Via: SIP/2.0/UDP invalid;branch=z9hG4bK1\nMax-Forwards: 70\n"
        "To: <sip:segscan@invalid>\nFrom: <sip:segscan@invalid>;tag=1\n"
        "Call-ID: segscan-probe\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n"
    ),
    5353: _mdns,
    11211: lambda: b"\x00\x01\x00\x00\x00\x01\x00\x00version\r\n",
}


@functools.cache
def payload(port: int) -> bytes:
    """The request sent to UDP ``port`` (empty for ports with no known service)."""
    builder = _BUILDERS.get(port)

    return builder() if builder else b""


def known_ports() -> tuple[int, ...]:
    """Ports with a protocol-specific request."""
    return tuple(sorted(_BUILDERS))


def udp_probe(
    macs: tuple[bytes, bytes],
    src: IPv4Address,
    dst: IPv4Address,
    ports: tuple[int, int],
    ip_id: int,
) -> bytes:
    """One Ethernet frame carrying ``payload(dport)`` from ``src`` to ``dst``.

    ``macs`` is (source, destination), ``ports`` (source, destination); the IP
    ID carries the probe's cookie so an ICMP error quoting it can be checked.
    """
    sport, dport = ports
    data = payload(dport)
    length = 8 + len(data)
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + length,
        ip_id,
        0x4000,
        TTL,
        17,
        0,
        src.packed,
        dst.packed,
    )
    ip = ip[:10] + finish(word_sum(ip)).to_bytes(2, "big") + ip[12:]
    pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, 17, length)
    udp = struct.pack("!HHHH", sport, dport, length, 0) + data
    checksum = finish(word_sum(pseudo) + word_sum(udp)) or 0xFFFF  # RFC 768

    udp = udp[:6] + checksum.to_bytes(2, "big") + udp[8:]

    return macs[1] + macs[0] + b"\x08\x00" + ip + udp
