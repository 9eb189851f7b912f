"""Engine choice: what an assignment's scan kind gets on this build."""

from __future__ import annotations

import pytest

from agent import engines
from agent.connect import ConnectEngine
from agent.engines import choose_engine
from agent.errors import ScanError
from agent.syn import SynEngine
from protocol.messages import ScanKind


@pytest.mark.parametrize("kind", [ScanKind.AUTO, ScanKind.CONNECT])
def test_auto_and_connect_get_the_connect_engine(kind: ScanKind) -> None:
    assert isinstance(choose_engine(kind), ConnectEngine)


def test_syn_gets_the_syn_engine_where_raw_sockets_may_be_opened(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engines.syn, "raw_sockets_available", lambda: True)

    assert isinstance(choose_engine(ScanKind.SYN), SynEngine)


def test_syn_without_raw_socket_privilege_is_refused_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engines.syn, "raw_sockets_available", lambda: False)

    with pytest.raises(ScanError, match="CAP_NET_RAW") as caught:
        choose_engine(ScanKind.SYN)

    assert caught.value.subject == "syn"
