"""Signers: a PEM key in this process, and KMS, here a stand-in on loopback.

moto (5.x) has no Ed25519 KMS keys, so the KMS signer is tested against the
stand-in of tests/kms.py, which speaks KMS's JSON protocol and signs with real
Ed25519 keys.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from protocol import envelope
from protocol.envelope import Context
from protocol.signer import (
    KMS_MAX_MESSAGE_BYTES,
    FileSigner,
    is_kms_ref,
    kms_public_keys,
    kms_region,
    open_signer,
)
from protocol.signing import SignatureError, generate_key, key_id, verify
from tests.kms import KmsStandIn, serving

ARN = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ALIAS = "alias/segscan-agent-cde-a"
ALIAS_ARN = "arn:aws:kms:eu-west-1:123456789012:alias/segscan-agent-cde-b"


@pytest.fixture
async def kms(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[KmsStandIn]:
    async with serving(KmsStandIn([ARN, ALIAS, ALIAS_ARN]), monkeypatch) as stand_in:
        yield stand_in


async def test_a_file_signer_signs_what_its_public_key_verifies(tmp_path: Path) -> None:
    key = generate_key(tmp_path / "k.pem")

    async with open_signer(str(tmp_path / "k.pem")) as signer:
        signature = await signer.sign(b"data")

    assert isinstance(signer, FileSigner)
    assert signer.key_id == key_id(key.public_key())
    verify(key.public_key(), signature, b"data", "k")


async def test_a_missing_key_file_is_a_signature_error_naming_it(
    tmp_path: Path,
) -> None:
    with pytest.raises(SignatureError, match="cannot load private key"):
        async with open_signer(str(tmp_path / "none.pem")):
            pass


async def test_a_kms_signer_signs_envelopes_agents_verify_offline(
    kms: KmsStandIn,
) -> None:
    async with open_signer(ARN) as signer:
        sealed = await envelope.seal(b"payload", Context.ASSIGNMENT, signer)

    signed = envelope.open_envelope(sealed, 1024)
    public = kms.keys[ARN].public_key()
    assert signer.key_id == key_id(public)
    assert envelope.check(signed, Context.ASSIGNMENT, {key_id(public): public})
    assert [action for action, _ in kms.requests] == ["GetPublicKey", "Sign"]
    assert kms.requests[1][1]["KeyId"] == ARN


async def test_kms_refusing_to_sign_is_a_signature_error(kms: KmsStandIn) -> None:
    async with open_signer(ARN) as signer:
        kms.deny = True
        with pytest.raises(SignatureError, match="AccessDeniedException") as caught:
            await signer.sign(b"x")

    assert caught.value.subject == ARN


async def test_kms_is_never_asked_to_sign_more_than_it_takes(kms: KmsStandIn) -> None:
    async with open_signer(ARN) as signer:
        with pytest.raises(SignatureError, match="over KMS's 4096"):
            await signer.sign(b"x" * (KMS_MAX_MESSAGE_BYTES + 1))


async def test_an_alias_name_signs_in_the_callers_own_region(
    kms: KmsStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One agent image names its key ``alias/segscan-agent-<subnet>``, no account."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")

    async with open_signer(ALIAS) as signer:
        signature = await signer.sign(b"result")

    verify(kms.keys[ALIAS].public_key(), signature, b"result", ALIAS)
    assert [body["KeyId"] for _, body in kms.requests] == [ALIAS, ALIAS]


async def test_an_alias_name_without_a_region_is_a_signature_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)

    with pytest.raises(SignatureError, match="AWS_DEFAULT_REGION") as caught:
        async with open_signer(ALIAS):
            pass

    assert caught.value.subject == ALIAS


async def test_a_key_kms_does_not_have_is_a_signature_error_for_a_signer(
    kms: KmsStandIn,
) -> None:
    missing = ARN.replace("1234abcd", "0000abcd")

    with pytest.raises(SignatureError, match="NotFoundException"):
        async with open_signer(missing):
            pass


async def test_public_keys_are_read_for_every_reference_kms_knows(
    kms: KmsStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys not made yet are left out; only GetPublicKey is ever called."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    missing = ALIAS_ARN.replace("cde-b", "cde-c")

    found = await kms_public_keys([ALIAS_ARN, missing, ALIAS])

    assert set(found) == {ALIAS_ARN, ALIAS}
    assert key_id(found[ALIAS_ARN]) == key_id(kms.keys[ALIAS_ARN].public_key())
    assert key_id(found[ALIAS]) == key_id(kms.keys[ALIAS].public_key())
    assert {action for action, _ in kms.requests} == {"GetPublicKey"}


async def test_reading_public_keys_kms_refuses_is_a_signature_error(
    kms: KmsStandIn,
) -> None:
    kms.deny = True

    with pytest.raises(SignatureError, match="AccessDeniedException") as caught:
        await kms_public_keys([ALIAS_ARN])

    assert caught.value.subject == ALIAS_ARN


async def test_reading_public_keys_refuses_a_file_path() -> None:
    with pytest.raises(SignatureError, match="not a KMS key"):
        await kms_public_keys(["/etc/segscan/keys/agent.pem"])


@pytest.mark.parametrize(
    ("ref", "kms_held"),
    [
        (ARN, True),
        (ALIAS_ARN, True),
        (ALIAS, True),
        ("alias/segscan-agent-{subnet}", False),  # not substituted yet
        ("/var/lib/segscan-agent/agent-key.pem", False),
        ("alias/agent-key.pem", False),
    ],
)
def test_kms_references_are_told_from_paths(ref: str, kms_held: bool) -> None:
    assert is_kms_ref(ref) is kms_held


@pytest.mark.parametrize(
    ("ref", "region"),
    [
        (ARN, "eu-west-1"),
        ("arn:aws:kms:us-east-1:123456789012:alias/segscan-assignments", "us-east-1"),
        ("arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/x", "us-gov-west-1"),
        ("/etc/segscan/keys/coordinator.pem", None),
        ("arn:aws:s3:::bucket", None),
    ],
)
def test_kms_arns_are_told_from_paths(ref: str, region: str | None) -> None:
    assert kms_region(ref) == region
