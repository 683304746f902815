"""What a bars job asks for: the stream's provenance and what the security master says of
its symbols (the tickers to ask under, the days a security was listed)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from marketpipe.connectors.assets import Asset
from marketpipe.ingest.securities import is_asset_id, traded_as_now
from marketpipe.ingest.stream import KnownSecurity, StreamSettings
from marketpipe.markettime.calendar import new_york_date
from marketpipe.workflow.settings import WorkflowSettings

# A range ending this close to today may end after a rename the master has not learned yet.
RECENT = dt.timedelta(days=7)


def stream_settings(
    settings: WorkflowSettings, asset_of: Callable[[str], Asset | None] | None = None
) -> StreamSettings:
    """The provenance of the bars this configuration fetches, and what the security master
    says of its symbols. With ``asset_of`` (Alpaca's assets) and a range ending in the
    last week, a security whose asset answers to a ticker the master has not learned yet
    (renamed since its last check) is asked for under it, whichever job runs first."""
    today = new_york_date(settings.now)
    recent = asset_of is not None and settings.symbols_asof >= today - RECENT
    eve = settings.symbols_asof - dt.timedelta(days=1)
    securities = []
    for symbol, security in settings.stored_securities().items():
        traded_as = () if security.plain else security.traded_as()
        if recent and asset_of is not None and is_asset_id(security.security_id):
            asset = asset_of(security.security_id)
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
