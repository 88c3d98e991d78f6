"""CDR numbers resolved to the subscriber who held them at the event's time, in Arrow: what
:func:`features.cleaning.resolve_msisdn` does as a broadcast join, done inside an ingest task.

The holds (:func:`features.cleaning.compute_msisdn_intervals`: never overlapping for one number) are
sorted by number and start; an event's holder is the last hold of its number starting on or before the
event's day, if that hold has not ended before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
