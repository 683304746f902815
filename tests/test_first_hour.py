"""A newcomer's first hour: a lake they can only read, what the lake holds, a chart, CSV for a
spreadsheet, and one-line answers to a bad environment variable, a mistyped lake path and a
range that is all in the future."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from marketpipe.commands.export import presented
from tests.workflow_support import (
    ROOT,
    copy_of,
    lake_hashes,
    marketpipe_command,
    snakemake_command,
    write_config,
)


def run(workdir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        marketpipe_command(*args),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )


def _can_mount_read_only(tmp_path: Path) -> bool:
    probe = tmp_path / "probe"
    probe.mkdir()
    script = f"mount --bind -o ro {probe} {probe} && ! touch {probe}/x 2>/dev/null"
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True)
    return shutil.which("unshare") is not None and done.returncode == 0


@pytest.mark.workflow
def test_a_lake_this_user_cannot_write_can_be_inspected(reference: Path, tmp_path: Path) -> None:
    if not _can_mount_read_only(tmp_path):
        pytest.skip("needs a private mount namespace (unshare -m) to mount the lake read-only")
    workdir = copy_of(reference, tmp_path)
    before = lake_hashes(workdir)
    cache = tmp_path / "cache"
    python = f"{sys.executable} -m marketpipe.cli"
    commands = [
        f"{python} status --config config.yaml",
        f"{python} plan --config config.yaml",
        f"{python} verify --config config.yaml",
        f"{python} export --config config.yaml --start 2024-01-02 --output {tmp_path}/out.csv",
        f"{python} plot AAPL --config config.yaml --start 2024-01-02 --output {tmp_path}/c.png",
        f"{python} reconcile lake lake --start 2024-01-02 --end 2024-01-31",
    ]
    script = (
        "mount --bind -o ro lake lake || exit 8; touch lake/x 2>/dev/null && exit 9; "
        + "; ".join(
            f"{command} > {tmp_path}/{index}.out 2> {tmp_path}/{index}.err; "
            f"echo $? >> {tmp_path}/rc"
            for index, command in enumerate(commands)
        )
    )
    mounted = subprocess.run(
        ["unshare", "-m", "sh", "-c", script],
        cwd=workdir,
        env={**os.environ, "MARKETPIPE_CACHE_DIR": str(cache)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert mounted.returncode == 0, mounted.stderr
    codes = (tmp_path / "rc").read_text().split()
    for index, command in enumerate(commands):
        err = (tmp_path / f"{index}.err").read_text()
        assert codes[index] == "0", f"{command}: {err}"
        # Those reading the ledger say once where its copy is; the others read files only.
        said = 1 if any(name in command for name in (" status ", " plan ", " verify ")) else 0
        assert err.count("is read-only here") == said, f"{command}: {err}"
    assert (
        "41/41" in (tmp_path / "0.out").read_text() or "61/61" in (tmp_path / "0.out").read_text()
    )
    assert lake_hashes(workdir) == before
    assert not (workdir / "lake" / "x").exists()


@pytest.mark.workflow
def test_status_shows_every_symbol_the_lake_holds_also_outside_the_config(
    reference: Path, tmp_path: Path
) -> None:
    workdir = copy_of(reference, tmp_path)
    write_config(workdir, symbols=["AAPL"])  # the lake also holds MSFT
    text = run(workdir, "status")
    assert text.returncode == 0, text.stderr
    assert "in the lake: 2 symbol(s), 1 not in the config (marked *)" in text.stdout
    assert "  MSFT*     2024-01-02 2024-03-28       61     0" in text.stdout
    document = json.loads(run(workdir, "status", "--json").stdout)
    by_symbol = {entry["symbol"]: entry for entry in document["contents"]}
    assert by_symbol["MSFT"]["in_config"] is False and by_symbol["AAPL"]["in_config"] is True
    assert by_symbol["MSFT"]["partitions"] == 61 and by_symbol["MSFT"]["gaps"] == 0
    assert by_symbol["MSFT"]["bytes"] > 0 and by_symbol["MSFT"]["rows"] > 0
    assert document["config"]["complete"] is True and document["holds"]["vendor"] == "demo"
    incomplete = run(workdir, "status", "--json", "--require-complete", "--set", "end=2024-04-05")
    assert incomplete.returncode == 1 and json.loads(incomplete.stdout)["config"]["missing"] == 5


@pytest.mark.workflow
def test_plot_draws_candles_for_a_short_range_and_closes_for_a_long_one(
    reference: Path, tmp_path: Path
) -> None:
    workdir = copy_of(reference, tmp_path)
    day = run(workdir, "plot", "aapl", "--start", "2024-01-05")
    assert day.returncode == 0, day.stderr
    assert day.stdout.strip() == "wrote AAPL-2024-01-05-2024-01-05.png: 78 5Min candles of AAPL"
    assert (workdir / "AAPL-2024-01-05-2024-01-05.png").read_bytes()[:4] == b"\x89PNG"
    page = run(
        workdir,
        "plot",
        "MSFT",
        "--start",
        "2024-01-02",
        "--end",
        "2024-03-28",
        "--output",
        "msft.html",
    )
    assert page.returncode == 0 and "61 1Day candles of MSFT" in page.stdout
    assert "data:image/png;base64," in (workdir / "msft.html").read_text()
    wrong = run(workdir, "plot", "AAPL", "--start", "2024-01-05", "--output", "chart.jpg")
    assert wrong.returncode == 1 and "must end in .png or .html" in wrong.stderr


@pytest.mark.workflow
def test_csv_export_in_new_york_time_with_rounded_prices(reference: Path, tmp_path: Path) -> None:
    workdir = copy_of(reference, tmp_path)
    result = run(
        workdir,
        "export",
        "--symbols",
        "AAPL",
        "--start",
        "2024-01-02",
        "--output",
        "aapl.csv",
        "--timezone",
        "America/New_York",
        "--decimals",
        "2",
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((workdir / "aapl.csv").open()))
    assert rows[0]["timestamp"].startswith("2024-01-02 04:00:00") and rows[0]["timestamp"].endswith(
        "-0500"
    )
    assert all(len(row["close"].partition(".")[2]) <= 2 for row in rows)
    bad = run(
        workdir,
        "export",
        "--symbols",
        "AAPL",
        "--start",
        "2024-01-02",
        "--output",
        "a.csv",
        "--timezone",
        "Mars/Base",
    )
    assert bad.returncode == 1 and "--timezone 'Mars/Base' is not a time zone name" in bad.stderr


def test_presenting_a_table_keeps_its_schema() -> None:
    lake_schema = pa.schema(
        [
            pa.field("timestamp", pa.timestamp("ns", "UTC"), nullable=False),
            pa.field("close", pa.float64(), nullable=False),
        ],
        metadata={b"marketpipe": b"1"},
    )
    table = pa.Table.from_pylist(
        [{"timestamp": dt.datetime(2024, 1, 2, 14, 30, tzinfo=dt.UTC), "close": 187.1549}],
        schema=lake_schema,
    )
    assert presented(table, "UTC", None).equals(table, check_metadata=True)
    shown = presented(table, "America/New_York", 2)
    assert [field.nullable for field in shown.schema] == [False, False]
    assert shown.schema.metadata == lake_schema.metadata
    assert shown.schema.field("timestamp").type.tz == "America/New_York"
    assert shown.column("close").to_pylist() == [187.15]


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("MARKETPIPE_NOW", "garbage", "environment variable MARKETPIPE_NOW='garbage'"),
        ("MARKETPIPE_STATE_DIR", "/proc/x", "environment variable MARKETPIPE_STATE_DIR: /proc/x"),
        ("MARKETPIPE_CONSOLE", "loud", "environment variable MARKETPIPE_CONSOLE: 'loud'"),
    ],
)
def test_a_bad_environment_variable_is_one_line(
    tmp_path: Path, variable: str, value: str, named: str
) -> None:
    write_config(tmp_path)
    for args in (("plan",), ("update", "--workflow", str(ROOT))):
        result = run(tmp_path, *args, **{variable: value})
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and named in result.stderr, result.stderr
    dry = subprocess.run(
        snakemake_command(tmp_path, "-n"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, variable: value},
    )
    assert dry.returncode == 2 and f"[marketpipe] {named}" in dry.stderr, dry.stderr
    assert "File " not in dry.stderr and "Traceback" not in dry.stderr


def test_a_lake_whose_parent_does_not_exist_is_a_typo_not_a_new_tree(tmp_path: Path) -> None:
    write_config(tmp_path, data_dir=str(tmp_path / "mnt" / "dat" / "lake"))
    result = run(tmp_path, "plan")
    assert result.returncode == 2
    assert f"{tmp_path / 'mnt' / 'dat'} does not exist" in result.stderr
    assert not (tmp_path / "mnt").exists()


@pytest.mark.workflow
def test_a_range_all_in_the_future_says_when_its_first_session_is_final(tmp_path: Path) -> None:
    write_config(tmp_path, start="2027-01-04", end="2027-01-08")
    result = run(tmp_path, "update", "--workflow", str(ROOT))
    assert result.returncode == 0, result.stderr
    assert "partitions: none planned (no session of the range is final yet)" in result.stdout
    assert "did not finish" not in result.stdout + result.stderr
    assert "complete: all 0" not in result.stdout
    assert "the first, 2027-01-04, is final at 2027-01-04 20:30 EST" in result.stdout
