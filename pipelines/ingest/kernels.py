"""The source checks of ``features.cleaning.validate_rows`` as Arrow compute kernels.

Input: the contract's columns as text (null where the field was empty), as the CSV reader gives them.
Output: the same typed columns, ``_reasons`` and ``_raw`` that ``validate_rows`` gives, value for value, so
the rest of ingest cannot tell which path checked a row. Every kernel works on whole columns; Python only
touches the values a fast kernel cannot judge (overlong numbers, exponents: rare) and the rejected rows.
"""

from __future__ import annotations

import datetime as dt
import decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features import contract as C
from features.cleaning import RAW_COL, REASONS_COL, REPLACEMENT_CHAR

DECIMAL_TYPE = pa.decimal128(18, 4)
TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")
ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "month": pa.string(),
    "int": pa.int32(),
    "bigint": pa.int64(),
    "decimal": DECIMAL_TYPE,
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": TIMESTAMP_TYPE,
}
# what Spark's number casts trim (every character up to the space) and accept between
_WS = r"[\x00-\x20]*"
_INTEGER = rf"^{_WS}[+-]?[0-9]+{_WS}$"
_DECIMAL = rf"^{_WS}[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?{_WS}$"
# forms Arrow's own cast reads exactly as Spark does (no rounding, no overflow possible)
_PLAIN_DECIMAL = r"^-?[0-9]{1,14}(\.[0-9]{0,4})?$"
_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_TIMESTAMP = r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?$"
_MONTH = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
_LIMITS = {"int": (-(2**31), 2**31 - 1), "bigint": (-(2**63), 2**63 - 1)}
_QUANT = decimal.Decimal("0.0001")
_DECIMAL_MAX = decimal.Decimal(10) ** 14


def _where(mask: pa.Array, values: pa.Array, kind: pa.DataType) -> pa.Array:
    """``values`` where ``mask`` holds, else null."""
    return pc.if_else(pc.fill_null(mask, False), values, pa.nulls(len(values), kind))


_WS_CHARS = "".join(chr(i) for i in range(0x21))


def _strip(text: pa.Array) -> pa.Array:
    """Spark's number casts: surrounding control characters and spaces, and a leading plus, dropped
    (the text matched the number's pattern: one sign at most, no space after it)."""
    return pc.utf8_ltrim(pc.utf8_trim(text, _WS_CHARS), "+")


def _python_values(text: pa.Array, parse, kind: pa.DataType) -> pa.Array:
    return pa.array([None if t is None else parse(t) for t in text.to_pylist()], kind)


def _parse_integer(text: pa.Array, kind: str) -> pa.Array:
    ok = pc.match_substring_regex(text, _INTEGER)
    clean = _strip(_where(ok, text, pa.string()))
    lo, hi = _LIMITS[kind]
    if (pc.max(pc.utf8_length(clean)).as_py() or 0) > 18:

        def one(t: str) -> int | None:
            v = int(t)
            return v if lo <= v <= hi else None

        return _python_values(clean, one, ARROW_TYPES[kind])
    wide = pc.cast(clean, pa.int64())
    fits = pc.and_(pc.greater_equal(wide, lo), pc.less_equal(wide, hi))
    return pc.cast(_where(fits, wide, pa.int64()), ARROW_TYPES[kind])


def _spark_decimal(t: str) -> decimal.Decimal | None:
    try:
        v = decimal.Decimal(t).quantize(_QUANT, rounding=decimal.ROUND_HALF_UP)
    except decimal.InvalidOperation:
        return None
    return v if abs(v) < _DECIMAL_MAX else None


def _parse_decimal(text: pa.Array) -> pa.Array:
    ok = pc.match_substring_regex(text, _DECIMAL)
    clean = _strip(_where(ok, text, pa.string()))
    plain = pc.fill_null(pc.match_substring_regex(clean, _PLAIN_DECIMAL), False)
    fast = pc.cast(_where(plain, clean, pa.string()), DECIMAL_TYPE)
    other = pc.and_(pc.invert(plain), pc.is_valid(clean))
    if not pc.any(other).as_py():
        return fast
    slow = _python_values(_where(other, clean, pa.string()), _spark_decimal, DECIMAL_TYPE)
    return pc.if_else(plain, fast, slow)


def _parse_timestamp_exact(text: pa.Array, fmt: str, width: int) -> pa.Array:
    head = pc.utf8_slice_codeunits(text, 0, width)
    # in seconds: Arrow prints the seconds of a finer unit with a fraction
    parsed = pc.strptime(head, format=fmt, unit="s", error_is_null=True)
    # strptime rolls 02-30 over into March and takes second 60: only a value that prints back is real
    exact = pc.equal(pc.strftime(parsed, format=fmt), head)
    return pc.cast(_where(exact, parsed, pa.timestamp("s")), pa.timestamp("us"))


def _digits(chars: np.ndarray, starts: np.ndarray, at: int, width: int) -> np.ndarray:
    out = np.zeros(len(starts), dtype=np.int64)
    for i in range(at, at + width):
        out = out * 10 + (chars[starts + i].astype(np.int64) - 48)
    return out


def _parse_timestamp(text: pa.Array, fmt: str, width: int) -> pa.Array:
    """Text already in the contract's layout (``YYYY-MM-DD[ HH:MM:SS...]``, else null) as a timestamp;
    null where the date or time does not exist.

    The digits are read straight from the text's buffer; a value the fast reading is not sure of (an
    impossible field, a year far from ours) goes through strptime and must print back unchanged."""
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    text = pc.cast(text, pa.string())  # int32 offsets, whatever string type came in
    n = len(text)
    valid = np.asarray(text.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    if not valid.any():
        return pa.nulls(n, pa.timestamp("us"))
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32, count=text.offset + n + 1)[text.offset :]
    data = text.buffers()[2]
    chars = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    starts = offsets[:-1][valid].astype(np.int64)
    year, month, day = (_digits(chars, starts, at, width) for at, width in ((0, 4), (5, 2), (8, 2)))
    seconds = np.zeros(len(starts), dtype=np.int64)
    ok = (year >= 1900) & (year < 2200) & (month >= 1) & (month <= 12) & (day >= 1)
    if width > 10:
        hour, minute, second = (_digits(chars, starts, at, 2) for at in (11, 14, 17))
        ok &= (hour < 24) & (minute < 60) & (second < 60)
        seconds = hour * 3600 + minute * 60 + second
    month_start = (year - 1970) * 12 + np.clip(month, 1, 12) - 1
    first = month_start.astype("datetime64[M]").astype("datetime64[D]")
    after = (month_start + 1).astype("datetime64[M]").astype("datetime64[D]")
    ok &= day <= (after - first).astype(np.int64)
    epoch = (first.astype(np.int64) + day - 1) * 86400 + seconds
    values = np.zeros(n, dtype=np.int64)
    values[valid] = epoch * 1_000_000
    known = np.zeros(n, dtype=bool)
    known[valid] = ok
    fast = pa.array(values, pa.timestamp("us"), mask=~known)
    unsure = valid & ~known
    if not unsure.any():
        return fast
    slow = _parse_timestamp_exact(_where(pa.array(unsure), text, pa.string()), fmt, width)
    return pc.if_else(pa.array(known), fast, slow)


def parse_column(raw: pa.Array, kind: str) -> pa.Array:
    """One normalised text column (null: empty) as its contract type; null where it does not parse."""
    if kind in ("string", "month"):
        return raw
    if kind in ("int", "bigint"):
        return _parse_integer(raw, kind)
    if kind == "decimal":
        return _parse_decimal(raw)
    if kind == "boolean":
        low = pc.utf8_lower(pc.utf8_trim(raw, " "))
        yes = pc.is_in(low, pa.array(["true", "1"]))
        no = pc.is_in(low, pa.array(["false", "0"]))
        return pc.if_else(yes, True, pc.if_else(no, pa.scalar(False), pa.scalar(None, pa.bool_())))
    if kind == "date":
        ok = pc.match_substring_regex(raw, _DATE)
        day = _parse_timestamp(_where(ok, raw, pa.string()), "%Y-%m-%d", 10)
        return pc.cast(day, pa.date32())
    if kind == "timestamp":
        ok = pc.match_substring_regex(raw, _TIMESTAMP)
        ts = _parse_timestamp(_where(ok, raw, pa.string()), "%Y-%m-%d %H:%M:%S", 19)
        return pc.cast(ts, TIMESTAMP_TYPE)
    raise ValueError(f"unknown column kind {kind!r}")


def _reasons(checks: list[tuple[np.ndarray, str]], n: int) -> tuple[pa.Array, np.ndarray]:
    """The ``_reasons`` list per row (in check order) and the rejected rows, from (mask, code) pairs."""
    rows = [np.flatnonzero(mask) for mask, _ in checks]
    codes = [np.full(len(r), i, dtype=np.int32) for i, r in enumerate(rows)]
    row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    code = np.concatenate(codes) if codes else np.zeros(0, np.int32)
    order = np.argsort(row, kind="stable")  # by row, each row's codes in check order
    counts = np.bincount(row, minlength=n)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    names = pa.array([c for _, c in checks], pa.string())
    values = names.take(pa.array(code[order])) if len(code) else pa.array([], pa.string())
    return pa.ListArray.from_arrays(pa.array(offsets), values), counts > 0


_REPLACEMENT_BYTES = REPLACEMENT_CHAR.encode()


def _holds(text: pa.Array, needle: bytes) -> bool:
    """Whether any value may hold ``needle``: one search of the column's bytes (a slice's neighbours
    included: a false yes only costs the exact check)."""
    data = text.buffers()[2]
    return data is not None and data.to_pybytes().find(needle) >= 0


def _without_blanks(text: pa.Array) -> pa.Array:
    """Values of spaces only (or empty) as null, as Spark's trim then empty check does."""
    if not pc.any(pc.starts_with(text, " ")).as_py() and not _holds_empty(text):
        return text
    blank = pc.equal(pc.utf8_trim(text, " "), "")
    return _where(pc.invert(blank), text, pa.string())


def _holds_empty(text: pa.Array) -> bool:
    return bool(pc.any(pc.equal(pc.binary_length(text), 0)).as_py())


def _mask(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def check_columns(
    raw: dict[str, pa.Array], malformed: np.ndarray | None, *, source: str, month: str, late_days: int
) -> tuple[dict[str, pa.Array], pa.Array, pa.Array, np.ndarray]:
    """The typed columns, ``_reasons``, ``_raw`` and the rejected rows of one batch of text columns.

    The same rules in the same order as :func:`features.cleaning.validate_rows`.
    """
    start = dt.datetime.fromisoformat(month + "-01")
    next_start = dt.datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=dt.UTC)
    oldest = start.replace(tzinfo=dt.UTC) - dt.timedelta(days=late_days)
    contract = C.CONTRACT[source]
    n = len(next(iter(raw.values())))
    checks: list[tuple[np.ndarray, str]] = []
    if malformed is not None:
        checks.append((malformed, C.WRONG_FIELD_COUNT))
    typed: dict[str, pa.Array] = {}
    for col in contract:
        text = raw[col.name]
        norm = _without_blanks(text)
        value = parse_column(norm, col.kind)
        typed[col.name] = value
        present = pc.is_valid(norm)
        if _holds(text, _REPLACEMENT_BYTES):
            undecodable = _mask(pc.match_substring(text, REPLACEMENT_CHAR))
            checks.append((undecodable, f"{C.INVALID_ENCODING}:{col.name}"))
        if not col.nullable:
            checks.append((~_mask(present), f"{C.MISSING_REQUIRED}:{col.name}"))
        checks.append((_mask(pc.and_(present, pc.is_null(value))), f"{C.UNPARSEABLE}:{col.name}"))
        if col.kind == "month":
            off = pc.invert(pc.match_substring_regex(norm, _MONTH))
            checks.append((_mask(off), f"{C.UNPARSEABLE}:{col.name}"))
        if col.domain:
            outside = pc.invert(pc.is_in(norm, pa.array(col.domain, pa.string())))
            checks.append((_mask(pc.and_(present, outside)), f"{C.INVALID_VALUE}:{col.name}"))
        if col.non_negative:
            checks.append((_mask(pc.less(value, pa.scalar(0, value.type))), f"{C.INVALID_VALUE}:{col.name}"))
    if source == "billing":
        checks.append((_mask(pc.not_equal(typed["bill_month"], month)), C.MONTH_MISMATCH))
    event_col = {"cdr": "event_ts", "care": "contact_ts"}.get(source)
    if event_col:
        ts = typed[event_col]
        checks.append((_mask(pc.greater_equal(ts, pa.scalar(next_start, TIMESTAMP_TYPE))), C.FUTURE_EVENT))
        checks.append((_mask(pc.less(ts, pa.scalar(oldest, TIMESTAMP_TYPE))), C.TOO_OLD_EVENT))
    reasons, rejected = _reasons(checks, n)
    names = [c.name for c in contract]
    raw_struct = pa.StructArray.from_arrays(
        [raw[c] for c in names], names=names, mask=pa.array(~rejected, pa.bool_())
    )
    return typed, reasons, raw_struct, rejected


__all__ = ["ARROW_TYPES", "RAW_COL", "REASONS_COL", "check_columns", "parse_column"]
