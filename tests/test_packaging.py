"""The project installs the same way everywhere: pyproject and environment.yml agree."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _normalise(requirement: str) -> tuple[str, str]:
    match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", requirement)
    assert match, requirement
    name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
    return name, match.group(2).replace(" ", "")


def test_environment_yml_lists_the_same_runtime_dependencies_as_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_deps = dict(_normalise(dep) for dep in project["dependencies"])
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_deps = dict(
        _normalise(dep)
        for dep in environment["dependencies"]
        if isinstance(dep, str) and _normalise(dep)[0] not in ("python", "pip")
    )
    assert conda_deps == pip_deps
    pip_section = next(dep for dep in environment["dependencies"] if isinstance(dep, dict))
    assert "-e ." in pip_section["pip"], "environment.yml must install the package itself"
    python = next(dep for dep in environment["dependencies"] if _normalise(str(dep))[0] == "python")
    assert python.replace("python", "") == project["requires-python"]


def test_readme_opens_with_the_main_command_and_shows_the_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    assert blocks, "README must open with a shell block"
    assert "snakemake --cores 8" in blocks[0]
    tests = [line for block in blocks for line in block.splitlines() if "-m pytest" in line]
    assert tests == [".venv/bin/pip install -e '.[dev]' && .venv/bin/python -m pytest -q -n 2"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert ".venv/bin/python -m pytest -q -n 2" in ci
    assert os.access(ROOT / ".ci" / "run", os.X_OK)


def test_console_script_points_at_the_cli() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["marketpipe"] == "marketpipe.cli:main"
