"""The README, tried as a newcomer would: its commands run in order on a fresh copy of the
workflow, so each read example runs on the lake the quickstart alone builds; it imports only
what the quickstart installs; the run output it shows is what a run prints."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.doc_walkthrough import BIN, NOT_RUN, fenced_blocks, run_every_block, shell_commands
from tests.s3_server import S3Server
from tests.workflow_support import ROOT

README = ROOT / "README.md"
STDLIB = set(sys.stdlib_module_names)
# Distributions whose import name differs from their name.
IMPORT_NAMES = {"pyyaml": "yaml", "python-json-logger": "pythonjsonlogger"}


def test_readme_is_short() -> None:
    assert len(README.read_text().splitlines()) <= 250


@pytest.mark.workflow
def test_every_readme_command_runs_on_the_quickstart_lake(
    s3_api: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = fenced_blocks(README)
    first_read = next(i for i, (language, _) in enumerate(blocks) if language == "python")
    commands_before = [
        command
        for language, text in blocks[:first_read]
        if language == "bash"
        for command in shell_commands(text)
    ]
    # Before the first read: the quickstart and commands that only look at the lake.
    changing = [c for c in commands_before if "snakemake --cores" in c or "update" in c]
    assert changing == [".venv/bin/snakemake --cores 8"], changing
    assert run_every_block(blocks, s3_api, tmp_path, monkeypatch) >= 8


def _requirement_names(requirements: list[str]) -> set[str]:
    return {
        re.split(r"[<>=\[ ;]", requirement, maxsplit=1)[0].lower() for requirement in requirements
    }


def test_readme_examples_import_only_what_the_quickstart_installs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    quickstart = next(
        command
        for language, text in fenced_blocks(README)
        if language == "bash"
        for command in shell_commands(text)
        if "pip install" in command
    )
    extras = re.search(r"-e '?\.\[([\w,]+)\]", quickstart)
    installed = _requirement_names(project["dependencies"])
    for extra in extras.group(1).split(",") if extras else []:
        installed |= _requirement_names(project["optional-dependencies"][extra])
    modules = {"marketpipe"} | {IMPORT_NAMES.get(name, name) for name in installed}
    for language, text in fenced_blocks(README):
        if language != "python":
            continue
        for imported in re.findall(r"^(?:import|from) ([\w]+)", text, re.M):
            assert imported in modules | STDLIB, f"{imported} is not installed by {quickstart}"


@pytest.mark.workflow
def test_the_run_output_the_readme_shows_is_what_a_run_prints(tmp_path: Path) -> None:
    shown = next(
        text
        for language, text in fenced_blocks(README)
        if not language and "MarketPipe run" in text
    )
    for name in ("Snakefile", "workflow", "config", "profiles"):
        source = ROOT / name
        target = tmp_path / name
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            target.write_bytes(source.read_bytes())
    result = subprocess.run(
        [str(BIN / "snakemake"), "--cores", "8"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    printed = result.stdout + result.stderr

    def masked(text: str) -> list[str]:
        return [re.sub(r"\d{8}T\d{6}Z-[0-9a-f]{6}", "RUN", line) for line in text.splitlines()]

    lines = masked(printed)
    for line in masked(shown):
        assert line in lines, f"the README shows {line!r}; a run printed:\n{printed}"
    assert len(lines) <= 40 and len(printed.encode()) <= 8192, printed


def test_every_documented_command_is_run_or_explained() -> None:
    pages = [README, *sorted((ROOT / "docs").rglob("*.md"))]
    commands = [
        command
        for language, text in fenced_blocks(*pages)
        if language == "bash"
        for command in shell_commands(text)
    ]
    unexplained = [prefix for prefix in NOT_RUN if not any(c.startswith(prefix) for c in commands)]
    assert unexplained == [], "NOT_RUN names commands the README and docs no longer show"
