"""The AWS templates read the way CloudFormation reads them, for the deploy tests.

Templates use the AWS::LanguageExtensions transform (``Fn::ForEach``) so that
accounts, VPCs and subnets are parameters.  ``render`` expands them with a
founding parameter file; ``Resolver`` evaluates the intrinsic functions they
use, so ARNs in policies become strings a test can compare.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

AWS_DIR = Path(__file__).parents[2] / "deploy/aws"
FOUNDING = AWS_DIR / "founding"
TEMPLATES = sorted(AWS_DIR.glob("*.yaml"))
PCI, NON_PCI = "111111111111", "222222222222"
REGION = "us-east-1"

# Each template with the founding parameter files it is deployed with, and the
# account each deployment lands in.
DEPLOYMENTS: dict[str, list[tuple[str | None, str]]] = {
    "registry.yaml": [(None, NON_PCI)],
    "coordinator.yaml": [("coordinator.json", NON_PCI)],
    "agents.yaml": [("agents-pci.json", PCI), ("agents-nonpci.json", NON_PCI)],
    "change-forwarder.yaml": [
        ("change-forwarder.json", PCI),
        ("change-forwarder.json", NON_PCI),
    ],
    "agent-image.yaml": [("agent-image.json", PCI)],
}

_FN = {
    "Ref": "Ref",
    "Condition": "Condition",
    "GetAtt": "Fn::GetAtt",
}


class _TemplateLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags turned into their long forms."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = _FN.get(suffix, f"Fn::{suffix}")
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]

    return {name: value}


_TemplateLoader.add_multi_constructor("!", _tag)


def load_template(name: str) -> dict[str, Any]:
    with (AWS_DIR / name).open(encoding="utf-8") as stream:
        loaded: dict[str, Any] = yaml.load(stream, Loader=_TemplateLoader)
    return loaded


def load_parameters(name: str | None) -> dict[str, str]:
    if name is None:
        return {}
    entries = json.loads((FOUNDING / name).read_text(encoding="utf-8"))
    return {e["ParameterKey"]: e["ParameterValue"] for e in entries}


def parameter_values(template: dict[str, Any], given: dict[str, str]) -> dict[str, Any]:
    """Given values over defaults; list types split as CloudFormation splits them."""
    values: dict[str, Any] = {}
    for name, spec in template.get("Parameters", {}).items():
        raw = given.get(name, spec.get("Default"))
        if raw is None:
            raise KeyError(f"parameter {name} has no value")
        is_list = spec["Type"] == "CommaDelimitedList" or spec["Type"].startswith(
            "List<"
        )
        values[name] = str(raw).split(",") if is_list else str(raw)

    return values


def _substitute(node: Any, name: str, value: str) -> Any:
    """Replace a ForEach identifier in a fragment (``${x}``, ``&{x}``, Ref x)."""
    alnum = re.sub(r"[^A-Za-z0-9]", "", value)
    if isinstance(node, str):
        return node.replace(f"${{{name}}}", value).replace(f"&{{{name}}}", alnum)
    if isinstance(node, list):
        return [_substitute(item, name, value) for item in node]
    if isinstance(node, dict):
        if node == {"Ref": name}:
            return value
        done = {
            _substitute(k, name, value): _substitute(v, name, value)
            for k, v in node.items()
        }
        return _literal_references(done)

    return node


def _literal_references(node: dict[str, Any]) -> dict[str, Any]:
    """``Ref``/``GetAtt`` of a substituted name, as the transform leaves them."""
    ref = node.get("Ref")
    if len(node) == 1 and isinstance(ref, dict) and "Fn::Sub" in ref:
        return {"Ref": ref["Fn::Sub"]}
    target = node.get("Fn::GetAtt")
    if len(node) == 1 and isinstance(target, list) and isinstance(target[0], dict):
        return {"Fn::GetAtt": [target[0]["Fn::Sub"], target[1]]}

    return node


def _expand_section(section: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    expanded: dict[str, Any] = {}
    for key, body in section.items():
        if not key.startswith("Fn::ForEach::"):
            expanded[key] = body
            continue
        name, collection, fragment = body
        items = (
            params[collection["Ref"]] if isinstance(collection, dict) else collection
        )
        for item in items:
            for out_key, out_body in fragment.items():
                expanded[_substitute(out_key, name, item)] = _substitute(
                    copy.deepcopy(out_body), name, item
                )

    return expanded


def render(name: str, parameter_file: str | None) -> dict[str, Any]:
    """The template with its ForEach loops expanded for a founding parameter file."""
    template = load_template(name)
    params = parameter_values(template, load_parameters(parameter_file))
    for section in ("Resources", "Outputs", "Conditions"):
        if section in template:
            template[section] = _expand_section(template[section], params)
    template.pop("Transform", None)

    return template


@dataclass
class Resolver:
    """Evaluates the intrinsic functions of one rendered template."""

    template: dict[str, Any]
    params: dict[str, Any]
    account: str
    region: str = REGION
    conditions: dict[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, expr in self.template.get("Conditions", {}).items():
            self.conditions[name] = bool(self.resolve(expr))

    @property
    def resources(self) -> dict[str, Any]:
        """Resources whose Condition holds, with their properties resolved."""
        active = {
            name: spec
            for name, spec in self.template["Resources"].items()
            if self.conditions.get(spec.get("Condition", ""), True)
        }
        return {name: self.resolve(spec) for name, spec in active.items()}

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.resolve(item) for item in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            handler = getattr(self, "_" + key.replace("Fn::", "fn_"), None)
            if handler is not None:
                return handler(arg)

        return {k: self.resolve(v) for k, v in node.items()}

    def _pseudo(self, name: str) -> str | None:
        return {
            "AWS::AccountId": self.account,
            "AWS::Region": self.region,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "segscan",
            "AWS::NoValue": None,
        }.get(name, f"{{{name}}}")

    def _Ref(self, name: str) -> Any:
        if name in self.params:
            return self.params[name]
        if name.startswith("AWS::"):
            return self._pseudo(name)
        resource = self.template["Resources"][self.resolve(name)]
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Role":
            return self.resolve(props.get("RoleName", f"{{{name}}}"))

        return f"{{{self.resolve(name)}}}"

    def _fn_GetAtt(self, arg: list[Any]) -> Any:
        logical, attribute = self.resolve(arg[0]), self.resolve(arg[1])
        resource = self.template["Resources"][logical]
        props = resource.get("Properties", {})
        kind = resource["Type"]
        if attribute == "Arn" and kind == "AWS::IAM::Role" and "RoleName" in props:
            role = self.resolve(props["RoleName"])
            return f"arn:aws:iam::{self.account}:role/{role}"
        if attribute == "Arn" and kind == "AWS::SQS::Queue":
            queue = self.resolve(props["QueueName"])
            return f"arn:aws:sqs:{self.region}:{self.account}:{queue}"

        return f"{{{logical}.{attribute}}}"

    def _fn_Sub(self, arg: Any) -> str:
        text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        names = {k: self.resolve(v) for k, v in extra.items()}

        def value(match: re.Match[str]) -> str:
            ref = match.group(1)
            if ref in names:
                return str(names[ref])
            if "." in ref and not ref.startswith("AWS::"):
                return str(self._fn_GetAtt(ref.split(".", 1)))
            return str(self._Ref(ref))

        return re.sub(r"\$\{([^}!]+)\}", value, text)

    def _fn_Join(self, arg: list[Any]) -> str:
        separator, items = arg
        return str(separator).join(str(v) for v in self.resolve(items))

    def _fn_Split(self, arg: list[Any]) -> list[str]:
        separator, text = arg
        return str(self.resolve(text)).split(separator)

    def _fn_Select(self, arg: list[Any]) -> Any:
        index, items = int(self.resolve(arg[0])), self.resolve(arg[1])
        if not isinstance(items, list) or index >= len(items):
            return f"{{{items}[{index}]}}"  # known only once deployed

        return items[index]

    def _fn_If(self, arg: list[Any]) -> Any:
        name, then, otherwise = arg
        return self.resolve(then if self.conditions[name] else otherwise)

    def _fn_Equals(self, arg: list[Any]) -> bool:
        left, right = self.resolve(arg[0]), self.resolve(arg[1])
        return bool(left == right)

    def _fn_Not(self, arg: list[Any]) -> bool:
        return not self.resolve(arg[0])

    def _Condition(self, name: str) -> bool:
        return self.conditions[name]


def resolver(name: str, parameter_file: str | None, account: str) -> Resolver:
    template = render(name, parameter_file)
    params = parameter_values(load_template(name), load_parameters(parameter_file))

    return Resolver(template, params, account)


def deployments() -> Iterator[tuple[str, str | None, str]]:
    for template, runs in DEPLOYMENTS.items():
        for parameter_file, account in runs:
            yield template, parameter_file, account
