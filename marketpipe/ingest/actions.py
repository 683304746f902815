"""Keeping the lake's corporate actions current: the workflow's ``corporate_actions`` job.

Every run asks the vendor again about a recent window of ``process_date`` (records can
arrive late, and the vendor corrects ratios after the fact), and about everything since the
range's start the first time, or when the stored file is not the one the ledger recorded.
Each symbol's file is merged (one row per id, the newest answer wins), given the reference
closes its cash dividends need, and published only when its bytes change.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.connectors import (
    AlpacaClient,
    ConnectorError,
    CorporateActionsClient,
    PolygonClient,
)
from marketpipe.connectors.alpaca import BarsQuery
from marketpipe.connectors.corporate_actions import CorporateActionsQuery
from marketpipe.connectors.errors import is_permanent, may_differ_by_symbol
from marketpipe.connectors.models import CORPORATE_ACTIONS_SCHEMA
from marketpipe.connectors.polygon_actions import PolygonCorporateActionsClient
from marketpipe.lake.actions import (
    ACTIONS_SCHEMA,
    REFERENCE_CLOSE,
    merge_actions,
    publish_actions,
    read_recorded_actions,
    with_reference_close,
)
from marketpipe.lake.ledger import ActionsEntry, CheckpointStore
from marketpipe.lake.objects import LakeStore
from marketpipe.lake.storage import as_store
from marketpipe.markettime.calendar import Session, new_york_date, previous_session
from marketpipe.markettime.finality import Finality
from marketpipe.markettime.timeframe import Timeframe

logger = logging.getLogger(__name__)

# Actions processed shortly before the range's first day can still move its bars.
LOOKBACK_BEFORE_START = dt.timedelta(days=31)
# Symbols per request: Alpaca's `limit` counts records across them, pages carry the rest.
SYMBOLS_PER_REQUEST = 100
# The reference close is the last regular-hours minute; look at the last half hour first.
_CLOSE_WINDOW = dt.timedelta(minutes=30)
_MINUTE = dt.timedelta(minutes=1)


@dataclass
class ActionsReport:
    """What one corporate-actions job did."""

    symbols: tuple[str, ...]
    fetched: int = 0  # records received
    written: list[str] = field(default_factory=list)  # symbols whose file changed
    dividends_pending: int = 0  # cash dividends whose reference close is not final yet
    failed: dict[str, str] = field(default_factory=dict)  # symbol -> the vendor's error
    permanent: set[str] = field(default_factory=set)  # failed ones a person must act on


def _windows(
    symbols: Sequence[str],
    entries: dict[str, ActionsEntry],
    stored: dict[str, pa.Table],
    first_needed: dt.date,
    today: dt.date,
    recheck_days: int,
) -> dict[dt.date, list[str]]:
    """Symbols grouped by the first ``process_date`` to ask about (again); only a file the
    ledger recorded (in ``stored``) vouches for the range its entry covers."""
    groups: dict[dt.date, list[str]] = {}
    for symbol in symbols:
        entry = entries.get(symbol)
        start = first_needed
        if entry is not None and entry.covered_from <= first_needed and symbol in stored:
            recheck = entry.covered_through - dt.timedelta(days=recheck_days)
            start = min(max(first_needed, recheck), today)
        groups.setdefault(start, []).append(symbol)
    return groups


def _fetch(
    client: CorporateActionsClient | PolygonCorporateActionsClient,
    symbols: Sequence[str],
    first: dt.date,
    last: dt.date,
) -> pa.Table:
    query = CorporateActionsQuery(symbols=tuple(symbols), start=first, end=last)
    tables = list(client.fetch_batch(query))
    fetched = pa.concat_tables(tables) if tables else CORPORATE_ACTIONS_SCHEMA.empty_table()
    return with_reference_close(fetched)


def reference_close(
    client: AlpacaClient | PolygonClient, symbol: str, session: Session
) -> float | None:
    """The raw SIP close of ``session``'s last regular-hours minute bar, from the vendor."""
    end = session.close - _MINUTE
    for start in (session.close - _CLOSE_WINDOW, session.open):
        query = BarsQuery(
            symbols=(symbol,), timeframe="1Min", start=start, end=end, feed="sip", adjustment="raw"
        )
        tables = [table for table in client.fetch_batch(query) if table.num_rows]
        if tables:
            return float(tables[-1]["close"][-1].as_py())
    return None


def _fill_reference_closes(
    table: pa.Table, client: AlpacaClient | PolygonClient, finality: Finality, now: dt.datetime
) -> tuple[pa.Table, int]:
    """Cash dividends get the close before their ex-date once that session is final;
    returns the table and how many dividends still wait."""
    closes = table[REFERENCE_CLOSE].to_pylist()
    pending = 0
    for index, (kind, symbol, ex_date) in enumerate(
        zip(
            table["type"].to_pylist(),
            table["symbol"].to_pylist(),
            table["ex_date"].to_pylist(),
            strict=True,
        )
    ):
        if kind != "cash_dividend" or closes[index] is not None or ex_date is None:
            continue
        session = previous_session(ex_date)
        if not finality.is_final(session, now):
            pending += 1
            continue
        closes[index] = reference_close(client, symbol, session)
    column = pa.array(closes, pa.float64())
    position = ACTIONS_SCHEMA.get_field_index(REFERENCE_CLOSE)
    return table.set_column(position, ACTIONS_SCHEMA.field(REFERENCE_CLOSE), column), pending


def sync_corporate_actions(
    actions_client: CorporateActionsClient | PolygonCorporateActionsClient,
    bars_client: AlpacaClient | PolygonClient,
    data_dir: Path | str,
    lake: LakeStore | Path | str,
    symbols: Sequence[str],
    start: dt.date,
    now: dt.datetime,
    *,
    recheck_days: int,
    settle: dt.timedelta,
    run_id: str,
) -> ActionsReport:
    """Fetch, merge and publish the corporate actions of ``symbols`` in ``lake`` as of
    ``now``; ``data_dir`` holds the ledger.

    A batch the vendor refuses is retried symbol by symbol, so one bad symbol fails alone;
    the report names each failure (the caller decides what a failure means for the run).
    """
    data_dir = Path(data_dir)
    lake = as_store(lake)
    today = new_york_date(now)
    first_needed = start - LOOKBACK_BEFORE_START
    # Reference closes are SIP minute bars, final like any SIP session.
    finality = Finality("sip", Timeframe.parse("1Min"), settle)
    report = ActionsReport(tuple(symbols))

    def closes(table: pa.Table) -> tuple[pa.Table, int]:
        return _fill_reference_closes(table, bars_client, finality, now)

    with CheckpointStore(data_dir) as store:
        entries = store.actions_entries()
    # Each recorded file is read once: whether it is still the ledger's, and its rows.
    stored = {
        symbol: table
        for symbol in symbols
        if symbol in entries
        and (table := read_recorded_actions(lake, symbol, entries[symbol].sha256)) is not None
    }
    windows = _windows(symbols, entries, stored, first_needed, today, recheck_days)
    recorded: list[ActionsEntry] = []
    for first, group in sorted(windows.items()):
        for batch_start in range(0, len(group), SYMBOLS_PER_REQUEST):
            batch = group[batch_start : batch_start + SYMBOLS_PER_REQUEST]
            for symbols_asked, fresh in _fetch_batch(actions_client, batch, first, today, report):
                report.fetched += fresh.num_rows
                for symbol in symbols_asked:
                    entry = _publish(
                        lake,
                        symbol,
                        fresh,
                        (first, today),
                        entries.get(symbol),
                        stored.get(symbol),
                        closes,
                        report,
                    )
                    recorded.append(dataclasses.replace(entry, run_id=run_id))
    with CheckpointStore(data_dir) as store:
        store.record_actions(recorded)
    return report


def _fetch_batch(
    client: CorporateActionsClient | PolygonCorporateActionsClient,
    batch: list[str],
    first: dt.date,
    last: dt.date,
    report: ActionsReport,
) -> list[tuple[list[str], pa.Table]]:
    """The batch's records, or each symbol's alone when the batch fails."""
    try:
        return [(batch, _fetch(client, batch, first, last))]
    except ConnectorError as exc:
        if len(batch) == 1 or not may_differ_by_symbol(exc):
            report.failed.update(dict.fromkeys(batch, str(exc)))
            if is_permanent(exc):
                report.permanent.update(batch)
            logger.error(
                f"corporate actions of {', '.join(batch)}: {exc}",
                extra={"event": "actions.failed"},
            )
            return []
    return [
        result for symbol in batch for result in _fetch_batch(client, [symbol], first, last, report)
    ]


def _publish(
    lake: LakeStore,
    symbol: str,
    fresh: pa.Table,
    window: tuple[dt.date, dt.date],
    entry: ActionsEntry | None,
    stored: pa.Table | None,
    closes: Callable[[pa.Table], tuple[pa.Table, int]],
    report: ActionsReport,
) -> ActionsEntry:
    """Merge ``symbol``'s fresh records into ``stored`` (its file, if the ledger's); publish
    it if its bytes changed."""
    first, last = window
    # A rename is the old symbol's record; the new symbol keeps it too (its ticker history).
    renamed_to = pc.and_(
        pc.equal(fresh["type"], "name_change"), pc.equal(fresh["new_symbol"], symbol)
    )
    mine = fresh.filter(pc.or_(pc.equal(fresh["symbol"], symbol), pc.fill_null(renamed_to, False)))
    merged, pending = closes(merge_actions(stored, mine, first, last))
    report.dividends_pending += pending
    trusted = entry is not None and stored is not None
    current = entry.sha256 if trusted and entry is not None else None
    written, changed = publish_actions(lake, symbol, merged, current)
    if changed:
        report.written.append(symbol)
    covered_from = min(entry.covered_from, first) if trusted and entry is not None else first
    return ActionsEntry(symbol, written.rows, written.sha256, covered_from, last)
