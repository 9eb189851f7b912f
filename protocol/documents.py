"""YAML documents (policy, lab spec, scope) read into typed structs.

Errors name the file, the line and what is wrong, so a user can fix a policy
without reading a traceback.  The line comes from the YAML node tree, found by
the path msgspec reports for a validation error or by the caller's own path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

import msgspec
import yaml

T = TypeVar("T")

_PATH_PART = re.compile(r"\.([^.\[\]]+)|\[(\d+|\.\.\.)\]")
_ANY_KEY = "[...]"  # msgspec's path names a mapping entry without its key


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
            keys = _resolve_keys(self.data, kind, _parse_path(where.rstrip("`")))
            raise self.error(_humane(message), *keys) from exc


def load_document(path: str | Path) -> Document:
    """Read and parse a YAML file; raise ``DocumentError`` if it cannot be."""
    name = str(path)
    return parse_document(read_text(path), name)


def read_text(path: str | Path) -> str:
    """A file's UTF-8 text; raise ``DocumentError`` if it cannot be read as such."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DocumentError(str(path), None, f"cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise DocumentError(
            str(path), None, f"not UTF-8 text (byte {exc.start})"
        ) from exc


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
    _refuse_duplicate_keys(root, name)

    return Document(name, data, root)


def _refuse_duplicate_keys(node: yaml.Node | None, name: str) -> None:
    # YAML loaders keep the last of two equal keys; a subnet listed twice would
    # silently lose its first address, so a repeated key is an error.
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if key_node.value in seen:
                line = key_node.start_mark.line + 1
                raise DocumentError(name, line, f"key {key_node.value!r} repeated")
            seen.add(key_node.value)
            _refuse_duplicate_keys(value_node, name)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicate_keys(item, name)


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
        if index == "...":
            keys.append(_ANY_KEY)
        else:
            keys.append(int(index) if index else name)

    return keys


def _resolve_keys(data: Any, kind: Any, keys: list[str | int]) -> list[str | int]:
    """Name the mapping entries msgspec's error path leaves anonymous.

    Walks the data beside its type; at an anonymous entry, picks the first
    whose value does not convert to the mapping's value type.
    """
    resolved: list[str | int] = []
    for key in keys:
        if key == _ANY_KEY:
            if not isinstance(data, dict) or get_origin(kind) is not dict:
                break
            value_type = get_args(kind)[1]
            key = next((k for k, v in data.items() if not _fits(v, value_type)), "")
            if key == "":
                break
            kind = value_type
        else:
            kind = _field_type(kind, key)
        resolved.append(key)
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            break

    return resolved


def _field_type(kind: Any, key: str | int) -> Any:
    if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
        fields = msgspec.structs.fields(kind)
        return next((f.type for f in fields if f.encode_name == key), Any)
    args = get_args(kind)
    if get_origin(kind) in (list, tuple) and args:
        return args[0]
    if get_origin(kind) is dict and args:
        return args[1]

    return Any


def _fits(value: Any, kind: Any) -> bool:
    try:
        msgspec.convert(value, kind)
    except msgspec.ValidationError:
        return False

    return True


def _humane(message: str) -> str:
    return message.replace("Object contains unknown field", "unknown field").replace(
        "Object missing required field", "missing required field"
    )
