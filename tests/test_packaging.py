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


def test_readme_opens_with_the_main_command_and_the_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```(?:bash|sh)\n(.*?)```", readme, re.S)
    assert first_block, "README must open with a shell block"
    commands = [line for line in first_block.group(1).splitlines() if line.strip()]
    commands = [line for line in commands if not line.lstrip().startswith("#")]
    assert len(commands) == 2
    assert "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pytest" in ci
    assert os.access(ROOT / ".ci" / "run", os.X_OK)


def test_console_script_points_at_the_cli() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["marketpipe"] == "marketpipe.cli:main"
