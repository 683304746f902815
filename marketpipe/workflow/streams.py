"""What a bars job asks for: the stream's provenance and what the security master says of
its symbols (the tickers to ask under, the days a security was listed)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from marketpipe.connectors.assets import AlpacaAssetsClient
from marketpipe.ingest.securities import is_asset_id, traded_as_now
from marketpipe.ingest.stream import KnownSecurity, StreamSettings
from marketpipe.markettime.calendar import new_york_date
from marketpipe.workflow.settings import WorkflowSettings

# A range ending this close to today may end after a rename the master has not learned yet.
RECENT = dt.timedelta(days=7)


def stream_settings(
    settings: WorkflowSettings,
    assets: AlpacaAssetsClient | None = None,
    symbols: Collection[str] | None = None,
) -> StreamSettings:
    """The provenance of the bars this configuration fetches, and what the security master
    says of ``symbols`` (default: all of its). With ``assets`` (Alpaca's) and a range ending
    in the last week, a security whose asset answers to a ticker the master has not learned
    yet (renamed since its last check) is asked for under it, whichever job runs first."""
    today = new_york_date(settings.now)
    recent = assets is not None and settings.symbols_asof >= today - RECENT
    eve = settings.symbols_asof - dt.timedelta(days=1)
    stored = {
        symbol: security
        for symbol, security in settings.stored_securities().items()
        if symbols is None or symbol in symbols
    }
    if recent and assets is not None:
        assets.prefetch(s.security_id for s in stored.values() if is_asset_id(s.security_id))
    securities = []
    for symbol, security in stored.items():
        traded_as = () if security.plain else security.traded_as()
        if recent and assets is not None and is_asset_id(security.security_id):
            asset = assets.asset(security.security_id)
            if asset is not None and asset.symbol != security.intervals[-1].ticker:
                traded_as = traded_as_now(security, asset.symbol, eve)
        securities.append((symbol, KnownSecurity(traded_as, security.life())))
    return StreamSettings(
        vendor=settings.config.vendor,
        timeframe=settings.timeframe,
        feed=settings.feed,
        adjustment=settings.adjustment,
        settle=settings.finality.settle,
        asof=settings.symbols_asof,
        securities=tuple(securities),
    )
