"""Simulated columns as the contract's text, and text tables in natural Parquet types.

The simulation hands over numpy columns (ids as integers, categories as ``(codes, labels)`` pairs,
times as seconds); the landing contract wants text: ids with a prefix and fixed width, ISO dates and
timestamps, ``true``/``false``. Arrow's compute kernels do the conversion column by column.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features import contract as C
from pipelines.sample_data.simulate import MonthOutput

# sources at least this big are formatted, and their files written, on two threads (Arrow's kernels,
# its CSV writer and ISA-L's gzip release the GIL)
PARALLEL_WRITE_ROWS = 200_000


def format_ids(prefix: str, values: np.ndarray, width: int = 9) -> pa.Array:
    """``prefix`` and ``width`` zero-padded digits; negative values are null."""
    values = np.asarray(values, dtype=np.int64)
    mask = values < 0
    if values.size and values.max() >= 10**width:  # a wider id would not match the same line's others
        raise ValueError(f"{prefix} ids need more than {width} digits: generate fewer subscribers")
    # 10**width + v prints as "1" and ``width`` digits: every string has the same length, so the lead
    # digit of each is swapped for the prefix right in the data buffer
    text = pc.cast(pa.array(np.where(mask, 0, values) + 10**width), pa.string())
    data = np.frombuffer(text.buffers()[2], np.uint8, count=values.size * (width + 1)).copy()
    data[:: width + 1] = ord(prefix)
    valid = pa.array(~mask).buffers()[1] if mask.any() else None
    return pa.StringArray.from_buffers(values.size, text.buffers()[1], pa.py_buffer(data), valid)


def _dates(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values.astype("datetime64[D]"), from_pandas=True), pa.string())


def _timestamps(seconds: np.ndarray) -> pa.Array:
    seconds = np.asarray(seconds, dtype=np.int64)
    arr = pa.array(seconds, pa.timestamp("s"), mask=seconds < 0)
    return pc.cast(arr, pa.string())


def _strings(values: Any) -> pa.Array:
    if isinstance(values, tuple):  # (codes, labels): -1 is null
        codes, labels = values
        return pc.take(
            pa.array(labels.astype(object) if labels.dtype.kind == "U" else labels, pa.string()),
            pa.array(codes, pa.int64(), mask=codes < 0),
        )
    if isinstance(values, np.ndarray) and values.dtype.kind in "US":
        return pa.array(values.astype(str), pa.string())
    return pa.array(
        list(values) if not isinstance(values, np.ndarray) else values, pa.string(), from_pandas=True
    )


def _bools(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(np.asarray(values, dtype=bool)), pa.string())


ID_FORMATS = {  # id columns: prefix and digits
    "record_id": ("R", 12),
    "subscriber_id": ("S", 9),
    "customer_id": ("C", 9),
    "household_id": ("H", 9),
    "contact_id": ("K", 10),
}


def _text(name: str, kind: str, values: Any) -> pa.Array:
    """One simulated column as contract text, by the contract's column kind (negative ints are null)."""
    if name in ID_FORMATS:
        prefix, width = ID_FORMATS[name]
        return format_ids(prefix, values, width)
    if kind == "timestamp":
        return _timestamps(values)
    if kind == "date":
        return _dates(values)
    if kind == "boolean":
        return _bools(values)
    if isinstance(values, np.ndarray) and values.dtype.kind in "iuf":  # numbers, msisdn
        mask = values < 0 if kind == "int" else None
        return pc.cast(pa.array(values, mask=mask), pa.string())
    return _strings(values)


def format_source(source: str, columns: dict[str, Any], rows: np.ndarray | None = None) -> pa.Table:
    """A source's simulated columns (``rows`` of them, or all) as a string table in the contract's order.

    Big sources are formatted on two threads: Arrow's kernels release the GIL.
    """
    contract = C.CONTRACT[source]
    values = {c.name: columns[c.name] for c in contract}
    if rows is not None:
        values = {k: (v[0][rows], v[1]) if isinstance(v, tuple) else v[rows] for k, v in values.items()}
    n = len(values[contract[0].name])
    if n < PARALLEL_WRITE_ROWS:
        return pa.table({c.name: _text(c.name, c.kind, values[c.name]) for c in contract})
    with ThreadPoolExecutor(max_workers=2) as pool:
        arrays = pool.map(lambda c: _text(c.name, c.kind, values[c.name]), contract)
        return pa.table(dict(zip([c.name for c in contract], arrays, strict=True)))


def format_month(out: MonthOutput) -> dict[str, pa.Table]:
    """The sources of a month other than the CDRs as string tables in the contract's text formats."""
    sources = {"subscriptions": out.subscriptions, "billing": out.billing, "care": out.care}
    if out.campaign_outcomes is not None:
        sources["campaign_outcomes"] = out.campaign_outcomes
    return {source: format_source(source, columns) for source, columns in sources.items()}


# ------------------------------------------------------------------------------------ typing
_ARROW_TYPES = {
    "string": pa.string(),
    "month": pa.string(),
    "int": pa.int32(),
    "bigint": pa.int64(),
    "decimal": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
}


# A pandas-style writer (pyarrow engine, defaults): nanosecond timestamps, int64 for every integer,
# decimals as exact decimal128, dictionary-encoded strings.
_PANDAS_TYPES = {
    **_ARROW_TYPES,
    "int": pa.int64(),
    "decimal": pa.decimal128(18, 4),
    "timestamp": pa.timestamp("ns"),
}


def typed(table: pa.Table, source: str, *, style: str = "arrow") -> pa.Table:
    """The string table in natural Parquet types (faults written here are all representable).

    ``style``: ``arrow`` (microsecond timestamps, int32, float64 amounts) or ``pandas`` (nanosecond
    timestamps, int64, decimal amounts, dictionary strings): two writers' natural choices.
    """
    types = _PANDAS_TYPES if style == "pandas" else _ARROW_TYPES
    cols = {}
    for col in C.CONTRACT[source]:
        arr = table.column(col.name)
        if col.kind == "timestamp":
            cols[col.name] = pc.cast(pc.strptime(arr, "%Y-%m-%d %H:%M:%S", "s"), types["timestamp"])
        elif col.kind == "decimal" and style == "pandas":
            cols[col.name] = pc.cast(pc.cast(arr, pa.decimal128(38, 10)), types["decimal"])
        elif col.kind in ("string", "month") and style == "pandas":
            cols[col.name] = pc.dictionary_encode(arr)
        else:
            cols[col.name] = pc.cast(arr, types[col.kind])
    return pa.table(cols)
