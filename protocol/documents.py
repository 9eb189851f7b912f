"""YAML documents (policy, lab spec, scope) read into typed structs.

Errors name the file, the line and what is wrong, so a user can fix a policy
without reading a traceback.  The line comes from the YAML node tree, found by
the path msgspec reports for a validation error or by the caller's own path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import yaml

T = TypeVar("T")

_PATH_PART = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")


class DocumentError(ValueError):
    """A YAML document that cannot be used, with where and why."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line
        self.message = message


@dataclass(frozen=True)
class Document:
    """A parsed YAML file that remembers where each value came from."""

    path: str
    data: Any
    root: yaml.Node | None

    def line(self, *keys: str | int) -> int | None:
        """The 1-based line of the value at ``keys``, or of its nearest parent."""
        node = self.root
        line = node.start_mark.line + 1 if node is not None else None
        for key in keys:
            node = _child(node, key)
            if node is None:
                break
            line = node.start_mark.line + 1

        return line

    def error(self, message: str, *keys: str | int) -> DocumentError:
        """An error about the value at ``keys``."""
        return DocumentError(self.path, self.line(*keys), message)

    def convert(self, kind: type[T]) -> T:
        """The document as ``kind``; raise ``DocumentError`` if it does not fit."""
        try:
            return msgspec.convert(self.data, kind)
        except msgspec.ValidationError as exc:
            message, _, where = str(exc).partition(" - at `")
            keys = _parse_path(where.rstrip("`"))
            raise self.error(_humane(message), *keys) from exc


def load_document(path: str | Path) -> Document:
    """Read and parse a YAML file; raise ``DocumentError`` if it cannot be."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DocumentError(name, None, f"cannot read: {exc.strerror}") from exc

    return parse_document(text, name)


def parse_document(text: str, name: str = "<string>") -> Document:
    """Parse YAML text; raise ``DocumentError`` with the line of a syntax error."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise DocumentError(name, line, f"invalid YAML: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise DocumentError(name, None, f"invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise DocumentError(name, 1, "expected a mapping at the top level")

    return Document(name, data, root)


def _child(node: yaml.Node | None, key: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.value == key or str(key_node.value) == str(key):
                return value_node  # type: ignore[no-any-return]
    in_range = isinstance(key, int) and 0 <= key < len(getattr(node, "value", ()))
    if isinstance(node, yaml.SequenceNode) and in_range:
        return node.value[key]  # type: ignore[no-any-return]

    return None


def _parse_path(where: str) -> list[str | int]:
    keys: list[str | int] = []
    for name, index in _PATH_PART.findall(where.removeprefix("$")):
        keys.append(int(index) if index else name)

    return keys


def _humane(message: str) -> str:
    return message.replace("Object contains unknown field", "unknown field").replace(
        "Object missing required field", "missing required field"
    )
