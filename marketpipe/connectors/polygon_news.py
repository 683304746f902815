"""Massive (Polygon.io) news (``GET /v2/reference/news``) as the canonical article rows
Alpaca's become, on the shared transport.

One ticker per request (``ticker``; none: all news), ``published_utc.gte``/``.lte``,
``order=asc``, ``sort=published_utc``, ``limit`` up to 1,000 (the configured page size if
smaller), ``next_url`` followed. An article naming several of the query's symbols comes
once per symbol; the lake keeps it once.

Mapping: ``title`` is the headline, ``description`` the summary, ``publisher.name`` the
source, ``article_url`` the url, ``tickers`` the symbols, ``image_url`` one image (size
``original``); ``published_utc`` is both ``created_at`` and ``updated_at`` (Massive keeps
one time); there is no body. Massive's ids are text: ``id`` is the first 60 bits of the
sha256 of it, as a number (stable), and the record as sent, with its id, ``keywords``,
``insights`` (per-ticker sentiment and its reasoning) and ``publisher``, is kept in ``raw``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pyarrow as pa

from marketpipe.connectors.base_api_client import Page
from marketpipe.connectors.models import NEWS
from marketpipe.connectors.news import KeepsRejectedArticles, NewsQuery, validated_article
from marketpipe.connectors.polygon import PolygonApiClient
from marketpipe.connectors.transport import RequestSpec
from marketpipe.markettime.timeutil import format_rfc3339

MAX_PAGE = 1_000  # Massive's largest news page


def numeric_id(vendor_id: str) -> int:
    """A stable number for one of Massive's text ids (the first 60 bits of its sha256)."""
    return int(hashlib.sha256(vendor_id.encode()).hexdigest()[:15], 16)


def massive_article_row(record: Any) -> dict[str, Any]:
    """One Massive news record as a validated :class:`NewsArticle` row (a dict)."""
    if not isinstance(record, dict):
        raise ValueError("the record is not an object")
    vendor_id = record.get("id")
    if not isinstance(vendor_id, str) or not vendor_id:
        raise ValueError(f"article {vendor_id!r} is malformed (id: not a text id)")
    publisher = record.get("publisher") or {}
    image = record.get("image_url")
    fields = {
        "id": numeric_id(vendor_id),
        "created_at": record.get("published_utc"),
        "updated_at": record.get("published_utc"),
        "headline": record.get("title"),
        "summary": record.get("description") or "",
        "author": record.get("author") or "",
        "source": publisher.get("name") or "" if isinstance(publisher, dict) else "",
        "url": record.get("article_url") or "",
        "symbols": record.get("tickers") or [],
        "images": [{"size": "original", "url": image}] if image else [],
        "content": "",
        "raw": orjson.dumps(record, option=orjson.OPT_SORT_KEYS).decode(),
    }
    return validated_article(fields, vendor_id)


class PolygonNewsClient(KeepsRejectedArticles, PolygonApiClient[NewsQuery]):
    """Massive's news (``GET /v2/reference/news``): canonical articles; records that are
    not valid articles go to :attr:`rejected` with their reasons, as Alpaca's do."""

    dataset = NEWS

    def build_request(self, query: NewsQuery, cursor: str | None) -> RequestSpec:
        """The first request of the query's (one) symbol, or the page ``cursor`` names."""
        if cursor is not None:
            return self.continued(cursor, "news")
        params = [
            ("published_utc.gte", format_rfc3339(query.start)),
            ("published_utc.lte", format_rfc3339(query.end)),
            ("order", "asc"),
            ("sort", "published_utc"),
            ("limit", str(min(self.config.page_size, MAX_PAGE))),
        ]
        if query.symbols:
            params.insert(0, ("ticker", query.symbols[0]))
        return RequestSpec(path="/v2/reference/news", params=tuple(params), endpoint="news")

    def next_cursor(self, page: Page) -> str | None:
        """``next_url``'s path and query; ``None`` at the end."""
        return self.next_path(page, "/v2/reference/news", "news")

    def parse_page(self, page: Page, query: NewsQuery) -> pa.Table:
        """The page's valid articles; the others go to :attr:`rejected` with their reasons."""
        _, records = self.page_results(page, "news")
        return self.articles(records, page, massive_article_row)
