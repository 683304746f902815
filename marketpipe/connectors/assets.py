"""Alpaca assets (``GET /v2/assets/{symbol}``, ``GET /v2/assets``) on the trading API host.

An asset is what a symbol names today: its stable ``id`` (kept across a symbol-only change;
a CUSIP change makes the asset ``inactive`` and adds a new one) and ``status`` (``active``,
or ``inactive`` once delisted). Alpaca has no listing history, so this is the one place its
API says whether a ticker is in use now and by which asset; an unknown symbol is a 404.
The endpoint lives on the trading API (``APCA_API_BASE_URL``, default
``https://api.alpaca.markets``), not the data host, with the same keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from marketpipe.connectors.alpaca import AlpacaDataClient
from marketpipe.connectors.base_api_client import Page
from marketpipe.connectors.config import AlpacaConfig
from marketpipe.connectors.errors import ApiError, ResponseFormatError
from marketpipe.connectors.models import Dataset
from marketpipe.connectors.transport import RequestSpec


class Asset(BaseModel):
    """One Alpaca asset: what a symbol names today."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(min_length=1, description="The asset's id, kept across symbol changes")
    symbol: str = Field(min_length=1, description="Its symbol today (the last, if inactive)")
    name: str | None = Field(None, description="The company's name")
    status: str = Field(pattern="^(active|inactive)$", description="inactive once delisted")
    exchange: str | None = Field(None, description="Its listing exchange")


ASSETS = Dataset("assets", Asset)
# Asking about more symbols than this at once lists the active assets in one request
# instead (real Alpaca's list is ~12,000 assets, a few MB: cheaper than this many requests
# against a 200-a-minute budget).
LIST_ABOVE = 10
_TICKER = r"^[A-Z][A-Z0-9]{0,9}(\.[A-Z0-9]{1,4})?$"
_ASSET_ID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


class AssetsQuery(BaseModel):
    """One symbol's (or asset id's) asset, or every asset of a ``status``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    symbol: str | None = Field(
        None,
        pattern=rf"{_TICKER}|{_ASSET_ID}",
        description="A ticker or an asset id (a UUID); None: list them",
    )
    status: Literal["active", "inactive"] | None = Field(None, description="Listing filter")


class AlpacaAssetsClient(AlpacaDataClient[AssetsQuery]):
    """Alpaca's assets, through the same transport, budget and keys as its market data."""

    dataset = ASSETS

    def __init__(self, config: AlpacaConfig, **options: Any) -> None:
        super().__init__(config.model_copy(update={"base_url": config.trading_url}), **options)
        self._assets: dict[str, Asset | None] = {}
        self._listed = False

    def build_request(self, query: AssetsQuery, cursor: str | None) -> RequestSpec:
        """``/v2/assets/{symbol}``, or the list filtered by status (one page, no cursor)."""
        if query.symbol is not None:
            return RequestSpec(path=f"/v2/assets/{query.symbol}", endpoint="assets")
        params = (("status", query.status),) if query.status else ()
        params += (("asset_class", "us_equity"),)
        return RequestSpec(path="/v2/assets", params=params, endpoint="assets")

    def next_cursor(self, page: Page) -> str | None:
        """The assets endpoints answer in one page."""
        return None

    def parse_page(self, page: Page, query: AssetsQuery) -> pa.Table:
        """An asset object, or a list of them, as rows."""
        payload = page.payload
        records = payload if isinstance(payload, list) else [payload]
        try:
            rows = [Asset.model_validate(record).model_dump() for record in records]
        except ValueError as exc:
            raise ResponseFormatError(f"assets page {page.number}: {exc}") from None
        return pa.Table.from_pylist(rows, schema=ASSETS.schema)

    def prefetch(self, keys: Iterable[str]) -> None:
        """Learn the assets of ``keys`` (tickers or asset ids) before they are asked for one
        by one: when more than :data:`LIST_ABOVE` are new, from one listing of the active
        assets. A key not in it (inactive, renamed away, unknown) is asked for by itself."""
        new = {key for key in keys if key not in self._assets}
        if len(new) <= LIST_ABOVE or self._listed:
            return
        self._listed = True
        listing = pa.concat_tables(self.fetch_batch(AssetsQuery(status="active")))
        for row in listing.to_pylist():
            asset = Asset(**row)
            self._assets.setdefault(asset.symbol, asset)
            self._assets.setdefault(asset.id, asset)

    def asset(self, symbol: str) -> Asset | None:
        """The asset ``symbol`` names today, ``None`` when Alpaca knows no such asset."""
        cache = self._assets
        if symbol not in cache:
            try:
                table = pa.concat_tables(self.fetch_batch(AssetsQuery(symbol=symbol)))
            except ApiError as error:
                if error.status != 404:
                    raise
                cache[symbol] = None
            else:
                rows = table.to_pylist()
                cache[symbol] = Asset(**rows[0]) if rows else None
        return cache[symbol]
