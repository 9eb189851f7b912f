"""``coordinator rescan --change``: a CloudTrail change becomes directed pairs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from coordinator import cli
from coordinator.changes import affected_pairs, load_network_map
from coordinator.errors import UsageError
from coordinator.policy import load_policy

FOUNDING = Path(__file__).parents[2] / "deploy/aws/founding"
SAMPLES = Path(__file__).parent / "cloudtrail"


def _args(
    change: str, policy: Path | None = FOUNDING / "policy.yaml"
) -> argparse.Namespace:
    return argparse.Namespace(
        change=change, policy=policy, network=FOUNDING / "network.yaml"
    )


def test_a_security_group_change_names_the_pairs_the_mapping_gives() -> None:
    """The CLI asks for exactly the pairs ``changes.affected_pairs`` finds."""
    text = (SAMPLES / "authorize_security_group_ingress.json").read_text()
    policy = load_policy(FOUNDING / "policy.yaml")
    network = load_network_map(FOUNDING / "network.yaml", policy)
    expected = affected_pairs(json.loads(text), network, policy).pairs

    wanted = cli._changed_pairs(_args(text))

    assert wanted == [[p.src, p.dst] for p in expected]
    assert wanted


def test_a_change_without_its_policy_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="needs --policy FILE and --network FILE"):
        cli._changed_pairs(_args("{}", policy=None))


def test_a_change_that_is_not_json_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="not JSON"):
        cli._changed_pairs(_args("{oops"))


@pytest.mark.parametrize(
    "argv",
    [["rescan"], ["rescan", "--pair", "a:b", "--change", "{}"]],
    ids=["neither", "both"],
)
def test_rescan_takes_exactly_one_of_pair_and_change(
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # structlog would keep writing to this test's captured stderr after it ends.
    monkeypatch.setattr(cli.logs, "configure", lambda: None)

    code = cli.main([*argv, "--url", "http://127.0.0.1:9"])

    assert code == 2
    assert "either --pair SRC:DST or --change EVENT" in capsys.readouterr().err
