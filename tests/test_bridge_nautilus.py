"""The lake as a NautilusTrader catalog, read back with Nautilus's own reader and run through
its BacktestEngine (the ``backtest`` extra)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
from nautilus_trader.config import LoggingConfig
from nautilus_trader.model.currencies import USD
from nautilus_trader.model.data import Bar, BarType
from nautilus_trader.model.enums import AccountType, OmsType, OrderSide
from nautilus_trader.model.identifiers import Venue
from nautilus_trader.model.objects import Money, Quantity
from nautilus_trader.persistence.catalog import ParquetDataCatalog
from nautilus_trader.trading.strategy import Strategy

from marketpipe.bridges.nautilus import METADATA_FILE, write_catalog
from marketpipe.cli import main
from marketpipe.lake.reader import MissingPartitionsError, read_bars

FIRST, LAST = dt.date(2024, 2, 5), dt.date(2024, 2, 16)  # AAPL splits 4:1 on 2024-02-12
MINUTE_NS = 60 * 10**9


def catalog_rows(path: Path, bar_type: str) -> list[tuple]:
    """Each bar Nautilus's catalog reader returns: ts_event, ts_init, prices, volume."""
    bars = ParquetDataCatalog(str(path)).bars(bar_types=[bar_type])
    return [
        (
            bar.ts_event,
            bar.ts_init,
            float(bar.open.as_decimal()),
            float(bar.high.as_decimal()),
            float(bar.low.as_decimal()),
            float(bar.close.as_decimal()),
            float(bar.volume.as_decimal()),
        )
        for bar in bars
    ]


def expected_rows(lake: pa.Table, decimals: int) -> tuple[list[tuple], int]:
    """The lake's bars as the catalog must hold them (stamped at the close, high/low widened
    to hold open/close), and how many were widened."""
    rows, widened = [], 0
    for bar in lake.to_pylist():
        o, h, lo, c = (round(bar[name], decimals) for name in ("open", "high", "low", "close"))
        high, low = max(h, o, c), min(lo, o, c)
        widened += (high, low) != (h, lo)
        stamp = int(bar["timestamp"].timestamp()) * 10**9 + MINUTE_NS
        rows.append((stamp, stamp, o, high, low, c, float(round(bar["volume"]))))
    return rows, widened


def test_the_catalog_holds_the_lakes_bars_stamped_at_their_close(
    reference: Path, tmp_path: Path
) -> None:
    data_dir = reference / "lake"
    export = write_catalog(tmp_path / "catalog", ["AAPL", "MSFT"], FIRST, LAST, data_dir=data_dir)
    for symbol in ("AAPL", "MSFT"):
        lake = read_bars(symbol, FIRST, LAST, data_dir=data_dir)
        expected, widened = expected_rows(lake, 2)
        assert catalog_rows(tmp_path / "catalog", f"{symbol}.ALPACA-1-MINUTE-LAST-EXTERNAL") == (
            expected
        )
        assert export.symbols[symbol].widened == widened
    # The simulator serves ~0.3% of bars with open or close outside [low, high], as real
    # feeds do: none is dropped.
    assert export.widened > 0
    written = json.loads((tmp_path / "catalog" / METADATA_FILE).read_text())
    assert (written["adjustment"], written["venue"], written["bars"]) == (
        "raw",
        "ALPACA",
        export.bars,
    )
    assert "close" in written["timestamps"]
    (instrument,) = ParquetDataCatalog(str(tmp_path / "catalog")).instruments(
        instrument_ids=["AAPL.ALPACA"]
    )
    assert (instrument.price_precision, instrument.info["adjustment"]) == (2, "raw")


def test_an_adjusted_catalog_says_so_and_holds_the_adjusted_prices(
    reference: Path, tmp_path: Path
) -> None:
    data_dir = reference / "lake"
    export = write_catalog(
        tmp_path / "adjusted",
        "AAPL",
        FIRST,
        LAST,
        data_dir=data_dir,
        venue="XNAS",
        adjustment="split",
    )
    lake = read_bars("AAPL", FIRST, LAST, data_dir=data_dir, adjustment="split")
    precision = export.symbols["AAPL"].price_precision
    expected, _ = expected_rows(lake, precision)
    assert catalog_rows(tmp_path / "adjusted", "AAPL.XNAS-1-MINUTE-LAST-EXTERNAL") == expected
    before_split = lake.filter(
        pc.less(lake["timestamp"], pa.scalar(dt.datetime(2024, 2, 12, tzinfo=dt.UTC)))
    )
    raw = read_bars("AAPL", FIRST, FIRST, data_dir=data_dir)
    assert before_split["open"][0].as_py() == pytest.approx(raw["open"][0].as_py() / 4)
    assert json.loads((tmp_path / "adjusted" / METADATA_FILE).read_text())["adjustment"] == "split"


class BuyAndHold(Strategy):
    """Buys 10 shares on the first bar and holds them, counting the bars it sees."""

    def __init__(self, bar_type: BarType) -> None:
        super().__init__()
        self.bar_type = bar_type
        self.seen: list[Bar] = []

    def on_start(self) -> None:
        self.subscribe_bars(self.bar_type)

    def on_bar(self, bar: Bar) -> None:
        self.seen.append(bar)
        if len(self.seen) == 1:
            order = self.order_factory.market(
                bar.bar_type.instrument_id, OrderSide.BUY, Quantity.from_int(10)
            )
            self.submit_order(order)


def test_a_backtest_engine_runs_over_the_exported_catalog(
    reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(reference)
    output = tmp_path / "catalog"
    code = main(
        [
            "export",
            "--config",
            "config.yaml",
            "--format",
            "nautilus",
            "--symbols",
            "AAPL",
            "--start",
            str(FIRST),
            "--end",
            str(LAST),
            "--output",
            str(output),
        ]
    )
    assert code == 0
    catalog = ParquetDataCatalog(str(output))
    bar_type = BarType.from_str("AAPL.ALPACA-1-MINUTE-LAST-EXTERNAL")
    engine = BacktestEngine(BacktestEngineConfig(logging=LoggingConfig(bypass_logging=True)))
    try:
        engine.add_venue(
            venue=Venue("ALPACA"),
            oms_type=OmsType.NETTING,
            account_type=AccountType.CASH,
            base_currency=USD,
            starting_balances=[Money(1_000_000, USD)],
        )
        for instrument in catalog.instruments():
            engine.add_instrument(instrument)
        engine.add_data(catalog.bars(bar_types=[str(bar_type)]))
        strategy = BuyAndHold(bar_type)
        engine.add_strategy(strategy)
        engine.run()
        fills = engine.trader.generate_order_fills_report()
    finally:
        engine.dispose()
    lake = read_bars("AAPL", FIRST, LAST, data_dir=reference / "lake")
    assert len(strategy.seen) == lake.num_rows
    (fill,) = fills.itertuples()
    # The order fills on the bar it was sent on, at that bar's close: the lake's first bar,
    # seen when it closed.
    assert float(fill.avg_px) == round(lake["close"][0].as_py(), 2)
    assert fill.ts_last.value == lake["timestamp"][0].value + MINUTE_NS


def test_export_refuses_what_would_lose_data_and_leaves_nothing_half_written(
    reference: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(reference)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    common = ["export", "--config", "config.yaml", "--format", "nautilus", "--start", str(FIRST)]
    assert main([*common, "--output", str(taken)]) == 1
    assert "is not an empty directory" in capsys.readouterr().err
    assert [path.name for path in taken.iterdir()] == ["notes.txt"]
    assert main([*common, "--output", str(tmp_path / "c"), "--timeframe", "5Min"]) == 2
    assert "--timeframe" in capsys.readouterr().err
    with pytest.raises(MissingPartitionsError, match="2024-04-01"):
        write_catalog(
            tmp_path / "late", "AAPL", FIRST, dt.date(2024, 4, 1), data_dir=reference / "lake"
        )
    assert list(tmp_path.iterdir()) == [taken]  # no catalog, no scratch directory
