"""``/v1beta1/news`` of the simulated vendor: deterministic articles, paged as Alpaca's.

Each (symbol, New York day) has its own seeded articles, published at any hour (weekends
too), some naming other symbols of a small universe, some without summary or images or
body, and about a quarter updated hours later: until the market clock reaches the update,
the article is served as first published. Which field the real API's ``start``/``end``
filter on is unconfirmed, so the desk serves either: ``window="created_at"`` (the default)
or ``"updated_at"`` (the version served: an article updated after its day then shows up in
a later day's window, and not in its own); the order is ``updated_at`` then id, as the
reference describes, and ``page_token`` is base64 of ``"<updated_at ns>|<id>"``. On the
``free`` plan the last 15 minutes are withheld (a modelling choice: the real free plan's
rule for news is unconfirmed).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import random
from dataclasses import dataclass
from typing import Any

from marketpipe.markettime.calendar import new_york_date, new_york_midnight
from marketpipe.markettime.finality import FREE_PLAN_SIP_DELAY
from marketpipe.markettime.timeutil import format_rfc3339, parse_rfc3339
from marketpipe.simulator.wire import BadRequest

NEWS_UNIVERSE = ("AAPL", "MSFT", "SPY", "NVDA", "AMZN", "TSLA")
DEFAULT_LIMIT, MAX_LIMIT = 10, 50
DEFAULT_START = dt.datetime(2015, 1, 1, tzinfo=dt.UTC)
MAX_UPDATE_HOURS = 30  # an updated article is updated at most this long after it was created
_PARAMS = {
    "symbols",
    "start",
    "end",
    "limit",
    "sort",
    "include_content",
    "exclude_contentless",
    "page_token",
}
_AUTHORS = ("Charles Gross", "Benzinga Newsdesk", "Priya Nair", "")
_TOPICS = ("earnings", "guidance", "analyst rating", "product launch", "supply chain", "options")


@dataclass(frozen=True)
class SimulatedArticle:
    """One article of the synthetic news feed, with its later update if it has one."""

    id: int
    created_at: dt.datetime
    symbols: tuple[str, ...]
    headline: str
    summary: str
    author: str
    images: tuple[dict[str, str], ...]
    content: str
    updated_at: dt.datetime | None  # when the second version appears, if ever

    def is_updated(self, now: dt.datetime) -> bool:
        """Whether the vendor has published the second version by market time ``now``."""
        return self.updated_at is not None and self.updated_at <= now

    def version_time(self, now: dt.datetime) -> dt.datetime:
        """``updated_at`` of the version served at ``now`` (first versions: a second after
        ``created_at``, as in the recordings)."""
        if self.updated_at is not None and self.is_updated(now):
            return self.updated_at
        return self.created_at + dt.timedelta(seconds=1)

    def served(self, now: dt.datetime, include_content: bool) -> dict[str, Any]:
        """The record as the vendor sends it at market time ``now``."""
        updated = self.is_updated(now)
        return {
            "id": self.id,
            "headline": self.headline + (" (updated)" if updated else ""),
            "author": self.author,
            "created_at": format_rfc3339(self.created_at),
            "updated_at": format_rfc3339(self.version_time(now)),
            "summary": self.summary + (" Updated with comment." if updated else ""),
            "content": self.content if include_content else "",
            "url": f"https://news.example.com/{self.id}",
            "images": [dict(image) for image in self.images],
            "symbols": list(self.symbols),
            "source": "benzinga",
        }

    def sort_key(self, now: dt.datetime) -> tuple[int, int]:
        """``(updated_at in ns, id)`` of the version served at ``now``."""
        return int(self.version_time(now).timestamp()) * 10**9, self.id


@functools.lru_cache(maxsize=4096)
def articles_of(seed: int, symbol: str, day: dt.date) -> tuple[SimulatedArticle, ...]:
    """The articles first published about ``symbol`` on New York ``day`` (deterministic)."""
    rng = random.Random(f"{seed}|news|{symbol}|{day.isoformat()}")
    count = rng.choice((0, 1, 1, 2, 2, 3)) // (2 if day.weekday() >= 5 else 1)
    start = new_york_midnight(day)
    seconds = int((new_york_midnight(day + dt.timedelta(days=1)) - start).total_seconds())
    articles = []
    for index in range(count):
        key = f"{seed}|{symbol}|{day.isoformat()}|{index}"
        article_id = int(hashlib.sha256(key.encode()).hexdigest()[:12], 16)
        others = [name for name in NEWS_UNIVERSE if name != symbol]
        named = (symbol, *rng.sample(others, rng.choice((0, 0, 0, 1, 2))))
        topic = rng.choice(_TOPICS)
        images = (
            ({"size": "large", "url": f"https://img.example.com/{article_id}.jpg"},)
            if rng.random() < 0.6
            else ()
        )
        created = start + dt.timedelta(seconds=rng.randrange(seconds))
        delay = dt.timedelta(hours=rng.uniform(1, MAX_UPDATE_HOURS))
        update = created + delay if rng.random() < 0.25 else None
        articles.append(
            SimulatedArticle(
                id=article_id,
                created_at=created,
                symbols=named,
                headline=f"{symbol}: {topic} news #{index + 1} of {day.isoformat()}",
                summary=f"What the {topic} news means for {symbol}." if rng.random() < 0.6 else "",
                author=rng.choice(_AUTHORS),
                images=images,
                content=f"<p>{symbol} {topic}.</p>" if rng.random() < 0.9 else "",
                updated_at=update.replace(microsecond=0) if update else None,
            )
        )
    return tuple(sorted(articles, key=lambda article: (article.created_at, article.id)))


class NewsDesk:
    """Answers news requests from the seeded feed, as of the market's clock."""

    def __init__(self, seed: int, window: str = "created_at") -> None:
        if window not in ("created_at", "updated_at"):
            raise ValueError(f"news window must be created_at or updated_at, got {window!r}")
        self.seed = seed
        self.window = window

    def page(
        self, query: list[tuple[str, str]], now: dt.datetime, plan: str
    ) -> tuple[dict[str, Any], int]:
        """One page of ``/v1beta1/news`` and how many articles it holds."""
        params = dict(query)
        unexpected = sorted(set(params) - _PARAMS)
        if unexpected:
            raise BadRequest(f"unexpected query parameter(s): {', '.join(unexpected)}")
        wanted = {s.strip() for s in params.get("symbols", "").split(",") if s.strip()}
        start = _moment(params.get("start"), "start") or DEFAULT_START
        end = _moment(params.get("end"), "end") or now
        if end < start:
            raise BadRequest("end should not be before start")
        limit = _limit(params.get("limit"))
        sort = params.get("sort", "desc").lower()
        if sort not in ("asc", "desc"):
            raise BadRequest(f"invalid sort: {params['sort']}")
        include_content = _flag(params, "include_content")
        visible = now - FREE_PLAN_SIP_DELAY if plan == "free" else now
        last = min(end, visible)
        by_update = self.window == "updated_at"
        # By update time, an article of up to MAX_UPDATE_HOURS before the window may be in it.
        earliest = start - dt.timedelta(hours=MAX_UPDATE_HOURS) if by_update else start
        found = [
            article
            for day in _days(new_york_date(earliest), new_york_date(max(last, start)))
            for symbol in sorted(set(NEWS_UNIVERSE) | wanted)
            for article in articles_of(self.seed, symbol, day)
            if start <= (article.version_time(now) if by_update else article.created_at) <= last
            and article.created_at <= last
            and (not wanted or wanted & set(article.symbols))
            and not (_flag(params, "exclude_contentless") and not article.content)
        ]
        found.sort(key=lambda article: article.sort_key(now), reverse=sort == "desc")
        if "page_token" in params:
            after = _token_key(params["page_token"])
            found = [
                article
                for article in found
                if (
                    article.sort_key(now) > after
                    if sort == "asc"
                    else article.sort_key(now) < after
                )
            ]
        page = found[:limit]
        token = None
        if len(found) > limit:
            updated_ns, article_id = page[-1].sort_key(now)
            token = base64.b64encode(f"{updated_ns}|{article_id}".encode()).decode()
        news = [article.served(now, include_content) for article in page]
        return {"news": news, "next_page_token": token}, len(news)


def _days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=offset) for offset in range((last - first).days + 1)]


def _moment(text: str | None, name: str) -> dt.datetime | None:
    if not text:
        return None
    try:
        if len(text) == 10:
            return new_york_midnight(dt.date.fromisoformat(text))
        return parse_rfc3339(text, name)
    except ValueError:
        raise BadRequest(f"invalid {name}: {text!r} is not an RFC-3339 time or a date") from None


def _limit(text: str | None) -> int:
    try:
        limit = DEFAULT_LIMIT if text is None else int(text)
    except ValueError:
        raise BadRequest("invalid limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"invalid limit: must be between 1 and {MAX_LIMIT}")
    return limit


def _flag(params: dict[str, str], name: str) -> bool:
    value = params.get(name, "false").lower()
    if value not in ("true", "false"):
        raise BadRequest(f"invalid {name}: {value!r} (true or false)")
    return value == "true"


def _token_key(token: str) -> tuple[int, int]:
    try:
        updated, article_id = base64.b64decode(token, validate=True).decode().split("|")
        return int(updated), int(article_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("invalid page_token") from None
