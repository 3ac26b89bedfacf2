"""Every requirement of the dev extra (pyproject.toml) is installed here.

The tests rely on them (tests/requirements.py makes each missing one a failure where it is used);
this names a missing one even where the only tests that use it are GPU tests, which skip here.
"""

from __future__ import annotations

import tomllib
from importlib import metadata

import pytest
from packaging.requirements import Requirement

from tests.conftest import REPO
from tests.requirements import DEV_EXTRA

DEV = [Requirement(r) for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]]


@pytest.mark.parametrize("requirement", DEV, ids=[r.name for r in DEV])
def test_dev_requirement_is_installed(requirement: Requirement) -> None:
    try:
        metadata.version(requirement.name)
    except metadata.PackageNotFoundError:
        pytest.fail(f"{requirement} (dev extra) is not installed: {DEV_EXTRA}", pytrace=False)
