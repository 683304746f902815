"""Alpaca news (``GET /v1beta1/news``): requests and page parsing, on the shared base.

A third data set through the same ``BaseApiClient`` as the bars and corporate actions: the
same keys, transport, retries, rate budget and ``page_token`` loop. Each article becomes one
:class:`~marketpipe.connectors.models.NewsArticle` row; a record that is not a valid article
(no id, a timestamp without an offset, no headline ...) is refused with its reason and kept
in :attr:`NewsClient.rejected`, never dropped silently, while the page's valid articles go on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from marketpipe.connectors.alpaca import AlpacaDataClient
from marketpipe.connectors.base_api_client import Page
from marketpipe.connectors.errors import ResponseFormatError
from marketpipe.connectors.models import NEWS, NEWS_SCHEMA, NewsArticle, Symbol
from marketpipe.connectors.transport import RequestSpec
from marketpipe.markettime.timeutil import format_rfc3339

MAX_PAGE = 50  # Alpaca's largest `limit` for news
# Fields some records leave out when empty; read as empty rather than refused.
_OPTIONAL_TEXT = ("summary", "author", "url", "content", "source")


class NewsQuery(BaseModel):
    """Which articles to fetch: symbols (none: all news) and a time range, oldest first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    symbols: tuple[Symbol, ...] = Field((), description="Tickers the articles must name")
    start: AwareDatetime = Field(description="Earliest article time (inclusive)")
    end: AwareDatetime = Field(description="Latest article time (inclusive)")
    include_content: bool = Field(False, description="Ask for each article's body (HTML)")
    exclude_contentless: bool = Field(False, description="Leave out articles without a body")

    @model_validator(mode="after")
    def _check(self) -> NewsQuery:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) is not after start ({self.start})")
        return self


@dataclass(frozen=True)
class RejectedArticle:
    """A record the vendor sent that is not a valid article: why, and the record as sent."""

    reason: str
    record: str  # JSON
    page: int


def article_row(record: Any) -> dict[str, Any]:
    """One vendor record as a validated :class:`NewsArticle` row (a dict)."""
    if not isinstance(record, dict):
        raise ValueError("the record is not an object")
    fields = {key: record.get(key) for key in NewsArticle.model_fields}
    for key in _OPTIONAL_TEXT:
        fields[key] = "" if fields[key] is None else fields[key]
    for key in ("symbols", "images"):
        fields[key] = [] if fields[key] is None else fields[key]
    fields["raw"] = None  # every field Alpaca sends has a column
    return validated_article(fields, record.get("id"))


def validated_article(fields: dict[str, Any], vendor_id: Any) -> dict[str, Any]:
    """``fields`` as a validated :class:`NewsArticle` row, or a ``ValueError`` naming the
    article (``vendor_id``) and each reason."""
    try:
        return NewsArticle.model_validate(fields).model_dump()
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or 'record'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ValueError(f"article {vendor_id!r} is malformed ({reasons})") from None


class KeepsRejectedArticles:
    """Mixed into a news client: the records that are not valid articles are kept in
    :attr:`rejected` with their reasons, never dropped silently."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """As the client's; :attr:`rejected` starts empty."""
        super().__init__(*args, **kwargs)
        self.rejected: list[RejectedArticle] = []
        self._rejected_lock = threading.Lock()

    def articles(
        self, records: list[Any], page: Page, row: Callable[[Any], dict[str, Any]]
    ) -> pa.Table:
        """The valid articles of ``records`` (each made a row by ``row``, which raises
        ``ValueError`` for an invalid one); the others go to :attr:`rejected`."""
        rows = []
        for record in records:
            try:
                rows.append(row(record))
            except ValueError as exc:
                raw = orjson.dumps(record, option=orjson.OPT_SORT_KEYS).decode()
                with self._rejected_lock:
                    self.rejected.append(RejectedArticle(str(exc), raw, page.number))
        return pa.Table.from_pylist(rows, schema=NEWS_SCHEMA)


class NewsClient(KeepsRejectedArticles, AlpacaDataClient[NewsQuery]):
    """Alpaca Market Data ``GET /v1beta1/news`` (same host and keys as the bars)."""

    dataset = NEWS

    def build_request(self, query: NewsQuery, cursor: str | None) -> RequestSpec:
        """The request for ``query``'s page at ``cursor``, oldest first."""
        params = [
            ("start", format_rfc3339(query.start)),
            ("end", format_rfc3339(query.end)),
            ("limit", str(min(self.config.page_size, MAX_PAGE))),
            ("sort", "asc"),
            ("include_content", str(query.include_content).lower()),
            ("exclude_contentless", str(query.exclude_contentless).lower()),
        ]
        if query.symbols:
            params.insert(0, ("symbols", ",".join(query.symbols)))
        if cursor is not None:
            params.append(("page_token", cursor))
        return RequestSpec(path="/v1beta1/news", params=tuple(params), endpoint="news")

    def parse_page(self, page: Page, query: NewsQuery) -> pa.Table:
        """The page's valid articles; the others go to :attr:`rejected` with their reasons."""
        where = f"{page.request.name} page {page.number}"
        payload = page.payload
        records = payload.get("news") if isinstance(payload, dict) else None
        if records is None and isinstance(payload, dict) and "news" in payload:
            records = []
        if not isinstance(records, list):
            raise ResponseFormatError(f"{where}: expected a 'news' list")
        return self.articles(records, page, article_row)
