"""Per-source ingest rules as data, and the data-quality gates as a pure function.

``SOURCE_SPECS`` says, for each landing source, how its silver table is partitioned, which partitions
one month's delivery replaces, which column dates an event, how rows repeated across deliveries are
recognised, and which gates apply. The ingest stage reads these instead of branching on source names.
``evaluate_gates`` turns a load's statistics, the trailing figures and the gate settings into failures;
it does no I/O, so each gate is tested with literal inputs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from features import contract as C
from features.calendar import add_months, days_in_month, month_start
from pipelines.core.config import GatesConf


@dataclass(frozen=True)
class SourceSpec:
    """How one landing source becomes a silver table."""

    name: str
    partition_by: tuple[str, ...]
    # the column that receives the delivery month (None: the data's own period column partitions it)
    delivery_column: str | None
    # CDRs: the timestamp that dates an event; silver is partitioned by its month as well, the delivery
    # replaces event months M-1 (late records) and M, and loads are counted per event day
    event_column: str | None = None
    # rows repeated in another delivery: "none" (the delivery replaces its partitions whole),
    # "late_window" (late records against the previous delivery), "all_deliveries" (against every other)
    cross_delivery: Literal["none", "late_window", "all_deliveries"] = "none"
    # CDRs carry msisdn: the owning subscriber is resolved from the snapshots' hold intervals
    resolves_subscriber: bool = False
    # gate: a value held by at most one live row (subscription snapshots: msisdn)
    unique_live_column: str | None = None
    optional: bool = False
    keys: tuple[str, ...] = field(default=())

    @property
    def event_month_column(self) -> str | None:
        return self.partition_by[0] if self.event_column else None

    def replaced_partitions(self, month: str) -> dict[str, list[str]]:
        """The partitions one delivery of ``month`` replaces (rerunning a month replaces exactly these)."""
        if self.event_column:
            assert self.delivery_column is not None
            return {self.partition_by[0]: [add_months(month, -1), month], self.delivery_column: [month]}
        return {self.partition_by[0]: [month]}

    def silver_columns(self) -> list[str]:
        cols = [*C.columns(self.name), *(["subscriber_id"] if self.resolves_subscriber else [])]
        return list(dict.fromkeys([*cols, *self.partition_by]))


def _spec(name: str, **kw) -> SourceSpec:
    return SourceSpec(name=name, keys=C.KEYS[name], optional=name in C.OPTIONAL_SOURCES, **kw)


SOURCE_SPECS: dict[str, SourceSpec] = {
    s.name: s
    for s in (
        _spec("subscriptions", partition_by=("month",), delivery_column="month", unique_live_column="msisdn"),
        _spec("billing", partition_by=("bill_month",), delivery_column=None),
        _spec("care", partition_by=("month",), delivery_column="month", cross_delivery="all_deliveries"),
        _spec("campaign_outcomes", partition_by=("month",), delivery_column="month"),
        _spec(
            "cdr",
            partition_by=("event_month", "delivery_month"),
            delivery_column="delivery_month",
            event_column="event_ts",
            cross_delivery="late_window",
            resolves_subscriber=True,
        ),
    )
}
# subscriptions first: CDR numbers resolve against the snapshots
INGEST_ORDER = ("subscriptions", "billing", "care", "campaign_outcomes", "cdr")


@dataclass(frozen=True)
class LoadStats:
    """What a staged load of one source-month holds, measured before it is committed."""

    rows_read: int
    rows_quarantined: int
    rows_loaded: int
    distinct_subscribers: int
    daily_counts: Mapping[str, int] = field(default_factory=dict)  # event day -> rows (event sources)
    shared_values: Sequence[str] = ()  # values of the unique-live column held by several live rows


def trailing_daily_mean(previous: Sequence[tuple[str, str]], *, late_days: int) -> float | None:
    """Mean rows per day over earlier publishable months: ``(month, daily_counts JSON)`` pairs.

    Only each month's own days count, and not its last ``late_days`` days (completed by late records).
    """
    values: list[int] = []
    for month, counts_json in previous:
        counts = json.loads(counts_json)
        own = [v for d, v in sorted(counts.items()) if d.startswith(month)]
        values += own[: days_in_month(month) - late_days]
    return sum(values) / len(values) if values else None


def evaluate_gates(
    stats: LoadStats,
    *,
    spec: SourceSpec,
    month: str,
    gates: GatesConf,
    late_days: int,
    trailing_mean: float | None,
) -> list[str]:
    """The gates a load fails (empty: publishable). Pure: literal inputs in, messages out."""
    if not gates.enabled:
        return []
    failures = []
    if stats.rows_read and stats.rows_quarantined / stats.rows_read > gates.max_quarantine_rate:
        rate = stats.rows_quarantined / stats.rows_read
        failures.append(f"quarantine rate {rate:.2%} above {gates.max_quarantine_rate:.2%}")
    if spec.event_column:
        days = [month_start(month).replace(day=d).isoformat() for d in range(1, days_in_month(month) + 1)]
        if gates.require_all_cdr_days:
            missing = [d for d in days if stats.daily_counts.get(d, 0) == 0]
            if missing:
                failures.append(f"no CDRs on {len(missing)} day(s): {', '.join(missing[:5])}")
        if trailing_mean:
            tol = gates.cdr_daily_volume_tolerance
            # the last days of a month are completed by next month's late records: judge days 1..N-late
            checked = days[: max(1, len(days) - late_days)]
            off = [d for d in checked if abs(stats.daily_counts.get(d, 0) / trailing_mean - 1) > tol]
            if off:
                failures.append(
                    f"CDR volume on {len(off)} day(s) outside {tol:.0%} of the trailing daily mean "
                    f"{trailing_mean:.0f}: {', '.join(off[:5])}"
                )
    if spec.unique_live_column and gates.unique_subscription_snapshot and stats.shared_values:
        failures.append(
            f"{spec.unique_live_column} held by several live subscribers: {', '.join(stats.shared_values)}"
        )
    return failures
