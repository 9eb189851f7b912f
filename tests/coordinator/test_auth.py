"""The agents' public keys read from KMS, as the coordinator does on AWS.

KMS is the stand-in of tests/kms.py; the directory of ``<subnet>.pub`` files
the lab uses is tested with the intake (tests/coordinator/test_intake.py).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from structlog.testing import capture_logs

from coordinator.auth import (
    AGENT_KEY_ALIASES_ENV,
    agent_key_aliases,
    load_kms_agent_keys,
    refresh_agent_keys,
)
from coordinator.errors import UsageError
from protocol import envelope
from protocol.envelope import Context
from protocol.signer import open_signer
from protocol.signing import key_id
from tests.kms import KmsStandIn, serving

PCI_ALIAS = "arn:aws:kms:us-east-1:111111111111:alias/segscan-agent-"
NON_PCI_ALIAS = "arn:aws:kms:us-east-1:222222222222:alias/segscan-agent-"
ALIASES = {
    "cde-a": PCI_ALIAS + "cde-a",
    "cde-b": PCI_ALIAS + "cde-b",
    "corp-a": NON_PCI_ALIAS + "corp-a",
}
WAIT_S = 5.0
POLL_S = 0.02


@pytest.fixture
async def kms(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[KmsStandIn]:
    """KMS holding every agent key but corp-a's, whose stack is not deployed yet."""
    held = [ALIASES["cde-a"], ALIASES["cde-b"]]
    async with serving(KmsStandIn(held), monkeypatch) as stand_in:
        yield stand_in


def _kid(kms: KmsStandIn, subnet: str) -> str:
    return key_id(kms.keys[ALIASES[subnet]].public_key())


def test_the_aliases_come_from_one_template_per_account(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What coordinator.yaml writes: an alias template and the account's subnets."""
    monkeypatch.setenv(
        AGENT_KEY_ALIASES_ENV,
        f"{PCI_ALIAS}{{subnet}}=cde-a, cde-b ; {NON_PCI_ALIAS}{{subnet}}=corp-a;",
    )

    assert agent_key_aliases() == ALIASES


def test_without_the_variable_there_are_no_aliases(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(AGENT_KEY_ALIASES_ENV, raising=False)

    assert agent_key_aliases() == {}


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("alias/segscan-agent-{subnet}=cde-a", "is not a KMS alias ARN"),
        (f"{PCI_ALIAS}cde-a", "with {subnet} in it"),
        ("arn:aws:kms:us-east-1:111111111111:key/{subnet}=cde-a", "alias ARN"),
        (f"{PCI_ALIAS}cde-a=cde-a", "with {subnet} in it"),
        (
            f"{PCI_ALIAS}{{subnet}}=cde-a;{NON_PCI_ALIAS}{{subnet}}=cde-a",
            "cde-a is named twice",
        ),
    ],
)
def test_a_bad_alias_list_is_a_usage_error_naming_the_variable(
    value: str, complaint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(AGENT_KEY_ALIASES_ENV, value)

    with pytest.raises(UsageError, match=re.escape(complaint)) as caught:
        agent_key_aliases()

    assert caught.value.subject == AGENT_KEY_ALIASES_ENV


async def test_each_key_speaks_for_the_subnet_its_alias_names(kms: KmsStandIn) -> None:
    with capture_logs() as logs:
        agent_keys = await load_kms_agent_keys(ALIASES)

    assert {kid: agent_keys.subnet(kid) for kid in agent_keys} == {
        _kid(kms, "cde-a"): "cde-a",
        _kid(kms, "cde-b"): "cde-b",
    }
    assert {action for action, _ in kms.requests} == {"GetPublicKey"}
    (missing,) = [e for e in logs if e["event"] == "agent_keys_missing"]
    assert missing["subnets"] == ["corp-a"]


async def test_a_result_an_agent_signed_in_kms_is_accepted_as_its_subnets(
    kms: KmsStandIn,
) -> None:
    """The agent signs through its alias; the coordinator checks offline."""
    agent_keys = await load_kms_agent_keys(ALIASES)

    async with open_signer(ALIASES["cde-b"]) as signer:
        sealed = await envelope.seal(b"result", Context.RESULT, signer)
    signed = envelope.open_envelope(sealed, 1024)

    assert envelope.check(signed, Context.RESULT, agent_keys)
    assert agent_keys.subnet(signed.key) == "cde-b"


async def test_kms_refusing_is_a_usage_error_naming_the_variable(
    kms: KmsStandIn,
) -> None:
    kms.deny = True

    with pytest.raises(UsageError, match="AccessDeniedException") as caught:
        await load_kms_agent_keys(ALIASES)

    assert caught.value.subject == AGENT_KEY_ALIASES_ENV


async def test_two_subnets_may_not_share_a_key(kms: KmsStandIn) -> None:
    kms.keys[ALIASES["corp-a"]] = kms.keys[ALIASES["cde-a"]]

    with pytest.raises(UsageError, match="one key per subnet") as caught:
        await load_kms_agent_keys(ALIASES)

    assert caught.value.subject == ALIASES["corp-a"]


async def _wait_for(condition: Callable[[], bool]) -> None:
    """Until ``condition`` holds, for at most ``WAIT_S`` (a refresh is 50 ms)."""
    for _ in range(int(WAIT_S / POLL_S)):
        if condition():
            return
        await asyncio.sleep(POLL_S)


async def test_keys_made_after_the_coordinator_started_are_picked_up(
    kms: KmsStandIn,
) -> None:
    agent_keys = await load_kms_agent_keys(ALIASES)
    app = web.Application()
    refresh_agent_keys(app, agent_keys, ALIASES, interval_s=0.05)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        kms.keys[ALIASES["corp-a"]] = Ed25519PrivateKey.generate()
        await _wait_for(lambda: len(agent_keys) == 3)
    finally:
        await runner.cleanup()

    assert agent_keys.subnet(_kid(kms, "corp-a")) == "corp-a"


async def test_a_failed_refresh_keeps_the_keys_known_so_far(kms: KmsStandIn) -> None:
    agent_keys = await load_kms_agent_keys(ALIASES)
    app = web.Application()
    refresh_agent_keys(app, agent_keys, ALIASES, interval_s=0.05)
    runner = web.AppRunner(app)
    kms.deny = True
    with capture_logs() as logs:
        await runner.setup()
        try:
            await _wait_for(
                lambda: any(e["event"] == "agent_keys_refresh_failed" for e in logs)
            )
        finally:
            await runner.cleanup()

    assert any(e["event"] == "agent_keys_refresh_failed" for e in logs)
    assert set(agent_keys) == {_kid(kms, "cde-a"), _kid(kms, "cde-b")}
