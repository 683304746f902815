"""Massive/Polygon news (``GET /v2/reference/news``), from the same articles as Alpaca's.

A record is ``{"id", "publisher": {"name", "homepage_url", "logo_url", "favicon_url"},
"title", "author", "published_utc", "article_url", "tickers", "image_url", "description",
"keywords", "insights": [{"ticker", "sentiment", "sentiment_reasoning"}]}`` as the official
client's ``TickerNews`` names them: the version served at the market's clock, first
published at ``published_utc`` (RFC 3339, seconds). Filters: ``ticker`` (articles naming
it), ``published_utc`` and its ``.gte``/``.gt``/``.lte``/``.lt`` forms (a date or an
instant); ``order`` (default ``desc``), ``sort=published_utc``, ``limit`` (default 10, at
most 1,000) and ``next_url`` with an opaque cursor. Ids are Massive-like (64 hex digits).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from marketpipe.markettime.calendar import new_york_date, new_york_midnight
from marketpipe.markettime.timeutil import format_rfc3339, parse_rfc3339
from marketpipe.simulator.massive_paging import offset_page, requested_limit, with_carried
from marketpipe.simulator.news_api import (
    DEFAULT_START,
    NEWS_UNIVERSE,
    SimulatedArticle,
    articles_of,
)
from marketpipe.simulator.wire import BadRequest

PATH = ["v2", "reference", "news"]
MAX_LIMIT, DEFAULT_LIMIT = 1_000, 10
_BOUNDS = ("published_utc", "published_utc.gte", "published_utc.gt", "published_utc.lte")
_PARAMS = {*_BOUNDS, "published_utc.lt", "ticker", "order", "sort", "limit", "apiKey", "offset"}
_PUBLISHER = {
    "name": "Benzinga",
    "homepage_url": "https://www.benzinga.com/",
    "logo_url": "https://s3.polygon.io/public/assets/news/logos/benzinga.svg",
    "favicon_url": "https://s3.polygon.io/public/assets/news/favicons/benzinga.ico",
}
_SENTIMENTS = ("positive", "neutral", "negative")


def massive_news_id(article: SimulatedArticle) -> str:
    """The article's id on Massive's face of the simulator."""
    return hashlib.sha256(f"massive-news|{article.id}".encode()).hexdigest()


def massive_record(article: SimulatedArticle, now: dt.datetime) -> dict[str, Any]:
    """The article as Massive sends it at market time ``now`` (its latest version)."""
    served = article.served(now, include_content=False)
    topic = served["headline"].split(": ", 1)[-1].split(" news #", 1)[0]
    record: dict[str, Any] = {
        "id": massive_news_id(article),
        "publisher": dict(_PUBLISHER),
        "title": served["headline"],
        "author": served["author"],
        "published_utc": format_rfc3339(article.created_at.replace(microsecond=0)),
        "article_url": served["url"],
        "tickers": list(article.symbols),
        "description": served["summary"],
        "keywords": [topic],
        "insights": [
            {
                "ticker": ticker,
                "sentiment": _SENTIMENTS[(article.id + index) % 3],
                "sentiment_reasoning": f"The {topic} news bears on {ticker}.",
            }
            for index, ticker in enumerate(article.symbols)
        ],
    }
    if article.images:
        record["image_url"] = article.images[0]["url"]
    return record


def _instant(text: str, name: str, *, end: bool) -> dt.datetime:
    if len(text) == 10:
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            raise BadRequest(f"{name}: expected a date or an RFC 3339 instant") from None
        return new_york_midnight(day + dt.timedelta(days=1) if end else day)
    try:
        return parse_rfc3339(text, name)
    except ValueError:
        raise BadRequest(f"{name}: expected a date or an RFC 3339 instant") from None


def news_page(
    query: list[tuple[str, str]], seed: int, now: dt.datetime, host: str, request_id: str
) -> tuple[dict[str, Any], int]:
    """One page of Massive's news, as of market time ``now``."""
    params = with_carried(query)
    unexpected = sorted(set(params) - _PARAMS)
    if unexpected:
        raise BadRequest(f"unexpected query parameter(s): {', '.join(unexpected)}")
    order, sort = params.get("order", "desc"), params.get("sort", "published_utc")
    if order not in ("asc", "desc") or sort != "published_utc":
        raise BadRequest(f"invalid order or sort: {order}, {sort}")
    limit = requested_limit(params, DEFAULT_LIMIT, MAX_LIMIT)
    first, last, after, before = DEFAULT_START, now, None, None
    if "published_utc" in params:
        first = _instant(params["published_utc"], "published_utc", end=False)
        before = _instant(params["published_utc"], "published_utc", end=True)
    if "published_utc.gte" in params:
        first = max(first, _instant(params["published_utc.gte"], "published_utc.gte", end=False))
    if "published_utc.gt" in params:
        after = _instant(params["published_utc.gt"], "published_utc.gt", end=True)
    if "published_utc.lte" in params:
        last = min(last, _instant(params["published_utc.lte"], "published_utc.lte", end=True))
    if "published_utc.lt" in params:
        before = _instant(params["published_utc.lt"], "published_utc.lt", end=False)
    ticker = params.get("ticker")
    symbols = sorted(set(NEWS_UNIVERSE) | ({ticker} if ticker else set()))
    days = [new_york_date(first) + dt.timedelta(days=n) for n in range(_span(first, last))]
    found = {
        article.id: article
        for day in days
        for symbol in symbols
        for article in articles_of(seed, symbol, day)
        if first <= article.created_at.replace(microsecond=0) <= last
        and (after is None or article.created_at.replace(microsecond=0) > after)
        and (before is None or article.created_at.replace(microsecond=0) < before)
        and article.created_at <= now
        and (ticker is None or ticker in article.symbols)
    }
    ordered = sorted(
        found.values(),
        key=lambda a: (a.created_at.replace(microsecond=0), massive_news_id(a)),
        reverse=order == "desc",
    )
    chosen, more = offset_page(ordered, params, limit, host, "/v2/reference/news")
    page = [massive_record(article, now) for article in chosen]
    payload: dict[str, Any] = {"results": page, "status": "OK", "request_id": request_id}
    payload["count"] = len(page)
    if more is not None:
        payload["next_url"] = more
    return payload, len(page)


def _span(first: dt.datetime, last: dt.datetime) -> int:
    return max(0, (new_york_date(last) - new_york_date(first)).days + 1)
