"""Engine choice: what an assignment's scan kind gets on this build."""

from __future__ import annotations

import pytest
import structlog

from agent import syn
from agent.connect import ConnectEngine
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
