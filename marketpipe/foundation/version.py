"""MarketPipe's version, for the CLI's ``--version`` and the HTTP User-Agent."""

VERSION = "0.1.0"
