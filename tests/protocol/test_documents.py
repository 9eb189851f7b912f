"""YAML documents: errors name the file and the line a user has to fix."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from protocol.documents import DocumentError, load_document, parse_document


class Probe(msgspec.Struct, forbid_unknown_fields=True):
    host: str
    port: int


class Inventory(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    probes: list[Probe]
    labels: dict[str, int] = msgspec.field(default_factory=dict)


INVENTORY = """\
# an inventory
name: lab
probes:
  - {host: a, port: 1}
  - host: b
    port: 2
  - host: c
    port: three
"""


def test_a_yaml_syntax_error_names_file_and_line() -> None:
    text = "name: lab\nprobes:\n  - {host: a, port: 1\n  - {host: b}\n"

    with pytest.raises(DocumentError) as info:
        parse_document(text, "inv.yaml")

    assert info.value.path == "inv.yaml"
    assert info.value.line == 4
    assert str(info.value).startswith("inv.yaml:4: invalid YAML")


def test_a_tab_indent_is_a_syntax_error_with_its_line() -> None:
    with pytest.raises(DocumentError, match=r"^inv.yaml:2: invalid YAML"):
        parse_document("name: lab\n\tprobes: []\n", "inv.yaml")


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- a\n- b\n", "42\n"])
def test_a_document_that_is_not_a_mapping_is_refused(text: str) -> None:
    with pytest.raises(DocumentError, match="expected a mapping at the top level"):
        parse_document(text, "inv.yaml")


def test_a_validation_error_deep_in_a_list_names_its_line() -> None:
    doc = parse_document(INVENTORY, "inv.yaml")

    with pytest.raises(DocumentError) as info:
        doc.convert(Inventory)

    assert info.value.line == 8
    assert str(info.value) == "inv.yaml:8: Expected `int`, got `str`"


def test_an_unknown_field_in_a_list_item_is_named_with_its_line() -> None:
    text = (
        "name: lab\nprobes:\n  - {host: a, port: 1}\n  - {host: b, port: 2, ssh: yes}\n"
    )

    with pytest.raises(DocumentError) as info:
        parse_document(text, "inv.yaml").convert(Inventory)

    assert info.value.line == 4
    assert info.value.message == "unknown field `ssh`"


def test_a_missing_field_points_at_the_mapping_that_lacks_it() -> None:
    text = "name: lab\nprobes:\n  - {host: a, port: 1}\n  - host: b\n"

    with pytest.raises(DocumentError) as info:
        parse_document(text, "inv.yaml").convert(Inventory)

    assert info.value.line == 4
    assert info.value.message == "missing required field `port`"


def test_a_document_that_fits_converts_to_the_struct() -> None:
    text = "name: lab\nprobes: [{host: a, port: 1}]\nlabels: {x: 1}\n"

    inventory = parse_document(text).convert(Inventory)

    assert inventory == Inventory("lab", [Probe("a", 1)], {"x": 1})


def test_line_finds_nested_values_and_falls_back_to_the_nearest_parent() -> None:
    doc = parse_document(INVENTORY, "inv.yaml")

    assert doc.line() == 2
    assert doc.line("probes", 1, "port") == 6
    assert doc.line("probes", 2) == 7
    assert doc.line("probes", 9, "port") == 4
    assert doc.line("nowhere") == 2


def test_error_builds_a_document_error_at_a_value() -> None:
    doc = parse_document(INVENTORY, "inv.yaml")

    error = doc.error("host c is not in scope", "probes", 2, "host")

    assert str(error) == "inv.yaml:7: host c is not in scope"
    assert (error.path, error.line, error.message) == (
        "inv.yaml",
        7,
        "host c is not in scope",
    )


def test_a_validation_error_under_a_mapping_key_names_the_entrys_line() -> None:
    text = "name: lab\nprobes: []\nlabels:\n  x: 1\n  y: two\n"

    with pytest.raises(DocumentError) as info:
        parse_document(text, "inv.yaml").convert(Inventory)

    assert info.value.line == 5


def test_load_document_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(INVENTORY, encoding="utf-8")

    doc = load_document(path)

    assert doc.path == str(path)
    assert doc.data["name"] == "lab"


def test_load_document_of_a_missing_file_says_it_cannot_read(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"

    with pytest.raises(DocumentError) as info:
        load_document(path)

    assert info.value.line is None
    assert str(info.value) == f"{path}: cannot read: No such file or directory"


def test_load_document_of_a_directory_says_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="cannot read: Is a directory"):
        load_document(tmp_path)


def test_load_document_of_a_file_that_is_not_utf8_is_a_document_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))

    with pytest.raises(DocumentError, match=r"latin1\.yaml"):
        load_document(path)
