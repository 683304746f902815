"""What a lake holds: its vendor, feed, bar width and adjustment, recorded when it is created.

A lake is filled by one source with one set of settings; bars of another vendor, feed,
timeframe or adjustment must never pass for them (synthetic demo minutes for real Alpaca
daily bars, say). The first job that writes a lake records its identity in ``_lake.json`` at
the lake's root (beside the data, so an S3 lake and every reader carry it too); every
command, ``snakemake -n`` and run compares the configuration with it first and stops with
one line naming both. A lake written before the file existed is identified by one of its
partitions' footers, which carry the same four facts.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from marketpipe.lake.objects import LakeStore
from marketpipe.lake.storage import ADJUSTMENT_KEY, LAKE_DIR, PARTITION_FILE, as_store

IDENTITY_KEY = "_lake.json"
SYNTHETIC_VENDORS = frozenset({"demo"})  # the bundled simulator: made-up prices
_FOOTER_KEYS = {
    "vendor": "marketpipe.vendor",
    "feed": "marketpipe.feed",
    "timeframe": "marketpipe.timeframe",
    "adjustment": ADJUSTMENT_KEY,
}


class LakeIdentityMismatch(ValueError):
    """The configuration asks for other bars than the lake holds; the message names both."""


@dataclass(frozen=True)
class LakeIdentity:
    """The source and settings every bar of a lake was fetched with."""

    vendor: str
    feed: str
    timeframe: str
    adjustment: str

    @property
    def synthetic(self) -> bool:
        """True for the bundled simulator's made-up market (``vendor: demo``)."""
        return self.vendor in SYNTHETIC_VENDORS

    def describe(self, note_synthetic: bool = True) -> str:
        """``demo 1Min sip raw bars`` (and that they are synthetic, when they are)."""
        text = f"{self.vendor} {self.timeframe} {self.feed} {self.adjustment} bars"
        synthetic = note_synthetic and self.synthetic
        return text + (" (synthetic: the bundled simulator's, not market data)" * synthetic)

    def metadata(self) -> dict[str, str]:
        """The identity as Parquet key-value metadata (what readers attach to their tables)."""
        return {
            **{footer: getattr(self, name) for name, footer in _FOOTER_KEYS.items()},
            "marketpipe.synthetic": str(self.synthetic).lower(),
        }


def stored_identity(lake: LakeStore | Path | str) -> LakeIdentity | None:
    """The lake's recorded identity; for a lake older than the record, its first partition's
    footer; ``None`` for a lake that holds no bars yet."""
    store = as_store(lake)
    try:
        data = store.get(IDENTITY_KEY)
    except FileNotFoundError:
        return _identity_from_a_partition(store)
    try:
        values = json.loads(data)
        return LakeIdentity(**{name: str(values[name]) for name in _FOOTER_KEYS})
    except (ValueError, KeyError, TypeError):
        raise LakeIdentityMismatch(
            f"{store.uri}/{IDENTITY_KEY} is not a lake identity MarketPipe wrote; restore it "
            "or remove it (the lake's partitions then say what it holds)"
        ) from None


def _identity_from_a_partition(store: LakeStore) -> LakeIdentity | None:
    key = store.first_key(LAKE_DIR, PARTITION_FILE)
    if key is None:
        return None
    try:
        metadata = pq.read_metadata(pa.BufferReader(store.get(key))).metadata or {}
    except (OSError, pa.ArrowException):
        return None  # a damaged partition: verify names it
    values = {
        name: metadata.get(footer.encode(), b"").decode() for name, footer in _FOOTER_KEYS.items()
    }
    return LakeIdentity(**values) if all(values.values()) else None


def check_identity(lake: LakeStore | Path | str, wanted: LakeIdentity) -> LakeIdentity | None:
    """Raise :class:`LakeIdentityMismatch` when the lake holds other bars than ``wanted``;
    return what it holds (``None``: nothing yet)."""
    stored = stored_identity(lake)
    require_same(as_store(lake).uri, stored, wanted)
    return stored


def require_same(uri: str, stored: LakeIdentity | None, wanted: LakeIdentity) -> None:
    """Raise :class:`LakeIdentityMismatch`, naming both, when the lake at ``uri`` holds
    ``stored`` bars and ``wanted`` ones are asked for (``stored`` ``None``: nothing yet)."""
    if stored is not None and stored != wanted:
        raise LakeIdentityMismatch(
            f"this lake ({uri}) holds {stored.describe()}; the config asks for "
            f"{wanted.describe(note_synthetic=False)}: use another data_dir for these, or set "
            "the config back"
        )


def claim_identity(lake: LakeStore | Path | str, wanted: LakeIdentity) -> None:
    """Record ``wanted`` as the lake's identity unless it has one (which must agree)."""
    store = as_store(lake)
    stored = check_identity(store, wanted)
    if stored is None or not store.exists(IDENTITY_KEY):
        data = json.dumps(asdict(wanted), sort_keys=True, indent=2).encode() + b"\n"
        store.put(IDENTITY_KEY, data, create_only=True)
