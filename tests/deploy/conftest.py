"""Fixtures for the deployment tests: the templates rendered once per session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.deploy.cfn_render import deployments, render


@pytest.fixture(scope="session")
def rendered_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every deployment's template with its loops expanded, as checkov reads it."""
    out = tmp_path_factory.mktemp("rendered")
    for template, parameter_file, account in deployments():
        stem = Path(parameter_file or template).stem
        target = out / f"{Path(template).stem}--{stem}--{account}.json"
        target.write_text(json.dumps(render(template, parameter_file), indent=1))

    return out
