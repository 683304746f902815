"""MarketPipe: reliable, resumable one-minute market data in a local Parquet lake."""

__version__ = "0.1.0"
