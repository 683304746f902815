"""Vendor connectors: a shared transport (retries, rate budget, auth) plus per-vendor requests.

Imports ``markettime``, ``observability``, ``foundation`` and the ``chaos`` hook only.
"""

from marketpipe.connectors.alpaca import AlpacaClient, BarsQuery
from marketpipe.connectors.auth import (
    AlpacaKeyAuth,
    AuthStrategy,
    BearerTokenAuth,
    NoAuth,
    QueryApiKeyAuth,
)
from marketpipe.connectors.base_api_client import BaseApiClient, Page
from marketpipe.connectors.config import AlpacaConfig, ClientConfig
from marketpipe.connectors.corporate_actions import CorporateActionsClient, CorporateActionsQuery
from marketpipe.connectors.errors import (
    ApiError,
    AuthenticationError,
    ConnectorError,
    PaginationError,
    ResponseFormatError,
    RetryExhaustedError,
    SubscriptionError,
    TlsVerificationError,
    UnknownSymbolError,
)
from marketpipe.connectors.models import (
    CORPORATE_ACTIONS,
    CORPORATE_ACTIONS_SCHEMA,
    NEWS,
    NEWS_SCHEMA,
    OHLCV,
    OHLCV_SCHEMA,
    CorporateAction,
    Dataset,
    NewsArticle,
    NewsImage,
    OHLCVBar,
)
from marketpipe.connectors.news import NewsClient, NewsQuery, RejectedArticle
from marketpipe.connectors.polygon import PolygonClient, PolygonConfig
from marketpipe.connectors.polygon_ticks import PolygonQuotesClient, PolygonTradesClient
from marketpipe.connectors.rate_limit import NoRateLimit, RateLimiter, SlidingWindowRateLimiter
from marketpipe.connectors.ticks import (
    QUOTES,
    QUOTES_SCHEMA,
    TRADES,
    TRADES_SCHEMA,
    AlpacaQuotesClient,
    AlpacaTradesClient,
    Quote,
    TicksQuery,
    Trade,
)
from marketpipe.connectors.transport import HttpTransport, RequestSpec, Response

__all__ = [
    "CORPORATE_ACTIONS",
    "CORPORATE_ACTIONS_SCHEMA",
    "NEWS",
    "NEWS_SCHEMA",
    "OHLCV",
    "OHLCV_SCHEMA",
    "QUOTES",
    "QUOTES_SCHEMA",
    "TRADES",
    "TRADES_SCHEMA",
    "AlpacaClient",
    "AlpacaConfig",
    "AlpacaKeyAuth",
    "AlpacaQuotesClient",
    "AlpacaTradesClient",
    "ApiError",
    "AuthStrategy",
    "AuthenticationError",
    "BarsQuery",
    "BaseApiClient",
    "BearerTokenAuth",
    "ClientConfig",
    "ConnectorError",
    "CorporateAction",
    "CorporateActionsClient",
    "CorporateActionsQuery",
    "Dataset",
    "HttpTransport",
    "NewsArticle",
    "NewsClient",
    "NewsImage",
    "NewsQuery",
    "NoAuth",
    "NoRateLimit",
    "OHLCVBar",
    "Page",
    "PaginationError",
    "PolygonClient",
    "PolygonConfig",
    "PolygonQuotesClient",
    "PolygonTradesClient",
    "QueryApiKeyAuth",
    "Quote",
    "RateLimiter",
    "RejectedArticle",
    "RequestSpec",
    "Response",
    "ResponseFormatError",
    "RetryExhaustedError",
    "SlidingWindowRateLimiter",
    "SubscriptionError",
    "TicksQuery",
    "TlsVerificationError",
    "Trade",
    "UnknownSymbolError",
]
