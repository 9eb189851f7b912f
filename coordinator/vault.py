"""Where evidence bundles are kept: a directory per run, and optionally an S3
bucket with Object Lock so that nobody, not even the account's root, can
change or delete a bundle before its retention date.

PCI DSS 10.5.1 keeps audit evidence for at least twelve months, hence the
default retention.  The coordinator writes a run's bundle as the run settles.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from coordinator import csvout, dot, evidence, html, keys, nmapxml
from coordinator.errors import NotFoundError, ServiceError, UsageError
from coordinator.report import render_text
from coordinator.store import RunRecord, Store
from coordinator.tables import chunks, results
from protocol.signer import FileSigner, Signer

log = structlog.get_logger(__name__)

RETENTION_DAYS = 400  # deploy/aws's EvidenceRetentionDays default; at least 365


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """``s3://bucket/prefix`` (or a bare bucket name) as a location; raise
        ``UsageError`` otherwise."""
        rest = url.removeprefix("s3://")
        bucket, _, prefix = rest.partition("/")
        if not bucket or (prefix and not url.startswith("s3://")) or ":" in bucket:
            raise UsageError(url, "expected s3://BUCKET/PREFIX or a bucket name")

        return cls(bucket, prefix.strip("/"))

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)


@dataclass(frozen=True)
class Vault:
    """Writes each settled run's bundle to ``directory`` (and to ``s3``)."""

    directory: Path
    s3: S3Location | None = None
    retention_days: int = RETENTION_DAYS

    @classmethod
    def from_env(cls, directory: str | None = None) -> Vault:
        """From ``--evidence``, else ``SEGSCAN_EVIDENCE_DIR``, else the state dir;
        ``SEGSCAN_EVIDENCE_BUCKET`` (a name or ``s3://BUCKET/PREFIX``) adds S3."""
        where = directory or os.environ.get("SEGSCAN_EVIDENCE_DIR")
        s3_url = os.environ.get("SEGSCAN_EVIDENCE_BUCKET")
        days = os.environ.get("SEGSCAN_EVIDENCE_RETENTION_DAYS", str(RETENTION_DAYS))
        if not days.isdigit() or int(days) < 1:
            raise UsageError(days, "SEGSCAN_EVIDENCE_RETENTION_DAYS takes whole days")

        return cls(
            Path(where) if where else keys.state_dir() / "evidence",
            S3Location.parse(s3_url) if s3_url else None,
            int(days),
        )

    def bundle(self, run_id: str) -> Path:
        return self.directory / run_id

    async def seal(
        self,
        store: Store,
        run: RunRecord,
        report: dict[str, Any],
        signer: Signer | None = None,
    ) -> Path:
        """Write the run's bundle signed by ``signer`` (default: the coordinator's
        key file), and upload it when a bucket is set."""
        files = await collect(store, run, report)
        tool = f"{report['tool']['name']} {report['tool']['version']}"
        if signer is None:
            signer = FileSigner(await asyncio.to_thread(keys.signing_key))
        bundle = await evidence.seal(files, run.id, signer, tool)
        path = self.bundle(run.id)
        await asyncio.to_thread(write_tree, path, bundle)
        if self.s3 is not None:
            await upload(path, self.s3, run.id, self.retention_days)

        return path

    def files(self, run_id: str) -> dict[str, bytes]:
        """Every file of the run's bundle, by path, for ``evidence fetch``."""
        path = self.bundle(run_id)
        if not (path / evidence.MANIFEST).is_file():
            raise NotFoundError(run_id, "no evidence bundle for this run (yet)")

        return read_tree(path)


async def collect(
    store: Store, run: RunRecord, report: dict[str, Any]
) -> dict[str, bytes]:
    """Every file of the run's bundle but the manifest, signature and key."""
    files = {
        "policy.yaml": run.policy_text.encode(),
        "scope.json": _json(report.get("scope", {})),
    }
    # Read the stored bytes themselves: the evidence is what the agents sent.
    async with store.engine.connect() as conn:
        stored = (
            await conn.execute(sa.select(results).where(results.c.run_id == run.id))
        ).all()
        planned = (
            await conn.execute(sa.select(chunks).where(chunks.c.run_id == run.id))
        ).all()
    index = []
    for row in stored:
        files[f"results/{row.assignment_id}.msgpack"] = row.body
        index.append(
            {"assignment": row.assignment_id, "agent": row.agent, "at": row.received_at}
        )
    files["results/index.json"] = _json(sorted(index, key=lambda i: i["assignment"]))
    for row in planned:
        files[f"assignments/{row.id}.msgpack"] = row.assignment

    return files | report_files(report)


def report_files(report: dict[str, Any]) -> dict[str, bytes]:
    """The run's report in every format, by path inside a bundle."""
    files = {
        "report/report.json": _json(report),
        "report/report.txt": (render_text(report) + "\n").encode(),
        "report/report.html": html.render(report).encode(),
        "report/findings.csv": csvout.render(report).encode(),
        "report/graph.dot": dot.render(report).encode(),
    }
    for src, text in nmapxml.render_all(report).items():
        files[f"report/nmap/{src}.xml"] = text.encode()

    return files


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()


def _client() -> Any:
    return get_session().create_client(
        "s3",
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        endpoint_url=os.environ.get("SEGSCAN_S3_ENDPOINT") or None,
    )


async def upload(
    bundle: Path, where: S3Location, run_id: str, retention_days: int
) -> None:
    """Put every file under ``prefix/run_id/``, locked in compliance mode."""
    until = dt.datetime.now(dt.UTC) + dt.timedelta(days=retention_days)
    files = await asyncio.to_thread(read_tree, bundle)
    try:
        async with _client() as client:
            for name, data in sorted(files.items()):
                await client.put_object(
                    Bucket=where.bucket,
                    Key=where.key(run_id, name),
                    Body=data,
                    ChecksumAlgorithm="SHA256",
                    ObjectLockMode="COMPLIANCE",
                    ObjectLockRetainUntilDate=until,
                )
    except (ClientError, BotoCoreError, OSError) as exc:
        raise ServiceError(f"s3://{where.bucket}", f"evidence upload: {exc}") from exc
    log.info("evidence_uploaded", bucket=where.bucket, prefix=where.key(run_id))


async def download(url: str, target: Path) -> Path:
    """Copy the bundle at ``s3://bucket/prefix`` into ``target``."""
    where = S3Location.parse(url)
    prefix = where.key() + "/" if where.prefix else ""
    files: dict[str, bytes] = {}
    try:
        async with _client() as client:
            pages = client.get_paginator("list_objects_v2").paginate(
                Bucket=where.bucket, Prefix=prefix
            )
            async for page in pages:
                for item in page.get("Contents", []):
                    reply = await client.get_object(
                        Bucket=where.bucket, Key=item["Key"]
                    )
                    async with reply["Body"] as body:
                        files[item["Key"][len(prefix) :]] = await body.read()
    except (ClientError, BotoCoreError, OSError) as exc:
        raise ServiceError(url, f"evidence download: {exc}") from exc
    if not files:
        raise NotFoundError(url, "no evidence bundle under this prefix")
    await asyncio.to_thread(write_tree, target, files)

    return target


def read_tree(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` by its relative POSIX path."""
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in directory.rglob("*")
        if p.is_file()
    }


def write_tree(directory: Path, files: dict[str, bytes]) -> None:
    """Write files by relative path, refusing any that would leave ``directory``."""
    for name, data in files.items():
        target = directory / evidence.safe(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
