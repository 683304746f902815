"""Workflow config: one model, one schema file, clear errors naming the key."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from marketpipe.commands.common import load_command_settings
from marketpipe.markettime.calendar import contiguous_runs
from marketpipe.workflow.announce import adjustment_warning
from marketpipe.workflow.config_loading import (
    SCHEMA_PATH,
    apply_overrides,
    config_json_schema,
    load_settings,
    snakemake_config_entries,
)
from marketpipe.workflow.planning import plan_months
from marketpipe.workflow.run import cancel_scheduler_timers
from marketpipe.workflow.settings import ConfigError

NOW = dt.datetime(2026, 12, 1, 17, 0, tzinfo=dt.UTC)

BASE = {"symbols": ["AAPL", "MSFT"], "start": dt.date(2024, 1, 2), "end": dt.date(2024, 2, 29)}


def test_schema_file_is_generated_from_the_model() -> None:
    committed = yaml.safe_load((Path(__file__).resolve().parents[1] / SCHEMA_PATH).read_text())
    assert committed == config_json_schema(), "run: python -m marketpipe.workflow.config_loading"
    properties = committed["properties"]
    assert properties["timeframe"]["default"] == "1Min"
    assert properties["vendor"]["default"] == "demo"
    assert all("description" in spec for spec in properties.values())
    for section in committed["$defs"].values():
        assert all("description" in spec for spec in section["properties"].values())


def test_defaults_fill_in() -> None:
    settings = load_settings(BASE)
    assert settings.config.vendor == "demo"
    assert settings.config.timeframe == "1Min"
    assert str(settings.state_dir) == "data"
    assert settings.config.alpaca.feed == "sip"


def test_command_line_spellings_are_accepted() -> None:
    raw = {
        **BASE,
        "symbols": "AAPL,SPY",
        "end": "2024-03-01",
        "alpaca": {"feed": "sip", "adjustment": "raw"},
        "alpaca.feed": "iex",
        "demo.listings": {"SPY": dt.date(2024, 2, 1)},
    }
    config = load_settings(raw).config
    assert config.symbols == ["AAPL", "SPY"]
    assert config.end == dt.date(2024, 3, 1)
    assert config.alpaca.feed == "iex"
    assert config.alpaca.adjustment == "raw"
    assert config.demo.listings == {"SPY": dt.date(2024, 2, 1)}


def test_nested_values_given_as_text_are_typed_by_the_schema() -> None:
    # snakemake --config 'alpaca={requests_per_minute: 100}' delivers nested values as text.
    raw = {
        **BASE,
        "alpaca": {"requests_per_minute": "100", "feed": "iex"},
        "demo": {"faults": {"500": "0.1"}, "seed": "3"},
    }
    config = load_settings(raw).config
    assert config.alpaca.requests_per_minute == 100
    assert config.demo.faults == {"500": 0.1}
    assert config.demo.seed == 3
    with pytest.raises(ConfigError, match=r"config key alpaca\.requests_per_minute"):
        load_settings({**BASE, "alpaca": {"requests_per_minute": "many"}})


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        (
            {"symbol": ["AAPL"]},
            "config key symbol: not a MarketPipe setting; did you mean symbols?",
        ),
        ({"symbols": []}, "config key symbols"),
        ({"symbols": ["AAPL!"]}, "config key symbols.0"),
        ({"symbols": ["../../etc"]}, "config key symbols.0"),
        ({"symbols": ["AAPL", "AAPL"]}, "listed more than once: AAPL"),
        ({"start": "2024-02-30"}, "config key start"),
        ({"end": dt.date(2023, 12, 1)}, "end (2023-12-01) is before start (2024-01-02)"),
        ({"timeframe": "61Min"}, "config key timeframe"),
        ({"timeframe": "1Week"}, "spans several days"),
        ({"vendor": "tiingo"}, "config key vendor"),
        ({"data_dir": ""}, "config key data_dir"),
        ({"alpaca": {"requests_per_minute": -5}}, "config key alpaca.requests_per_minute"),
        ({"alpaca": {"base_url": "http://data.example.com"}}, "plain http; use https"),
        ({"alpaca": {"feed": "otc"}}, "config key alpaca.feed"),
        ({"alpaca": {"adjustment": "magic"}}, "adjustment 'magic' is not valid"),
        ({"demo": {"faults": {"teapot": 0.1}}}, "unknown fault kind"),
        ({"corporate_actions": {"recheck_days": -1}}, "config key corporate_actions.recheck_days"),
        (
            {
                "demo": {
                    "corporate_actions": {
                        "forward_splits": [
                            {
                                "id": "x1",
                                "symbol": "AAPL",
                                "old_rate": 1,
                                "new_rate": 4,
                                "process_date": "2024-02-12",
                            }
                        ]
                    }
                }
            },
            "config key demo.corporate_actions: corporate action 'x1': ex_date",
        ),
    ],
)
def test_bad_configs_name_the_key(changes: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({**BASE, **changes})
    assert fragment in str(info.value)


def test_a_vendor_adjusted_lake_gets_a_warning_pointing_to_adjusted_reads() -> None:
    assert adjustment_warning(load_settings(BASE)) is None
    warning = adjustment_warning(load_settings({**BASE, "alpaca": {"adjustment": "split"}}))
    assert warning is not None
    assert "alpaca.adjustment is 'split'" in warning and "goes stale" in warning
    assert "read_bars(..., adjustment='all')" in warning


def test_alpaca_vendor_needs_keys_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    monkeypatch.delenv("APCA_API_SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match="set the APCA_API_KEY_ID environment variable"):
        load_settings({**BASE, "vendor": "alpaca"})
    monkeypatch.setenv("APCA_API_KEY_ID", "PK")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "SK")
    assert load_settings({**BASE, "vendor": "alpaca"}).config.vendor == "alpaca"


def test_planning_knows_holidays_early_closes_and_dst() -> None:
    settings = load_settings({**BASE, "start": "2024-03-04", "end": "2024-12-31"})
    months = plan_months(settings.final_days)
    days = {day for month in months for day in month.days}
    assert dt.date(2024, 3, 8) in days and dt.date(2024, 3, 11) in days  # DST starts 03-10
    assert dt.date(2024, 3, 29) not in days  # Good Friday
    assert dt.date(2024, 7, 4) not in days and dt.date(2024, 12, 25) not in days
    assert dt.date(2024, 11, 29) in days  # early close is still a session
    assert dt.date(2024, 11, 28) not in days  # Thanksgiving
    assert [month.label for month in months][:2] == ["2024_03", "2024_04"]
    assert all(day.weekday() < 5 for day in days)


def test_contiguous_runs_follow_the_session_sequence() -> None:
    sessions = [dt.date(2024, 1, d) for d in (2, 3, 4, 5, 8, 9)]
    runs = contiguous_runs([sessions[0], sessions[3], sessions[4], sessions[1]], sessions)
    assert runs == [[sessions[0], sessions[1]], [sessions[3], sessions[4]]]


def test_alpaca_base_url_comes_from_the_environment_unless_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from marketpipe.workflow.settings import alpaca_client_config

    monkeypatch.setenv("APCA_API_KEY_ID", "PK")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "SK")
    monkeypatch.delenv("APCA_API_DATA_URL", raising=False)
    config = load_settings({**BASE, "vendor": "alpaca"}).config
    assert alpaca_client_config(config).base_url == "https://data.alpaca.markets"
    monkeypatch.setenv("APCA_API_DATA_URL", "https://data.sandbox.alpaca.markets")
    assert alpaca_client_config(config).base_url == "https://data.sandbox.alpaca.markets"
    pinned = load_settings({**BASE, "alpaca": {"base_url": "http://127.0.0.1:9"}}).config
    assert alpaca_client_config(pinned).base_url == "http://127.0.0.1:9"


DRY_RUN = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--nolock"]
OVERRIDE_CASES = [
    ["alpaca={adjustment: split}"],
    ["alpaca.adjustment=split"],
    ["alpaca={requests_per_minute: 50}", "alpaca={adjustment: split}"],
    ["symbols=AAPL,NVDA", "end=2024-03-28"],
    ["symbols=[MSFT]"],
    ["demo={faults: {500: 0.1}}", "demo.seed=3"],
    ["alerts={on_success: true, deadline_seconds: 5}"],
    ["corporate_actions={fetch: false}", "settle_minutes=45"],
]


@pytest.mark.parametrize("entries", OVERRIDE_CASES, ids=lambda entries: " ".join(entries))
def test_set_merges_exactly_as_snakemake_config_does(entries: list[str], tmp_path: Path) -> None:
    # The file has nested sections that an override must extend, not replace.
    (tmp_path / "config.yaml").write_text(
        "symbols: [AAPL, MSFT]\nstart: 2024-01-02\nend: 2024-02-29\n"
        "alpaca: {feed: iex, requests_per_minute: 100}\ndemo: {seed: 7, plan: free}\n"
    )
    # Snakemake's own view: a workflow that writes the config it was given.
    (tmp_path / "Snakefile").write_text(
        "import json\n"
        'configfile: "config.yaml"\n'
        'with open("seen.json", "w") as f:\n'
        "    json.dump(config, f, default=str)\n"
    )
    seen = subprocess.run(
        [*DRY_RUN, "--config", *snakemake_config_entries(entries)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert seen.returncode == 0, seen.stderr
    snakemakes = load_settings(json.loads((tmp_path / "seen.json").read_text()), now=NOW)
    ours = load_command_settings(tmp_path / "config.yaml", entries).at(NOW)
    assert ours.config == snakemakes.config
    assert ours.config.alpaca.feed == "iex"  # the file's nested key survived the override


def test_a_malformed_override_is_named() -> None:
    with pytest.raises(ConfigError, match=r"--set 1x=2"):
        apply_overrides({}, ["1x=2"])


def test_a_finished_run_cancels_snakemakes_timers_and_no_others() -> None:
    def reevaluate() -> None:
        """Stands for Snakemake's scheduler re-evaluation (a lambda of its job scheduler)."""

    def ours() -> None:
        """Anybody else's timer."""

    reevaluate.__module__ = "snakemake.scheduling.job_scheduler"
    snakemakes, others = threading.Timer(600, reevaluate), threading.Timer(600, ours)
    for timer in (snakemakes, others):
        timer.start()
    try:
        cancel_scheduler_timers()
        snakemakes.join(timeout=60)  # a cancelled timer ends at once
        assert not snakemakes.is_alive() and others.is_alive()
    finally:
        others.cancel()
        others.join(timeout=60)


def test_budget_shares_belong_to_the_active_vendor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from marketpipe.connectors.rate_budget import SharedRateLimiter
    from marketpipe.connectors.rate_limit import EvenShareRateLimiter, padded_window
    from marketpipe.workflow.vendors import shared_rate_limiter

    monkeypatch.setenv("POLYGON_API_KEY", "test-key")
    polygon = {**BASE, "vendor": "polygon", "data_dir": str(tmp_path)}
    # Alpaca's shares are Alpaca's: Polygon's jobs keep one budget of 5 a minute.
    limiter = shared_rate_limiter(load_settings({**polygon, "alpaca": {"budget_shares": 8}}))
    assert isinstance(limiter, SharedRateLimiter)
    limiter.close()
    # Polygon's own shares split Polygon's rate: 5 jobs, one request a minute each.
    shared = load_settings({**polygon, "polygon": {"budget_shares": 5}})
    limiter = shared_rate_limiter(shared)
    assert isinstance(limiter, EvenShareRateLimiter)
    assert limiter.spacing == pytest.approx(padded_window(60.0))
    # More shares than Polygon's rate allows is named against Polygon's rate.
    with pytest.raises(ConfigError, match="budget_shares \\(8\\) leaves less than one request"):
        load_settings({**polygon, "polygon": {"budget_shares": 8}})


def test_lower_case_tickers_typos_and_impossible_dates_get_plain_answers(tmp_path: Path) -> None:
    assert load_settings({**BASE, "symbols": ["aapl", " msft"]}).config.symbols == [
        "AAPL",
        "MSFT",
    ]
    with pytest.raises(ConfigError) as typo:
        load_settings({**BASE, "symbol": ["AAPL"], "alpaca": {"fed": "iex"}})
    assert sorted(str(typo.value).splitlines()[1:]) == [
        "  config key alpaca.fed: not a MarketPipe setting; did you mean alpaca.feed?",
        "  config key symbol: not a MarketPipe setting; did you mean symbols?",
    ]
    with pytest.raises(ConfigError) as impossible:
        load_settings({**BASE, "end": "2024-02-30"})
    assert str(impossible.value).splitlines()[1] == (
        "  config key end: '2024-02-30' is not a date (YYYY-MM-DD or 'today'): day is out "
        "of range for month"
    )
    config = tmp_path / "config.yaml"
    config.write_text("symbols: [AAPL]\nstart: 2024-01-02\nend: 2024-02-30\n")
    run = subprocess.run(
        [sys.executable, "-m", "marketpipe.cli", "plan", "--config", str(config)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip() == (
        f"marketpipe plan: config file {config}: day is out of range for month "
        "(a date such as 2024-02-30?)"
    )
