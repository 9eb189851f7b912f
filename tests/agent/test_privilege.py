"""Least privilege: root is refused unless allowed; capabilities are read right."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent import privilege
from agent.errors import ConfigError
from agent.privilege import Privileges


def test_root_is_refused_unless_allowed() -> None:
    root = Privileges(uid=0, net_raw=True, net_admin=True)

    with pytest.raises(ConfigError, match="refusing to run as root") as caught:
        privilege.check(allow_root=False, privileges=root)

    assert caught.value.subject == "SEGSCAN_ALLOW_ROOT"
    assert "CAP_NET_RAW" in str(caught.value)


def test_root_when_allowed_is_logged_as_a_warning() -> None:
    root = Privileges(uid=0, net_raw=True, net_admin=True)

    with capture_logs() as logs:
        privilege.check(allow_root=True, privileges=root)

    assert [(e["event"], e["log_level"], e["root"]) for e in logs] == [
        ("agent_privileges", "warning", True)
    ]


def test_an_unprivileged_user_with_net_raw_runs_quietly() -> None:
    user = Privileges(uid=3_100_000, net_raw=True, net_admin=False)

    with capture_logs() as logs:
        privilege.check(allow_root=False, privileges=user)

    assert [(e["log_level"], e["net_raw"], e["net_admin"]) for e in logs] == [
        ("info", True, False)
    ]


@pytest.mark.parametrize(
    ("cap_eff", "net_raw", "net_admin"),
    [
        ("0000000000002000", True, False),  # CAP_NET_RAW alone, as setpriv grants
        ("0000000000001000", False, True),
        ("000001ffffffffff", True, True),
        ("0000000000000000", False, False),
    ],
)
def test_capabilities_come_from_the_effective_set(
    tmp_path: Path, cap_eff: str, net_raw: bool, net_admin: bool
) -> None:
    status = tmp_path / "status"
    status.write_text(f"Name:\tagent\nCapInh:\t0\nCapEff:\t{cap_eff}\nCapBnd:\t0\n")

    seen = privilege.current(status)

    assert (seen.net_raw, seen.net_admin) == (net_raw, net_admin)
