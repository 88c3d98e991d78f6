"""CDR numbers resolved to the subscriber who held them at the event's time, in Arrow: what
:func:`features.cleaning.resolve_msisdn` does as a broadcast join, done inside an ingest task.

The holds (:func:`features.cleaning.compute_msisdn_intervals`: never overlapping for one number; or
:func:`holds_from_snapshots`, the same in this process) are sorted by number and start; an event's holder
is the last hold of its number starting on or before the event's day, if that hold has not ended before it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.cleaning import OPEN_END
from pipelines.core.privacy import mask_number

_DAY_BITS = 23  # a day as days since 1970 plus 2**22: every date32 from year 1 to 9999 fits
_DAY_OFFSET = 1 << 22
_US_PER_DAY = 86_400_000_000


@dataclass(frozen=True)
class Owners:
    """The holds, sorted for lookup (plain arrays: pickled to the tasks)."""

    numbers: pa.Array  # the distinct numbers held; a number's code is its index here
    keys: np.ndarray  # per hold, code << _DAY_BITS | first day
    last_day: np.ndarray  # per hold, its last day (days since 1970)
    subscriber_id: pa.Array  # per hold, its holder


def owners_from(intervals: pa.Table) -> Owners:
    """The lookup from ``msisdn, subscriber_id, valid_from, valid_to`` rows (dates, inclusive).

    A hold without a start, or cut to nothing (ending before it starts), holds no day and is left out;
    the holds left of one number never overlap, so at most one can hold a day."""
    held = intervals.filter(
        pc.and_(
            pc.and_(pc.is_valid(intervals["msisdn"]), pc.is_valid(intervals["valid_from"])),
            pc.greater_equal(intervals["valid_to"], intervals["valid_from"]),  # a hold cut to nothing
        )
    ).combine_chunks()
    numbers = pc.unique(held["msisdn"]) if held.num_rows else pa.array([], pa.string())
    code = np.asarray(pc.index_in(held["msisdn"], numbers).to_numpy(zero_copy_only=False), dtype=np.int64)
    first = _days(held["valid_from"])
    last = _days(held["valid_to"])
    subscriber = held["subscriber_id"].combine_chunks() if held.num_rows else pa.array([], pa.string())
    order = np.lexsort((first, code))
    keys = (code[order] << _DAY_BITS) | (first[order] + _DAY_OFFSET)
    return Owners(numbers, keys, last[order], subscriber.take(pa.array(order)))


def _days(dates: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(pc.cast(dates, pa.int32()).to_numpy(zero_copy_only=False), dtype=np.int64)


def resolve(owners: Owners, msisdn: pa.Array, event_ts: pa.Array) -> pa.Array:
    """Each event's holder (``subscriber_id``), null where nobody held the number that day (or the number
    or time is missing)."""
    n = len(msisdn)
    code = pc.index_in(msisdn, owners.numbers)
    ts = pc.cast(event_ts, pa.int64())
    known = np.asarray(pc.and_(pc.is_valid(code), pc.is_valid(ts)).to_numpy(zero_copy_only=False), dtype=bool)
    if not known.any() or not len(owners.keys):
        return pa.nulls(n, pa.string())
    code_np = np.asarray(pc.fill_null(code, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
    micros = np.asarray(pc.fill_null(ts, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
    day = np.floor_divide(micros, _US_PER_DAY)
    key = (code_np << _DAY_BITS) | (day + _DAY_OFFSET)
    at = np.searchsorted(owners.keys, key, side="right") - 1
    safe = np.maximum(at, 0)
    hit = known & (at >= 0) & ((owners.keys[safe] >> _DAY_BITS) == code_np) & (day <= owners.last_day[safe])
    return owners.subscriber_id.take(pa.array(safe, mask=~hit))


SNAPSHOT_COLUMNS = ["msisdn", "subscriber_id", "month", "activation_date", "deactivation_date"]
HOLDS_SCHEMA = pa.schema(
    [
        ("msisdn", pa.string()),
        ("subscriber_id", pa.string()),
        ("valid_from", pa.date32()),
        ("valid_to", pa.date32()),
        ("conflict", pa.bool_()),
    ]
)
_PAIR = ["msisdn", "subscriber_id"]
_OPEN_END_DAY = (OPEN_END - pd.Timestamp(0).date()).days


def holds_from_snapshots(
    snapshots: pa.Table, *, latest_month: str, damaged_listings: pa.Table | None = None
) -> pa.Table:
    """:func:`features.cleaning.compute_msisdn_intervals` in this process, on the snapshots' columns
    ``msisdn, subscriber_id, month, activation_date, deactivation_date`` (and the damaged listings'
    ``subscriber_id, msisdn, month``): the same holds, row for row (see that function for the rules), for
    snapshots whose ``msisdn`` and ``subscriber_id`` are never null (the landing contract requires both:
    a row without is quarantined; here it is left out).

    Numbers and subscribers are handled as their ranks among the distinct values (the order of the text),
    days as integers since 1970 (the open end, 9999-12-31, needs no timestamp), months as months since
    1970: pandas aggregates numbers fast and small, where text is neither."""
    codes = {c: _sorted_distinct(snapshots[c]) for c in _PAIR}
    subs = _frame(snapshots, SNAPSHOT_COLUMNS, codes)
    latest = _month_numbers(pa.array([latest_month]))[0].as_py()
    subs = subs[(subs["month"] <= latest) & subs["msisdn"].notna() & subs["subscriber_id"].notna()]
    pairs = (
        subs.groupby(_PAIR, sort=False)
        .agg(
            _first=("month", "min"),
            _activation=("activation_date", "min"),
            _deactivation=("deactivation_date", "max"),
        )
        .reset_index()
    )
    listed = subs[[*_PAIR, "month"]]
    if damaged_listings is not None and damaged_listings.num_rows:
        damaged = _frame(damaged_listings, [*_PAIR, "month"], codes).dropna()  # unknown pairs match nothing
        damaged = damaged[damaged["month"] <= latest].merge(pairs[_PAIR], on=_PAIR)
        listed = pd.concat([listed, damaged], ignore_index=True)
    last = listed.groupby(_PAIR, sort=False)["month"].max().rename("_last").reset_index()
    pairs = pairs.merge(last, on=_PAIR)
    first_day = _month_days(pairs["_first"], end=False)
    activation = pairs["_activation"]
    later = activation.notna() & (activation > first_day)  # the greater of the two, a missing one skipped
    valid_from = first_day.where(~later, activation)
    is_first = pairs["_first"] == pairs.groupby("subscriber_id")["_first"].transform("min")
    valid_from = valid_from.where(~is_first, activation)
    still_listed = pd.Series(pd.NA, index=pairs.index, dtype="Int64").where(
        pairs["_last"] >= latest, _month_days(pairs["_last"], end=True)
    )
    claimed_to = pairs["_deactivation"].fillna(still_listed).fillna(_OPEN_END_DAY)
    held = pd.DataFrame(
        {"msisdn": pairs["msisdn"], "subscriber_id": pairs["subscriber_id"], "valid_from": valid_from,
         "_claimed_to": claimed_to}
    ).sort_values(["msisdn", "valid_from", "subscriber_id"], na_position="first", kind="stable")  # fmt: skip
    next_from = held.groupby("msisdn", sort=False)["valid_from"].shift(-1)
    claimed = held["_claimed_to"]
    cut = next_from - 1
    valid_to = claimed.where(next_from.isna() | (claimed <= cut), cut)
    conflict = (claimed >= next_from).fillna(False).astype(bool)
    return pa.table(
        [
            *[codes[c].take(pa.array(held[c].to_numpy(dtype=np.int64))) for c in _PAIR],
            _dates(held["valid_from"]),
            _dates(valid_to),
            pa.array(conflict, pa.bool_()),
        ],
        schema=HOLDS_SCHEMA,
    )


def damaged_from_quarantine(quarantined: pa.Table, snapshots: pa.Table) -> pa.Table:
    """:func:`pipelines.ingest.subscribers.damaged_listings` in this process: from quarantined snapshot
    rows (``raw_values`` JSON, ``month``), ``subscriber_id, msisdn, month`` with the number the subscriber
    holds in the good snapshots, equal to the quarantined one or to its mask."""
    found = []
    for raw, month in zip(
        quarantined["raw_values"].to_pylist(), quarantined["month"].to_pylist(), strict=True
    ):
        subscriber, number = _json_text(raw, "subscriber_id"), _json_text(raw, "msisdn")
        if subscriber is not None and number is not None:
            found.append((subscriber, number, month))
    held: dict[str, list[str]] = {}
    if found:  # the numbers of the subscribers the quarantine names
        named = pa.array(sorted({f[0] for f in found}), pa.string())
        pairs = snapshots.filter(pc.is_in(snapshots["subscriber_id"], value_set=named))
        distinct = pairs.group_by(["subscriber_id", "msisdn"]).aggregate([])
        holders, numbers = distinct["subscriber_id"].to_pylist(), distinct["msisdn"].to_pylist()
        for subscriber, n in zip(holders, numbers, strict=True):
            if n is not None:
                held.setdefault(subscriber, []).append(n)
    out = [
        (s, n, month) for s, number, month in found for n in held.get(s, ()) if number in (n, mask_number(n))
    ]
    names = ["subscriber_id", "msisdn", "month"]
    return pa.table([pa.array([r[i] for r in out], pa.string()) for i in range(3)], names=names)


def _json_text(raw: str | None, key: str) -> str | None:
    """Spark's ``get_json_object(raw, '$.key')``: the value's text, null where absent or unreadable."""
    try:
        values: Any = json.loads(raw) if raw is not None else None
    except ValueError:
        return None
    value = values.get(key) if isinstance(values, dict) else None
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _sorted_distinct(column: pa.ChunkedArray) -> pa.Array:
    """The column's distinct values, nulls left out, in the order of their text (a value's code is its
    index here, so codes sort as the text does: ties between holders break as Spark breaks them)."""
    distinct = pc.drop_null(pc.unique(column))
    return distinct.take(pc.sort_indices(distinct))


def _frame(table: pa.Table, columns: list[str], codes: dict[str, pa.Array]) -> pd.DataFrame:
    """``columns`` as nullable integer pandas columns: text as its code in ``codes`` (null: not there),
    dates as days since 1970, ``month`` (``yyyy-MM``) as months since 1970."""
    out = []
    for name in columns:
        column = table[name]
        if name in codes:
            column = pc.index_in(column, value_set=codes[name])
        elif pa.types.is_date32(column.type):
            column = pc.cast(column, pa.int32())
        elif name == "month":
            column = _month_numbers(column)
        out.append(pc.cast(column, pa.int64()))
    return pa.table(out, names=columns).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


def _month_numbers(months: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """``yyyy-MM`` as months since 1970-01."""
    year = pc.cast(pc.utf8_slice_codeunits(months, 0, 4), pa.int64())
    month = pc.cast(pc.utf8_slice_codeunits(months, 5, 7), pa.int64())
    return pc.add(pc.multiply(pc.subtract(year, 1970), 12), pc.subtract(month, 1))


def _month_days(months: pd.Series, *, end: bool) -> pd.Series:
    """The first (or last) day of each month (months since 1970), as days since 1970."""
    first = np.asarray(months, dtype=np.int64).astype("datetime64[M]")
    days = ((first + 1) if end else first).astype("datetime64[D]").astype(np.int64) - (1 if end else 0)
    return pd.Series(days, index=months.index, dtype="Int64")


def _dates(days: pd.Series) -> pa.Array:
    return pa.array(days.astype("Int64"), pa.int32()).cast(pa.date32())
