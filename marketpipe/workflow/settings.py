"""The workflow's configuration: one Pydantic model, exported as the JSON schema Snakemake uses.

``load_settings`` turns Snakemake's ``config`` dict (YAML plus ``--config`` overrides) into
validated :class:`WorkflowSettings`, or raises :class:`ConfigError` naming every bad key.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import sys
from pathlib import Path
from typing import Any, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    ValidationError,
)

from marketpipe.connectors import AlpacaConfig, ClientConfig, PolygonConfig
from marketpipe.connectors.flat_files import FlatFilesConfig
from marketpipe.lake.identity import (
    LakeIdentity,
    LakeIdentityMismatch,
    require_same,
    stored_identity,
)
from marketpipe.lake.location import is_writable_directory
from marketpipe.lake.objects import LakeStore, S3Store, is_s3, open_store
from marketpipe.lake.read_only import read_only_state_dir, snapshot_state
from marketpipe.lake.run_lock import RunLock
from marketpipe.lake.securities import Security, read_securities, securities_of
from marketpipe.markettime.calendar import Session, new_york_date, trading_sessions
from marketpipe.markettime.finality import Finality
from marketpipe.markettime.spans import EVERY_DAY, DaySpans
from marketpipe.markettime.timeframe import Timeframe
from marketpipe.workflow.config import (
    ConfigError,
    VendorSettings,
    WorkflowConfig,
)

STATE_DIR_VARIABLE = "MARKETPIPE_STATE_DIR"
# Symbols per fetch job with flat files: enough for any universe (a job reads each of its
# days' files once, whatever the count).
FLAT_FILE_JOB_SYMBOLS = 100_000


class WorkflowSettings(BaseModel):
    """Validated configuration plus what follows from it at the run's instant ``now``.

    ``now`` is taken once (from :mod:`marketpipe.markettime.clock`), so every decision of one run
    about which sessions are final agrees, however long the run takes.
    """

    model_config = ConfigDict(frozen=True, ignored_types=(functools.cached_property,))

    config: WorkflowConfig
    now: AwareDatetime
    # A reading command's settings: a local lake it cannot write keeps its state in the
    # user's cache instead (see read_only_state).
    read_only: bool = False

    @property
    def state_dir(self) -> Path:
        """The local directory of the ledger, run state, logs and reports: the lake's own
        directory when the lake is local. ``$MARKETPIPE_STATE_DIR`` wins (a cluster job's
        node-local directory: an S3 lake's jobs share no filesystem)."""
        override = os.environ.get(STATE_DIR_VARIABLE) or self.config.state_dir
        if override:
            return Path(override)
        if not is_s3(self.config.data_dir):
            if self.read_only and self._lake_is_read_only:
                return self._read_only_state
            return Path(self.config.data_dir)
        return self._s3_workdir

    @functools.cached_property
    def _lake_is_read_only(self) -> bool:
        lake = Path(self.config.data_dir)
        return lake.is_dir() and not is_writable_directory(lake)

    @functools.cached_property
    def _read_only_state(self) -> Path:
        """A copy of a read-only lake's state (ledger, last run), said once on stderr."""
        lake = Path(self.config.data_dir)
        copy = snapshot_state(lake, read_only_state_dir(lake))
        print(
            f"[marketpipe] {lake} is read-only here: its ledger is read from a copy in {copy} "
            "(nothing is written to the lake)",
            file=sys.stderr,
        )
        return copy

    @property
    def _s3_workdir(self) -> Path:
        store = S3Store(self.config.data_dir)
        return Path(".marketpipe") / store.bucket / (store.prefix or "_root")

    @property
    def markers_dir(self) -> Path:
        """Where jobs leave the files Snakemake waits for (its working directory, which the
        controller sees): beside the ledger for a local lake."""
        if not is_s3(self.config.data_dir):
            return self.state_dir / "_state"
        return self._s3_workdir / "_markers"

    def run_lock(self, purpose: str) -> RunLock:
        """The lake's run lock (and an S3 lake's lease, with the configured timing)."""
        s3 = self.config.s3
        return RunLock(
            self.state_dir,
            purpose,
            self.lake,
            renew_every=s3.renew_seconds,
            stale_after=s3.lease_seconds,
        )

    @functools.cached_property
    def lake(self) -> LakeStore:
        """Where the lake's files live (a local directory or an S3 location)."""
        return open_store(self.config.data_dir, self.config.s3.endpoint_url)

    @property
    def timeframe(self) -> Timeframe:
        """The configured bar width."""
        return Timeframe.parse(self.config.timeframe)

    @property
    def finality(self) -> Finality:
        """When this lake's sessions are final."""
        return Finality(
            self.feed,
            self.timeframe,
            dt.timedelta(minutes=self.config.settle_minutes),
        )

    @functools.cached_property
    def end(self) -> dt.date:
        """The last New York date of the range (``today`` resolved to the latest final one)."""
        if isinstance(self.config.end, dt.date):
            return self.config.end
        today = new_york_date(self.now)
        # Every month has sessions, and at most the last two of them are not final yet.
        recent = trading_sessions(today - dt.timedelta(days=30), today)
        final, _ = self.finality.split(recent, self.now)
        return final[-1].date

    @functools.cached_property
    def sessions(self) -> list[Session]:
        """Every NYSE session of the configured range, final or not."""
        return trading_sessions(self.config.start, self.end)

    @functools.cached_property
    def sessions_by_finality(self) -> tuple[list[Session], list[Session]]:
        """The range's sessions split into those final at ``now`` and those not final yet."""
        return self.finality.split(self.sessions, self.now)

    @property
    def final_sessions(self) -> list[Session]:
        """The sessions of the range that are final at ``now``: the ones a run fetches."""
        return self.sessions_by_finality[0]

    @property
    def pending_sessions(self) -> list[Session]:
        """The sessions of the range that are not final yet (today's, the future's)."""
        return self.sessions_by_finality[1]

    @property
    def final_days(self) -> list[dt.date]:
        """The New York dates of :attr:`final_sessions`."""
        return [session.date for session in self.final_sessions]

    @functools.cached_property
    def planned_partitions(self) -> int:
        """How many partitions the configuration asks for now: each symbol's final sessions
        among the days it should have bars (see :meth:`expected_days`)."""
        days = self.final_days
        return sum(len(self.expected_days(symbol).days(days)) for symbol in self.config.symbols)

    def at(self, now: dt.datetime) -> WorkflowSettings:
        """The same configuration seen at another instant."""
        return WorkflowSettings(config=self.config, now=now, read_only=self.read_only)

    @property
    def identity(self) -> LakeIdentity:
        """The bars this configuration asks for (a lake holds one such identity)."""
        return LakeIdentity(self.config.vendor, self.feed, self.config.timeframe, self.adjustment)

    @functools.cached_property
    def held_identity(self) -> LakeIdentity | None:
        """What the lake holds, read once (``None``: nothing yet, or a lake that cannot be
        reached now, which the caller reports in its own words)."""
        try:
            return stored_identity(self.lake)
        except LakeIdentityMismatch:
            raise
        except Exception:  # botocore's errors and OSError: not this check's to report
            return None

    def require_same_lake(self) -> LakeIdentity | None:
        """Stop with :class:`LakeIdentityMismatch` when the lake holds other bars than this
        configuration asks for; what it holds (see :attr:`held_identity`)."""
        require_same(self.lake.uri, self.held_identity, self.identity)
        return self.held_identity

    def lake_settings(self) -> dict[str, str]:
        """What a lake is built with; one data_dir never mixes two of these."""
        return {
            "timeframe": self.config.timeframe,
            "feed": self.feed,
            "adjustment": self.adjustment,
            "vendor": self.config.vendor,
        }

    @property
    def feed(self) -> str:
        """The bars' feed: Alpaca's configured one; Polygon's consolidated tape is SIP."""
        return "sip" if self.config.vendor == "polygon" else self.config.alpaca.feed

    @property
    def adjustment(self) -> str:
        """The bars' adjustment as fetched: Polygon's are always raw (``adjusted=false``)."""
        return "raw" if self.config.vendor == "polygon" else self.config.alpaca.adjustment

    @property
    def vendor_section(self) -> VendorSettings:
        """The bar vendor's settings (its request budget); the demo vendor is Alpaca's."""
        return self.config.polygon if self.config.vendor == "polygon" else self.config.alpaca

    @property
    def fetches_news(self) -> bool:
        """Whether runs keep the news (Alpaca's or Massive's; the demo simulator serves both)."""
        return self.config.news.fetch

    @functools.cached_property
    def news_days(self) -> list[dt.date]:
        """The calendar days of the range whose news is final at ``now``: the day is over in
        New York (plus ``settle_minutes``), as bars wait for their session to settle."""
        last = min(self.end, new_york_date(self.now - self.finality.settle) - dt.timedelta(days=1))
        count = (last - self.config.start).days + 1
        return [self.config.start + dt.timedelta(days=offset) for offset in range(count)]

    def tick_symbols(self, kind: str) -> list[str]:
        """The symbols whose ``kind`` (trades or quotes) runs keep; none when not fetched."""
        section = getattr(self.config, kind)
        if not section.fetch:
            return []
        return list(section.symbols) if section.symbols is not None else self.config.symbols

    @property
    def fetches_actions(self) -> bool:
        """Whether runs keep the corporate actions (Alpaca's, or Massive's splits and
        dividends)."""
        return self.config.corporate_actions.fetch

    @property
    def symbols_asof(self) -> dt.date:
        """The ``asof`` day sent with Alpaca's bars requests: the symbols name the securities
        that used them on the range's last day. Alpaca's map learns of a rename overnight,
        so that is the day after it (no later than today), never the vendor's default of
        the day a run happens to be made."""
        return min(self.end + dt.timedelta(days=1), new_york_date(self.now))

    @property
    def keeps_securities(self) -> bool:
        """Whether runs keep the security master: from Polygon's reference data, or from the
        corporate actions the lake keeps of Alpaca's."""
        return self.config.vendor == "polygon" or self.fetches_actions

    @property
    def fetches_by_security(self) -> bool:
        """Whether bars jobs wait for the security master: Polygon serves each ticker as
        traded, so a renamed security's earlier days are asked for under the tickers the
        master names (and a reused ticker's other company is never asked for). Alpaca maps
        names itself (``asof``): its jobs use the master the lake already keeps, and a
        failed corporate-actions or master job never holds its bars back."""
        return self.config.vendor == "polygon"

    @property
    def reads_flat_files(self) -> bool:
        """Whether backfills come from Polygon's flat files (``polygon.flat_files``)."""
        return self.config.vendor == "polygon" and self.config.polygon.flat_files

    @property
    def symbols_per_job(self) -> int:
        """How many symbols one fetch job takes: with flat files, every symbol of a month
        that misses the same days (a day's file is read once for all of them)."""
        return FLAT_FILE_JOB_SYMBOLS if self.reads_flat_files else self.config.symbols_per_job

    def stored_securities(self) -> dict[str, Security]:
        """The configured symbols' securities as the lake's master says now (read afresh:
        the ``security_master`` job may have just rewritten it)."""
        if not self.keeps_securities:
            return {}
        try:
            rows = read_securities(self.lake)
        except (OSError, ValueError):  # an unreadable master is the master job's to report
            return {}
        wanted = set(self.config.symbols)
        return {
            symbol: security for symbol, security in securities_of(rows).items() if symbol in wanted
        }

    @functools.cached_property
    def planned_securities(self) -> dict[str, Security]:
        """:meth:`stored_securities` as planning saw them, read once."""
        return self.stored_securities()

    def expected_days(self, symbol: str) -> DaySpans:
        """The days ``symbol`` should have bars: its membership of the universe (every day
        for a listed symbol) while its security was listed, when known."""
        days = self.config.membership.get(symbol, EVERY_DAY)
        security = self.planned_securities.get(symbol)
        return days if security is None else days.within(security.life())


def alpaca_client_config(config: WorkflowConfig, **overrides: Any) -> AlpacaConfig:
    """The client settings from ``alpaca:`` (keys from the environment unless overridden)."""
    fields = ("page_size", "connect_timeout", "read_timeout")
    if config.alpaca.trading_url:
        overrides = {"trading_url": config.alpaca.trading_url, **overrides}
    return _client_config("alpaca", AlpacaConfig, config.alpaca, fields, overrides)


def polygon_client_config(config: WorkflowConfig, **overrides: Any) -> PolygonConfig:
    """The client settings from ``polygon:`` (the key from the environment unless given)."""
    return _client_config("polygon", PolygonConfig, config.polygon, (), overrides)


def flat_files_config(config: WorkflowConfig) -> FlatFilesConfig:
    """The flat files' location from ``polygon:`` and their S3 keys from the environment."""
    section = config.polygon
    try:
        return FlatFilesConfig(
            endpoint_url=section.flat_files_endpoint,
            bucket=section.flat_files_bucket,
            prefix=section.flat_files_prefix,
            max_attempts=section.max_attempts,
        )
    except ValidationError as exc:
        details = "; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors())
        raise ConfigError(f"polygon.flat_files cannot start: {details}") from None


ClientConfigT = TypeVar("ClientConfigT", bound=ClientConfig)


def _client_config(
    vendor: str,
    config_class: type[ClientConfigT],
    section: VendorSettings,
    fields: tuple[str, ...],
    overrides: dict[str, Any],
) -> ClientConfigT:
    """A vendor's client settings from its config section: the budget and retry bounds every
    vendor has, its own ``fields``, then ``overrides``; a problem names the vendor."""
    values: dict[str, Any] = {"base_url": section.base_url} if section.base_url else {}
    values |= {name: getattr(section, name) for name in fields}
    values |= {
        "requests_per_minute": section.requests_per_minute,
        "rate_window_seconds": section.rate_window_seconds,
        "max_attempts": section.max_attempts,
        "backoff_base": section.backoff_base,
        "backoff_cap": max(section.backoff_cap, section.backoff_base),
    }
    try:
        return config_class(**{**values, **overrides})
    except ValidationError as exc:
        details = "; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors())
        raise ConfigError(f"vendor {vendor} cannot start: {details}") from None
