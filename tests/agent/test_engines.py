"""Engine choice: what an assignment's scan kind gets on this build."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
import structlog

from agent import syn
from agent.connect import ConnectEngine
from agent.engine import ScanRequest
from agent.engines import choose_engine
from agent.errors import ScanError
from agent.syn import SynEngine
from protocol.messages import ScanKind


@pytest.mark.parametrize("raw", [True, False])
def test_connect_gets_the_connect_engine_whatever_the_privilege(
    monkeypatch: pytest.MonkeyPatch, raw: bool
) -> None:
    monkeypatch.setattr(syn, "raw_sockets_available", lambda: raw)

    assert isinstance(choose_engine(ScanKind.CONNECT), ConnectEngine)


@pytest.mark.parametrize("kind", [ScanKind.AUTO, ScanKind.SYN])
def test_auto_and_syn_get_the_syn_engine_where_raw_sockets_may_be_opened(
    monkeypatch: pytest.MonkeyPatch, kind: ScanKind
) -> None:
    monkeypatch.setattr(syn, "raw_sockets_available", lambda: True)

    assert isinstance(choose_engine(kind), SynEngine)


def test_auto_without_raw_socket_privilege_falls_back_to_connect_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(syn, "raw_sockets_available", lambda: False)

    with structlog.testing.capture_logs() as logs:
        engine = choose_engine(ScanKind.AUTO)

    assert isinstance(engine, ConnectEngine)
    assert [e["event"] for e in logs] == ["engine_fallback"]
    assert "CAP_NET_RAW" in logs[0]["reason"]


def test_syn_without_raw_socket_privilege_is_refused_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(syn, "raw_sockets_available", lambda: False)

    with pytest.raises(ScanError, match="CAP_NET_RAW") as caught:
        choose_engine(ScanKind.SYN)

    assert caught.value.subject == "syn"


def test_auto_scans_this_hosts_own_addresses_with_connect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Frames from a packet socket never reach the local stack: connect instead."""
    monkeypatch.setattr(syn, "raw_sockets_available", lambda: True)
    local = IPv4Address("127.0.0.1")

    with structlog.testing.capture_logs() as logs:
        engine = choose_engine(ScanKind.AUTO, (IPv4Address("192.0.2.1"), local))

    assert isinstance(engine, ConnectEngine)
    assert logs[0]["reason"] == "127.0.0.1 is this host's own address"


@pytest.mark.root
async def test_the_syn_engine_refuses_this_hosts_own_address() -> None:
    if not syn.raw_sockets_available():
        pytest.skip("needs root or CAP_NET_RAW")
    request = ScanRequest(
        targets=(IPv4Address("127.0.0.1"),), tcp=((1, 10),), udp=(), rate_pps=1000
    )

    with pytest.raises(ScanError, match="own address") as caught:
        await syn.SynEngine().scan(request)

    assert "connect engine" in str(caught.value)
