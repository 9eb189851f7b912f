"""Engine choice: what an assignment's scan kind gets on this build."""

from __future__ import annotations

import pytest

from agent.connect import ConnectEngine
from agent.engines import choose_engine
from agent.errors import ScanError
from protocol.messages import ScanKind


@pytest.mark.parametrize("kind", [ScanKind.AUTO, ScanKind.CONNECT])
def test_auto_and_connect_get_the_connect_engine(kind: ScanKind) -> None:
    assert isinstance(choose_engine(kind), ConnectEngine)


def test_syn_is_refused_until_the_syn_engine_exists() -> None:
    with pytest.raises(ScanError) as caught:
        choose_engine(ScanKind.SYN)

    assert caught.value.subject == "syn"
