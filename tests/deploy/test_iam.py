"""Least privilege, read from the templates' own IAM, queue and key policies.

The policies are evaluated as IAM would for the questions asked here: an
action on a resource is allowed when some Allow statement matches it and no
unconditional Deny does.  Conditions on an Allow are ignored (it counts as
allowing), so "cannot" assertions err on the strict side.
"""

from __future__ import annotations

from collections.abc import Iterator
from fnmatch import fnmatchcase
from typing import Any

import pytest

from coordinator.auth import MIN_TOKEN_CHARS
from coordinator.changes import WATCHED_EVENTS
from tests.deploy.cfn_render import (
    NON_PCI,
    PCI,
    REGION,
    Resolver,
    load_parameters,
    resolver,
)

AGENT_ACTIONS = {
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueUrl",
}
# Every call that changes a segmentation control: the ones a change triggers a
# rescan for, and the ones that create or remove a control outright.
NETWORK_CONTROL_ACTIONS = {f"ec2:{name}" for name in WATCHED_EVENTS} | {
    "ec2:CreateSecurityGroup",
    "ec2:DeleteSecurityGroup",
    "ec2:UpdateSecurityGroupRuleDescriptionsIngress",
    "ec2:CreateNetworkAcl",
    "ec2:DeleteNetworkAcl",
    "ec2:CreateRouteTable",
    "ec2:DeleteRouteTable",
    "ec2:ModifyInstanceAttribute",
    "ec2:CreateTransitGatewayVpcAttachment",
    "ec2:CreateVpcPeeringConnection",
    "network-firewall:UpdateRuleGroup",
}
# AWS managed policies the templates attach, reviewed by name: none of them
# grants SQS or any change to network controls.
REVIEWED_MANAGED_POLICIES = {
    "AmazonRDSEnhancedMonitoringRole",  # CloudWatch Logs for RDS metrics
    "EC2InstanceProfileForImageBuilder",  # Image Builder build instance
    "AmazonSSMManagedInstanceCore",  # Systems Manager agent on the build instance
}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _matches(patterns: Any, value: str, *, case: bool) -> bool:
    if case:
        return any(fnmatchcase(value, str(p)) for p in _list(patterns))
    return any(fnmatchcase(value.lower(), str(p).lower()) for p in _list(patterns))


def _applies(statement: dict[str, Any], action: str, resource: str) -> bool:
    return _matches(statement["Action"], action, case=False) and _matches(
        statement.get("Resource", "*"), resource, case=True
    )


def allows(statements: list[dict[str, Any]], action: str, resource: str) -> bool:
    """Whether the identity statements let ``action`` on ``resource`` through."""
    relevant = [s for s in statements if _applies(s, action, resource)]
    denied = any(s["Effect"] == "Deny" and "Condition" not in s for s in relevant)

    return not denied and any(s["Effect"] == "Allow" for s in relevant)


def denies(statements: list[dict[str, Any]], action: str, resource: str) -> bool:
    """Whether an unconditional Deny covers ``action`` on ``resource``."""
    return any(
        s["Effect"] == "Deny" and "Condition" not in s and _applies(s, action, resource)
        for s in statements
    )


def role_statements(res: Resolver, logical: str) -> list[dict[str, Any]]:
    """A role's identity statements: inline policies and RolePolicy resources."""
    resources = res.resources
    role = resources[logical]["Properties"]
    documents = [p["PolicyDocument"] for p in role.get("Policies", [])]
    name = res.resolve({"Ref": logical})
    documents += [
        r["Properties"]["PolicyDocument"]
        for r in resources.values()
        if r["Type"] == "AWS::IAM::RolePolicy" and r["Properties"]["RoleName"] == name
    ]
    for arn in role.get("ManagedPolicyArns", []):
        assert arn.rsplit("/", 1)[-1] in REVIEWED_MANAGED_POLICIES, arn

    return [s for d in documents for s in _list(d["Statement"])]


def queue_arn(name: str) -> str:
    return f"arn:aws:sqs:{REGION}:{NON_PCI}:segscan-{name}"


def all_subnets() -> list[str]:
    params = load_parameters("coordinator.json")
    return [
        *params["PciSubnetNames"].split(","),
        *params["NonPciSubnetNames"].split(","),
    ]


def agent_roles(res: Resolver) -> Iterator[tuple[str, str]]:
    """(logical id, subnet) of every agent role in a rendered agents stack."""
    for logical, spec in res.resources.items():
        role_name = spec.get("Properties", {}).get("RoleName", "")
        if spec["Type"] == "AWS::IAM::Role" and role_name.startswith("segscan-agent-"):
            yield logical, role_name.removeprefix("segscan-agent-")


AGENT_STACKS = [("agents-pci.json", PCI), ("agents-nonpci.json", NON_PCI)]
COORDINATOR_ROLE = f"arn:aws:iam::{NON_PCI}:role/segscan-coordinator"
# Every KMS call that uses a key, or changes who may use it.
KMS_KEY_ACTIONS = {
    "kms:Sign",
    "kms:Verify",
    "kms:GetPublicKey",
    "kms:Decrypt",
    "kms:Encrypt",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:GenerateDataKey",
    "kms:GenerateMac",
    "kms:CreateGrant",
    "kms:PutKeyPolicy",
    "kms:ScheduleKeyDeletion",
    "kms:DisableKey",
}


def _agents(parameter_file: str) -> list[str]:
    """The subnet names of the agents a parameter file deploys."""
    entries = load_parameters(parameter_file)["Agents"].split(",")
    return [entry.split("=")[0] for entry in entries]


def _principals(statement: dict[str, Any]) -> list[str]:
    principal = statement.get("Principal", {})
    return [str(p) for p in _list(principal.get("AWS", []))]


def _key_statements(res: Resolver, logical: str) -> list[dict[str, Any]]:
    policy = res.resources[logical]["Properties"]["KeyPolicy"]
    return list(_list(policy["Statement"]))


def _who_may(statements: list[dict[str, Any]], action: str) -> list[str]:
    """The principals a key policy allows ``action``, conditions aside."""
    return sorted(
        p
        for s in statements
        if s["Effect"] == "Allow" and _matches(s["Action"], action, case=False)
        for p in _principals(s)
    )


def agent_keys(res: Resolver) -> dict[str, str]:
    """Subnet -> logical id of its agent's key, found through the key's alias."""
    found: dict[str, str] = {}
    for spec in res.resources.values():
        props = spec.get("Properties", {})
        if spec["Type"] == "AWS::KMS::Alias":
            subnet = props["AliasName"].removeprefix("alias/segscan-agent-")
            found[subnet] = props["TargetKeyId"].strip("{}")

    return found


@pytest.mark.parametrize(("parameter_file", "account"), AGENT_STACKS)
def test_an_agent_role_never_sends_to_any_queue(
    parameter_file: str, account: str
) -> None:
    res = resolver("agents.yaml", parameter_file, account)
    roles = list(agent_roles(res))
    targets = [queue_arn(s) for s in all_subnets()] + [
        queue_arn(f"{s}-dlq") for s in all_subnets()
    ]

    assert len(roles) == len(load_parameters(parameter_file)["Agents"].split(","))
    for logical, _ in roles:
        statements = role_statements(res, logical)
        assert not any(
            allows(statements, "sqs:SendMessage", t) for t in [*targets, "*"]
        )
        assert denies(statements, "sqs:SendMessage", "*")
        assert not allows(statements, "sqs:SendMessageBatch", "*")


@pytest.mark.parametrize(("parameter_file", "account"), AGENT_STACKS)
def test_an_agent_role_touches_only_its_own_subnets_queue(
    parameter_file: str, account: str
) -> None:
    res = resolver("agents.yaml", parameter_file, account)

    for logical, subnet in agent_roles(res):
        statements = role_statements(res, logical)
        granted = {
            a for s in statements if s["Effect"] == "Allow" for a in _list(s["Action"])
        }
        others = [queue_arn(s) for s in all_subnets() if s != subnet]
        assert granted <= AGENT_ACTIONS
        assert all(allows(statements, a, queue_arn(subnet)) for a in AGENT_ACTIONS)
        assert not any(allows(statements, a, q) for a in AGENT_ACTIONS for q in others)
        assert not any(
            allows(statements, a, queue_arn(f"{subnet}-dlq")) for a in AGENT_ACTIONS
        )


def test_each_queue_admits_only_its_own_subnets_agent() -> None:
    res = resolver("coordinator.yaml", "coordinator.json", NON_PCI)
    params = load_parameters("coordinator.json")
    home = {s: PCI for s in params["PciSubnetNames"].split(",")}
    home |= {s: NON_PCI for s in params["NonPciSubnetNames"].split(",")}
    coordinator = f"arn:aws:iam::{NON_PCI}:role/segscan-coordinator"
    policies = {
        r["Properties"]["PolicyDocument"]["Statement"][0]["Resource"]: r["Properties"]
        for r in res.resources.values()
        if r["Type"] == "AWS::SQS::QueuePolicy"
        and r["Properties"]["PolicyDocument"]["Statement"][0]["Resource"].startswith(
            f"arn:aws:sqs:{REGION}:{NON_PCI}:segscan-"
        )
        and "dlq" not in r["Properties"]["PolicyDocument"]["Statement"][0]["Resource"]
    }

    assert set(policies) == {queue_arn(s) for s in home}
    for subnet, account in home.items():
        statements = policies[queue_arn(subnet)]["PolicyDocument"]["Statement"]
        admitted = [s for s in statements if s["Effect"] == "Allow"]
        agent = f"arn:aws:iam::{account}:role/segscan-agent-{subnet}"
        assert all(
            s["Condition"]["ArnEquals"]["aws:PrincipalArn"] == agent for s in admitted
        )
        assert all(set(_list(s["Action"])) <= AGENT_ACTIONS for s in admitted)
        (send_guard,) = [
            s for s in statements if s.get("Sid") == "OnlyTheCoordinatorSends"
        ]
        assert send_guard["Effect"] == "Deny"
        assert send_guard["Principal"] == "*"
        assert (
            send_guard["Condition"]["ArnNotEquals"]["aws:PrincipalArn"] == coordinator
        )


def test_the_coordinator_cannot_modify_network_controls() -> None:
    res = resolver("coordinator.yaml", "coordinator.json", NON_PCI)
    statements = role_statements(res, "CoordinatorTaskRole")

    for action in sorted(NETWORK_CONTROL_ACTIONS):
        assert not allows(statements, action, "*"), action
        assert denies(statements, action, "*"), action


def test_the_coordinator_sends_assignments_but_never_to_dead_letter_queues() -> None:
    res = resolver("coordinator.yaml", "coordinator.json", NON_PCI)
    statements = role_statements(res, "CoordinatorTaskRole")

    for subnet in all_subnets():
        assert allows(statements, "sqs:SendMessage", queue_arn(subnet))
        assert not allows(statements, "sqs:SendMessage", queue_arn(f"{subnet}-dlq"))
        assert allows(statements, "sqs:ReceiveMessage", queue_arn(f"{subnet}-dlq"))
        assert not allows(statements, "sqs:ReceiveMessage", queue_arn(subnet))


def _every_deployment() -> Iterator[tuple[str, str | None, str]]:
    yield "coordinator.yaml", "coordinator.json", NON_PCI
    yield "registry.yaml", None, NON_PCI
    yield "agent-image.yaml", "agent-image.json", PCI
    yield "change-forwarder.yaml", "change-forwarder.json", PCI
    for parameter_file, account in AGENT_STACKS:
        yield "agents.yaml", parameter_file, account


@pytest.mark.parametrize(
    ("template", "parameter_file", "account"), list(_every_deployment())
)
def test_no_role_anywhere_may_change_network_controls(
    template: str, parameter_file: str | None, account: str
) -> None:
    res = resolver(template, parameter_file, account)
    roles = [n for n, r in res.resources.items() if r["Type"] == "AWS::IAM::Role"]

    for logical in roles:
        statements = role_statements(res, logical)
        granted = [a for a in NETWORK_CONTROL_ACTIONS if allows(statements, a, "*")]
        assert granted == [], logical


def _documents(node: Any) -> Iterator[dict[str, Any]]:
    """Every policy document (anything with statements) inside a resource."""
    if isinstance(node, dict) and "Statement" in node:
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _documents(value)
    elif isinstance(node, list):
        for item in node:
            yield from _documents(item)


def _principal_accounts(document: dict[str, Any]) -> set[str]:
    statements = _list(document.get("Statement", document))
    found: set[str] = set()
    for statement in statements:
        principal = statement.get("Principal", {})
        aws = principal.get("AWS", []) if isinstance(principal, dict) else principal
        found |= {
            str(p).split(":")[4] if str(p).startswith("arn:") else str(p)
            for p in _list(aws)
        }

    return found - {"*"}


@pytest.mark.parametrize(
    ("template", "parameter_file"),
    [
        ("agents.yaml", "agents-pci.json"),
        ("agent-image.yaml", "agent-image.json"),
        ("change-forwarder.yaml", "change-forwarder.json"),
    ],
)
def test_nothing_in_the_pci_account_lets_another_account_in(
    template: str, parameter_file: str
) -> None:
    """No trust, key or resource policy in the PCI account names another account,
    but for one grant: the coordinator's role may read agents' public keys."""
    resources = resolver(template, parameter_file, PCI).resources
    outward = [
        (r["Type"], s)
        for r in resources.values()
        for d in _documents(r)
        for s in _list(d["Statement"])
        if _principal_accounts({"Statement": [s]}) - {PCI}
    ]

    for kind, statement in outward:
        assert kind == "AWS::KMS::Key"
        assert statement["Effect"] == "Allow"
        assert _list(statement["Action"]) == ["kms:GetPublicKey"]
        assert statement["Condition"] == {
            "ArnEquals": {"aws:PrincipalArn": COORDINATOR_ROLE}
        }
    agents = _agents(parameter_file) if template == "agents.yaml" else []
    assert len(outward) == len(agents)
    assert not [
        r for r in resources.values() if r["Type"] == "AWS::EC2::VPCEndpointService"
    ]


def test_pci_agents_accept_no_inbound_traffic() -> None:
    resources = resolver("agents.yaml", "agents-pci.json", PCI).resources
    group = resources["AgentSecurityGroup"]["Properties"]

    assert "SecurityGroupIngress" not in group
    assert not [
        r
        for r in resources.values()
        if r["Type"] == "AWS::EC2::SecurityGroupIngress"
        and r["Properties"]["GroupId"] == "{AgentSecurityGroup}"
    ]


def test_the_coordinator_account_grants_the_pci_account_only_calls_outward() -> None:
    """What the PCI account may do here: pull its queues and push change events."""
    resources = resolver("coordinator.yaml", "coordinator.json", NON_PCI).resources
    granted: set[str] = set()
    for resource in resources.values():
        for document in _documents(resource):
            for statement in _list(document.get("Statement", document)):
                if PCI in _principal_accounts({"Statement": [statement]}):
                    assert statement["Effect"] == "Allow"
                    granted |= set(_list(statement["Action"]))
    trust = [
        r["Properties"]["AssumeRolePolicyDocument"]
        for r in resources.values()
        if r["Type"] == "AWS::IAM::Role"
    ]

    assert granted == AGENT_ACTIONS | {"events:PutEvents"}
    assert not any(PCI in _principal_accounts(d) for d in trust)


@pytest.mark.parametrize(("parameter_file", "account"), AGENT_STACKS)
def test_only_a_subnets_own_agent_role_may_sign_with_its_key(
    parameter_file: str, account: str
) -> None:
    res = resolver("agents.yaml", parameter_file, account)
    keys = agent_keys(res)

    assert sorted(keys) == sorted(_agents(parameter_file))
    for subnet, logical in keys.items():
        key = res.resources[logical]["Properties"]
        statements = _key_statements(res, logical)
        own_role = f"arn:aws:iam::{account}:role/segscan-agent-{subnet}"
        assert (key["KeySpec"], key["KeyUsage"]) == (
            "ECC_NIST_EDWARDS25519",
            "SIGN_VERIFY",
        )
        assert _who_may(statements, "kms:Sign") == [own_role]


@pytest.mark.parametrize(("parameter_file", "account"), AGENT_STACKS)
def test_agent_keys_grant_the_coordinator_the_public_half_only(
    parameter_file: str, account: str
) -> None:
    res = resolver("agents.yaml", parameter_file, account)

    for logical in agent_keys(res).values():
        statements = _key_statements(res, logical)
        (grant,) = [
            s for s in statements if s.get("Sid") == "CoordinatorReadsPublicKey"
        ]
        assert _list(grant["Action"]) == ["kms:GetPublicKey"]
        assert _principals(grant) == [f"arn:aws:iam::{NON_PCI}:root"]
        assert grant["Condition"]["ArnEquals"]["aws:PrincipalArn"] == COORDINATOR_ROLE
        for action in KMS_KEY_ACTIONS - {"kms:GetPublicKey"}:
            assert f"arn:aws:iam::{NON_PCI}:root" not in _who_may([grant], action), (
                action
            )


def test_the_coordinator_may_only_read_agents_public_keys() -> None:
    """Through IAM it may GetPublicKey on agent keys in both accounts, nothing more."""
    res = resolver("coordinator.yaml", "coordinator.json", NON_PCI)
    statements = role_statements(res, "CoordinatorTaskRole")
    samples = [
        f"arn:aws:kms:{REGION}:{account}:key/0a1b2c3d-0000-4000-8000-00000000000{n}"
        for n, account in enumerate((PCI, NON_PCI))
    ]
    (read,) = [s for s in statements if s.get("Sid") == "ReadAgentPublicKeys"]

    for key in samples:
        assert allows(statements, "kms:GetPublicKey", key)
        for action in KMS_KEY_ACTIONS - {"kms:GetPublicKey"}:
            assert not allows(statements, action, key), (action, key)
    assert read["Condition"] == {
        "ForAnyValue:StringLike": {"kms:ResourceAliases": "alias/segscan-agent-*"}
    }


@pytest.mark.parametrize(
    ("template", "parameter_file", "key", "signer"),
    [
        ("coordinator.yaml", "coordinator.json", "SigningKey", COORDINATOR_ROLE),
        (
            "agent-image.yaml",
            "agent-image.json",
            "ScopeSigningKey",
            load_parameters("agent-image.json")["ScopeSignerArn"],
        ),
    ],
)
def test_a_signing_key_signs_only_for_its_one_principal(
    template: str, parameter_file: str, key: str, signer: str
) -> None:
    """The assignment key signs only for the coordinator task role, the scope
    key only for the segmentation owner; administrators cannot sign."""
    account = NON_PCI if template == "coordinator.yaml" else PCI
    res = resolver(template, parameter_file, account)
    key_arn = f"{{{key}.Arn}}"

    assert _who_may(_key_statements(res, key), "kms:Sign") == [signer]
    roles = [n for n, r in res.resources.items() if r["Type"] == "AWS::IAM::Role"]
    signing_roles = [
        n for n in roles if allows(role_statements(res, n), "kms:Sign", key_arn)
    ]
    assert signing_roles == (["CoordinatorTaskRole"] if key == "SigningKey" else [])


def test_the_execution_role_reads_only_the_coordinators_secrets() -> None:
    """ECS reads the operator token (and the database password it always
    needed) to hand them to the task; no other secret, and no other role."""
    res = resolver("coordinator.yaml", "coordinator.json", NON_PCI)
    token, database = "{OperatorToken}", "{Database.MasterUserSecret.SecretArn}"
    other = f"arn:aws:secretsmanager:{REGION}:{NON_PCI}:secret:other-AbCdEf"
    execution = role_statements(res, "TaskExecutionRole")
    granted = {
        (action, resource)
        for s in execution
        if s["Effect"] == "Allow"
        for action in _list(s["Action"])
        if action.startswith("secretsmanager:")
        for resource in _list(s["Resource"])
    }

    assert granted == {
        ("secretsmanager:GetSecretValue", token),
        ("secretsmanager:GetSecretValue", database),
    }
    assert not allows(execution, "secretsmanager:GetSecretValue", other)
    roles = [n for n, r in res.resources.items() if r["Type"] == "AWS::IAM::Role"]
    for logical in set(roles) - {"TaskExecutionRole"}:
        statements = role_statements(res, logical)
        for secret in (token, database, "*"):
            assert not allows(statements, "secretsmanager:GetSecretValue", secret)


def test_the_operator_token_is_generated_and_injected_as_a_secret() -> None:
    resources = resolver("coordinator.yaml", "coordinator.json", NON_PCI).resources
    secret = resources["OperatorToken"]["Properties"]
    container = resources["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    secrets = {s["Name"]: s["ValueFrom"] for s in container["Secrets"]}
    environment = {e["Name"] for e in container["Environment"]}

    assert secret["GenerateSecretString"]["PasswordLength"] >= MIN_TOKEN_CHARS
    assert secret["KmsKeyId"] == "{DataKey.Arn}"
    assert secrets["SEGSCAN_OPERATOR_TOKEN"] == "{OperatorToken}"
    assert "SEGSCAN_OPERATOR_TOKEN" not in environment
