"""The AWS deployment: linted templates, consistent founding files, wired rules.

cfn-lint reads the templates as written; checkov reads them with their
``Fn::ForEach`` loops expanded for the founding parameter files (it does not
expand them itself and would otherwise check nothing inside a loop).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.config import AgentConfig
from coordinator.auth import AGENT_KEY_ALIASES_ENV, agent_key_aliases
from coordinator.changes import WATCHED_EVENTS, affected_pairs, load_network_map
from coordinator.policy import load_policy
from coordinator.vault import Vault
from tests.deploy.cfn_render import (
    AWS_DIR,
    DEPLOYMENTS,
    FOUNDING,
    NON_PCI,
    PCI,
    REGION,
    TEMPLATES,
    load_parameters,
    load_template,
    render,
    resolver,
)

REPO = AWS_DIR.parents[1]
CHECKOV_TIMEOUT_S = 300


def test_every_template_has_a_founding_deployment() -> None:
    assert sorted(t.name for t in TEMPLATES) == sorted(DEPLOYMENTS)


def _cfn_lint() -> str:
    beside_python = Path(sys.executable).with_name("cfn-lint")
    return str(beside_python) if beside_python.exists() else "cfn-lint"


def test_cfn_lint_finds_no_errors() -> None:
    run = subprocess.run(
        [_cfn_lint(), "--format", "json", *map(str, TEMPLATES)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    findings = json.loads(run.stdout or "[]")

    errors = [f for f in findings if f["Level"] == "Error"]
    assert errors == [], json.dumps(errors, indent=1)
    assert run.returncode in (0, 4, 8), run.stderr  # 4, 8: warnings, info only


def _checkov() -> str | None:
    """checkov lives in its own venv: its pins clash with aiobotocore's."""
    configured = os.environ.get("SEGSCAN_CHECKOV")
    if configured:
        return configured
    local = REPO / ".venv-checkov/bin/checkov"
    return str(local) if local.exists() else shutil.which("checkov")


@pytest.fixture(scope="session")
def checkov_report(rendered_dir: Path) -> list[dict[str, Any]]:
    """One checkov run over every rendered deployment and the Dockerfile."""
    checkov = _checkov()
    if checkov is None:
        pytest.skip("checkov not installed (make test installs it in .venv-checkov)")
    if not Path(checkov).exists() and shutil.which(checkov) is None:
        pytest.fail(f"SEGSCAN_CHECKOV names {checkov}, which does not exist")
    shutil.copy(AWS_DIR / "coordinator.Dockerfile", rendered_dir)
    run = subprocess.run(
        [
            checkov,
            "--directory",
            str(rendered_dir),
            "--framework",
            "cloudformation",
            "dockerfile",
            "--output",
            "json",
            "--compact",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=CHECKOV_TIMEOUT_S,
        check=False,
    )
    report = json.loads(run.stdout)

    return report if isinstance(report, list) else [report]


@pytest.mark.slow
def test_checkov_finds_no_failure_that_is_not_skipped_with_a_reason(
    checkov_report: list[dict[str, Any]],
) -> None:
    failed = [
        (c["check_id"], c["resource"], c["file_path"])
        for r in checkov_report
        for c in r["results"].get("failed_checks", [])
    ]
    unexplained = [
        (c["check_id"], c["resource"])
        for r in checkov_report
        for c in r["results"].get("skipped_checks", [])
        if len(c["check_result"].get("suppress_comment") or "") < 20
    ]

    assert failed == []
    assert unexplained == []


@pytest.mark.slow
def test_checkov_saw_every_resource(checkov_report: list[dict[str, Any]]) -> None:
    """A loop checkov cannot read would pass silently; count what it checked."""
    checked = {
        (Path(c["file_path"]).name, c["resource"].split(".", 1)[1])
        for r in checkov_report
        if r["check_type"] == "cloudformation"
        for kind in ("passed_checks", "failed_checks", "skipped_checks")
        for c in r["results"].get(kind, [])
    }
    agents = render("agents.yaml", "agents-pci.json")["Resources"]
    queues = render("coordinator.yaml", "coordinator.json")["Resources"]

    names = {name for _, name in checked}
    assert {n for n, r in agents.items() if r["Type"] == "AWS::IAM::Role"} <= names
    assert {n for n, r in queues.items() if r["Type"] == "AWS::SQS::Queue"} <= names


@pytest.mark.parametrize(
    ("template", "parameter_file"),
    sorted({(t, p) for t, runs in DEPLOYMENTS.items() for p, _ in runs if p}),
)
def test_a_founding_parameter_file_fits_its_template(
    template: str, parameter_file: str
) -> None:
    spec = load_template(template)["Parameters"]
    given = load_parameters(parameter_file)

    assert set(given) <= set(spec), "unknown parameters"
    assert {n for n, s in spec.items() if "Default" not in s} <= set(given)
    for name, value in given.items():
        pattern = spec[name].get("AllowedPattern")
        allowed = spec[name].get("AllowedValues")
        assert pattern is None or re.fullmatch(pattern, value), name
        assert allowed is None or value in allowed, name


def test_the_founding_files_agree_with_each_other() -> None:
    """Policy, network map and parameter files name the same subnets and ids."""
    policy = load_policy(FOUNDING / "policy.yaml")
    network = load_network_map(FOUNDING / "network.yaml", policy)
    coordinator = load_parameters("coordinator.json")
    pci, non_pci = (
        load_parameters("agents-pci.json"),
        load_parameters("agents-nonpci.json"),
    )
    agents = dict(
        entry.split("=") for p in (pci, non_pci) for entry in p["Agents"].split(",")
    )

    assert agents == {name: sid for sid, name in network.subnets.items()}
    assert set(coordinator["PciSubnetNames"].split(",")) == set(policy.segments["cde"])
    assert set(coordinator["NonPciSubnetNames"].split(",")) == set(
        policy.segments["corp"]
    )
    assert set(pci["Agents"].split(",")) == {
        f"{n}={s}" for n, s in agents.items() if n in policy.segments["cde"]
    }
    domains = {
        load_parameters(f)["CoordinatorDomainName"]
        for f in (
            "coordinator.json",
            "agents-pci.json",
            "agents-nonpci.json",
            "agent-image.json",
        )
    }
    assert len(domains) == 1


@pytest.mark.parametrize(
    ("template", "rule"),
    [("coordinator.yaml", "ChangeRule"), ("change-forwarder.yaml", "ForwardRule")],
)
def test_change_rules_forward_exactly_the_events_the_coordinator_maps(
    template: str, rule: str
) -> None:
    pattern = load_template(template)["Resources"][rule]["Properties"]["EventPattern"]

    assert pattern["detail-type"] == ["AWS API Call via CloudTrail"]
    assert set(pattern["detail"]["eventName"]) == WATCHED_EVENTS


def test_the_coordinator_task_checks_health_and_logs_to_cloudwatch() -> None:
    resources = resolver(
        "coordinator.yaml", "coordinator.json", "222222222222"
    ).resources
    container = resources["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]

    assert container["HealthCheck"]["Command"][:3] == [
        "CMD",
        "coordinator",
        "healthcheck",
    ]
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"
    assert container["ReadonlyRootFilesystem"] is True
    assert not container["User"].startswith("0")
    assert container["LinuxParameters"]["Capabilities"]["Drop"] == ["ALL"]


def test_evidence_is_locked_in_compliance_mode_for_a_year_or_more() -> None:
    resources = resolver(
        "coordinator.yaml", "coordinator.json", "222222222222"
    ).resources
    lock = resources["EvidenceBucket"]["Properties"]["ObjectLockConfiguration"]

    assert lock["Rule"]["DefaultRetention"]["Mode"] == "COMPLIANCE"
    assert int(lock["Rule"]["DefaultRetention"]["Days"]) >= 365


def test_agents_require_imdsv2() -> None:
    template = load_template("agents.yaml")
    data = template["Resources"]["AgentLaunchTemplate"]["Properties"]
    options = data["LaunchTemplateData"]["MetadataOptions"]

    assert options["HttpTokens"] == "required"
    assert options["HttpPutResponseHopLimit"] == 1


def test_the_image_component_installs_the_reviewed_unit_and_verifies_it() -> None:
    component = load_template("agent-image.yaml")["Resources"]["AgentComponent"]
    document = yaml.safe_load(component["Properties"]["Data"])
    commands = {
        phase["name"]: " ; ".join(
            c
            for step in phase["steps"]
            if step["action"] == "ExecuteBash"
            for c in step["inputs"]["commands"]
        )
        for phase in document["phases"]
    }

    assert "sha256sum --check" in commands["build"]
    assert "segscan-agent.service /etc/systemd/system/" in commands["build"]
    assert "--no-index" in commands["build"]
    assert "systemd-analyze verify" in commands["validate"]


def _coordinator_environment() -> dict[str, str]:
    resources = resolver("coordinator.yaml", "coordinator.json", NON_PCI).resources
    container = resources["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]

    return {e["Name"]: str(e["Value"]) for e in container["Environment"]}


def _agent_key_aliases() -> dict[str, str]:
    """Subnet -> alias ARN, as the two founding agents stacks create them."""
    aliases: dict[str, str] = {}
    for parameter_file, account in [
        ("agents-pci.json", PCI),
        ("agents-nonpci.json", NON_PCI),
    ]:
        for spec in resolver("agents.yaml", parameter_file, account).resources.values():
            if spec["Type"] == "AWS::KMS::Alias":
                name = spec["Properties"]["AliasName"]
                subnet = name.removeprefix("alias/segscan-agent-")
                aliases[subnet] = f"arn:aws:kms:{REGION}:{account}:{name}"

    return aliases


def test_the_coordinator_reads_exactly_the_keys_the_agents_stacks_make(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        AGENT_KEY_ALIASES_ENV, _coordinator_environment()[AGENT_KEY_ALIASES_ENV]
    )
    policy = load_policy(FOUNDING / "policy.yaml")

    assert agent_key_aliases() == _agent_key_aliases()
    assert set(_agent_key_aliases()) == {
        subnet for segment in policy.segments.values() for subnet in segment
    }


def _image_environment() -> dict[str, str]:
    """The agent.env the image component writes, with its parameters filled in."""
    component = load_template("agent-image.yaml")["Resources"]["AgentComponent"]
    document = yaml.safe_load(component["Properties"]["Data"])
    (install,) = [
        step
        for phase in document["phases"]
        for step in phase["steps"]
        if step["name"] == "Install"
    ]
    (command,) = [c for c in install["inputs"]["commands"] if "agent.env" in c]
    for name, value in {
        "CoordinatorUrl": "https://segscan.internal.example.com",
        "QueueOwner": NON_PCI,
        "Region": REGION,
    }.items():
        command = command.replace(f"{{{{ {name} }}}}", value)
    printed = subprocess.run(
        ["bash", "-c", command.split(">", 1)[0]],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout

    return dict(line.split("=", 1) for line in printed.splitlines())


def test_each_agent_from_the_one_image_signs_with_its_own_subnets_key() -> None:
    env = _image_environment()
    aliases = _agent_key_aliases()

    for subnet, alias_arn in aliases.items():
        config = AgentConfig.from_env({**env, "SEGSCAN_SUBNET": subnet})
        assert config.agent_key == "alias/" + alias_arn.split(":alias/")[1]
    assert env["AWS_DEFAULT_REGION"] == REGION


def test_evidence_objects_are_locked_as_long_as_the_bucket_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resources = resolver("coordinator.yaml", "coordinator.json", NON_PCI).resources
    lock = resources["EvidenceBucket"]["Properties"]["ObjectLockConfiguration"]
    days = lock["Rule"]["DefaultRetention"]["Days"]
    environment = _coordinator_environment()
    monkeypatch.setenv(
        "SEGSCAN_EVIDENCE_RETENTION_DAYS",
        environment["SEGSCAN_EVIDENCE_RETENTION_DAYS"],
    )

    assert days == load_parameters("coordinator.json")["EvidenceRetentionDays"]
    assert Vault.from_env("/tmp/evidence").retention_days == int(days)


class _FakeEcs:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def run_task(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {"tasks": [{"taskArn": "arn:aws:ecs:us-east-1:222222222222:task/x"}]}


def _rescan_trigger(ecs: _FakeEcs, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    code = load_template("coordinator.yaml")["Resources"]["RescanTrigger"]
    boto3 = types.ModuleType("boto3")
    boto3.client = lambda service: ecs  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "boto3", boto3)
    for name, value in {
        "CLUSTER": "segscan",
        "TASK_DEFINITION": "segscan-coordinator:7",
        "SUBNETS": "subnet-a,subnet-b",
        "SECURITY_GROUP": "sg-0f00000000000c0de",
    }.items():
        monkeypatch.setenv(name, value)
    module = types.ModuleType("rescan_trigger")
    exec(code["Properties"]["Code"]["ZipFile"], module.__dict__)

    return module


@pytest.mark.parametrize(("oversized", "expected_pairs"), [(False, 6), (True, 54)])
def test_the_rescan_trigger_hands_the_change_to_a_coordinator_task(
    oversized: bool,
    expected_pairs: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What the inline Lambda passes on is what coordinator/changes.py reads."""
    ecs = _FakeEcs()
    trigger = _rescan_trigger(ecs, monkeypatch)
    event = json.loads(
        (
            REPO / "tests/coordinator/cloudtrail/create_network_acl_entry.json"
        ).read_text()
    )
    if oversized:
        event["detail"]["requestParameters"]["padding"] = "x" * 7000

    trigger.handler(event, None)

    (call,) = ecs.calls
    command = call["overrides"]["containerOverrides"][0]["command"]
    change = json.loads(command[command.index("--change") + 1])
    policy = load_policy(FOUNDING / "policy.yaml")
    impact = affected_pairs(
        change, load_network_map(FOUNDING / "network.yaml", policy), policy
    )
    assert command[0] == "rescan"
    assert len(json.dumps(call["overrides"])) < 8192
    assert len(impact.pairs) == expected_pairs
    assert "rescan_started" in capsys.readouterr().out


def test_the_coordinator_image_runs_as_a_user_and_checks_its_health() -> None:
    dockerfile = (AWS_DIR / "coordinator.Dockerfile").read_text()
    final_stage = dockerfile.rsplit("\nFROM ", 1)[1]

    assert re.search(r"^USER 10001", final_stage, re.MULTILINE)
    assert 'CMD ["coordinator", "healthcheck"' in final_stage
    assert 'ENTRYPOINT ["coordinator"]' in final_stage


def test_the_coordinator_task_writes_only_to_a_volume_its_user_owns() -> None:
    """The root is read-only, so every path the coordinator writes lies in the
    task's one mount; on Fargate that mount is writable by a non-root user only
    when the image declares it as a VOLUME created for that user."""
    resources = resolver(
        "coordinator.yaml", "coordinator.json", "222222222222"
    ).resources
    container = resources["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    (mount,) = container["MountPoints"]
    names = {e["Name"] for e in container["Environment"]}
    final_stage = (
        (AWS_DIR / "coordinator.Dockerfile").read_text().rsplit("\nFROM ", 1)[1]
    )
    uid, gid = container["User"].split(":")
    volume = re.search(r'^VOLUME \["([^"]+)"\]', final_stage, re.MULTILINE)
    made = re.search(
        rf"^RUN install -d -o {uid} -g {gid} -m 0700 (.+)$", final_stage, re.MULTILINE
    )

    assert volume is not None
    assert made is not None
    assert mount["ContainerPath"] == volume[1]
    assert volume[1] in made[1].split()
    assert volume.start() > made.start()  # what follows VOLUME is discarded
    for name in ("SEGSCAN_STATE_DIR", "TMPDIR"):
        value = re.search(rf"\b{name}=(\S+)", final_stage)
        assert value is not None, name
        assert name not in names  # the image's value, not a second copy
        assert Path(value[1]).is_relative_to(mount["ContainerPath"])
        assert value[1] in made[1].split()


def test_the_publish_script_is_valid_bash() -> None:
    run = subprocess.run(
        ["bash", "-n", str(AWS_DIR / "publish-artifacts.sh")],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )

    assert run.returncode == 0, run.stderr
