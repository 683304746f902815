"""The docs site: it builds strictly, every page is in its navigation, the generated pages are
current, and every command and code block of its pages runs, in the navigation's order."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from marketpipe.workflow.config_reference import render_config_reference
from tests.doc_walkthrough import BIN, fenced_blocks, run_every_block
from tests.s3_server import S3Server
from tests.workflow_support import ROOT

DOCS = ROOT / "docs"


def nav_pages(nav: list[dict[str, Any]] | None = None) -> list[Path]:
    """The docs pages in the order of the site's navigation (sections' pages in place)."""
    if nav is None:
        nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    pages = []
    for entry in nav:
        target = next(iter(entry.values()))
        pages.extend(nav_pages(target) if isinstance(target, list) else [DOCS / target])
    return pages


def test_every_page_is_in_the_navigation() -> None:
    assert sorted(nav_pages()) == sorted(DOCS.rglob("*.md"))


def test_the_configuration_reference_is_generated_from_the_model() -> None:
    page = (DOCS / "configuration.md").read_text()
    assert page == render_config_reference(), (
        "regenerate: python -m marketpipe.workflow.config_reference"
    )
    for key in ("`symbols`", "`alpaca.feed`", "`s3.lease_seconds`", "`APCA_API_KEY_ID`"):
        assert key in page


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "reading" / "index.html").exists()


@pytest.mark.workflow
def test_every_docs_command_runs(
    s3_api: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = run_every_block(fenced_blocks(*nav_pages()), s3_api, tmp_path, monkeypatch)
    assert ran >= 30  # the docs' commands and examples, not a handful
