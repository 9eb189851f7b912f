"""Where bundles go: a directory per run, and an S3 bucket with Object Lock
(moto's server standing in for S3)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from coordinator import evidence, vault
from coordinator.errors import UsageError
from coordinator.runs import RunManager
from coordinator.vault import S3Location, Vault
from protocol.messages import Assignment
from tests.conftest import ResultFor
from tests.coordinator.sample import founding_report


@pytest.fixture
def s3_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A fresh Object Lock bucket; returns its ``s3://`` URL with a prefix."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "segscan-test",
        "AWS_SECRET_ACCESS_KEY": "segscan-test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "SEGSCAN_S3_ENDPOINT": moto_endpoint,
        "SEGSCAN_STATE_DIR": str(tmp_path / "state"),
    }.items():
        monkeypatch.setenv(name, value)
    bucket = f"segscan-evidence-{uuid.uuid4().hex[:8]}"
    _s3(moto_endpoint).create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)

    return f"s3://{bucket}/pci/2024"


def _s3(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="segscan-test",
        aws_secret_access_key="segscan-test",
    )


async def test_a_settled_run_lands_in_s3_locked_and_verifiable(
    run_manager: RunManager,
    dispatched: list[Assignment],
    result_for: ResultFor,
    founding_policy: Path,
    s3_env: str,
    moto_endpoint: str,
    tmp_path: Path,
) -> None:
    where = S3Location.parse(s3_env)
    run_manager.vault = Vault(tmp_path / "evidence", where, retention_days=2)
    report = await founding_report(run_manager, dispatched, result_for, founding_policy)
    s3 = _s3(moto_endpoint)
    key = where.key(report["run"], "manifest.json")

    fetched = await vault.download(f"{s3_env}/{report['run']}", tmp_path / "copy")

    head = s3.head_object(Bucket=where.bucket, Key=key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert evidence.verify_bundle(fetched).ok
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.delete_object(Bucket=where.bucket, Key=key, VersionId=head["VersionId"])


def test_the_default_place_is_the_state_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SEGSCAN_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("SEGSCAN_EVIDENCE_DIR", raising=False)
    monkeypatch.setenv("SEGSCAN_EVIDENCE_BUCKET", "segscan-evidence-1-eu")

    assert Vault.from_env().directory == tmp_path / "evidence"
    assert Vault.from_env().s3 == S3Location("segscan-evidence-1-eu", "")
    assert Vault.from_env("/srv/ev").directory == Path("/srv/ev")


def test_an_s3_url_without_a_bucket_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="s3://BUCKET/PREFIX"):
        S3Location.parse("https://bucket/x")
    with pytest.raises(UsageError):
        S3Location.parse("bucket/prefix-without-scheme")
    assert S3Location.parse("s3://b/p/q/").key("r", "f") == "p/q/r/f"
