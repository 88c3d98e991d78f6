"""The landing delivery of one source-month: its files listed in delivery order and checked before reading.

Every file is checked before anything is read or written: a known format, a readable header (CSV) or
schema (Parquet), every contract column present and none twice, a gzip that decompresses to its end. A
file that fails names itself in a one-line error.
"""

from __future__ import annotations

import csv
import io
import logging
import mmap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from isal import igzip

from features import contract as C
from features.errors import MissingColumnsError

log = logging.getLogger(__name__)


class IncompleteDeliveryError(RuntimeError):
    """A month folder without ``_SUCCESS`` (pass ``--allow-incomplete`` to load it anyway)."""


class UnreadableFileError(RuntimeError):
    """A file in a month folder that is not CSV/CSV.gz/Parquet or cannot be read."""


class MissingDeliveryError(RuntimeError):
    """A required source has no folder for the month."""


@dataclass(frozen=True)
class LandingFile:
    path: str
    name: str
    fmt: str  # csv | parquet
    columns: tuple[str, ...]
    mtime: float = 0.0
    size: int = 0  # bytes on disk
    multiline: bool = False  # CSV: holds a quoted line break, or gzip (parsed whole, not split)
    types: tuple[tuple[str, str], ...] = ()  # Parquet: (contract column, Arrow type) as written


def _contract_types(schema: pa.Schema, source: str) -> tuple[tuple[str, str], ...]:
    return tuple((name, str(schema.field(name).type)) for name in C.columns(source))


def _header(path: Path) -> list[str]:
    opener = igzip.open if path.name.endswith(".gz") else open
    try:
        # only the header line is decoded here: a bad byte further down is a bad row, not a bad file;
        # utf-8-sig: a byte-order mark before the first column name is not part of the name
        with opener(path, "rb") as handle:
            line = handle.readline().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise UnreadableFileError(f"{path}: cannot be read as UTF-8 CSV ({exc})") from None
    if not line.strip():
        raise UnreadableFileError(f"{path}: empty file (no header row)")
    return [h.strip() for h in next(csv.reader(io.StringIO(line)))]


def _check_gzip(path: Path) -> None:
    """Decompress the whole file once: a truncated or corrupt gzip fails here with one clear line."""
    try:
        with igzip.open(path, "rb") as handle:
            while handle.read(1 << 24):
                pass
    except (OSError, EOFError, ValueError) as exc:
        raise UnreadableFileError(f"{path}: truncated or corrupt gzip ({exc})") from None


def has_quoted_line_break(path: Path) -> bool:
    """Whether a CSV file holds a quoted field with a line break (needs the whole-record parser).

    A gzip file is read whole by one task anyway. A plain file stays splittable unless one of its
    lines ends inside quotes: quotes open and close in pairs (an escaped quote is two), so a line
    break inside a quoted field is one preceded by an odd number of quote characters. A quoted
    header or fully quoted fields (as many exporters write them) leave the file splittable.
    """
    if path.name.endswith(".gz"):
        return True
    if path.stat().st_size == 0:
        return False
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        body = data.find(b"\n") + 1
        if body == 0 or data.find(b'"', body) < 0:
            return False
        return _odd_quotes_at_a_line_break(np.frombuffer(data, dtype=np.uint8))


_CHUNK = 1 << 26


def _odd_quotes_at_a_line_break(data: np.ndarray) -> bool:
    """Whether any line feed in ``data`` follows an odd number of quote characters (chunked, vectorised)."""
    parity = 0
    for start in range(0, len(data), _CHUNK):
        chunk = data[start : start + _CHUNK]
        # a uint8 running count wraps at 256, which keeps its parity
        quotes = np.cumsum(chunk == ord('"'), dtype=np.uint8)
        quotes += parity
        if (quotes[chunk == ord("\n")] & 1).any():
            return True
        parity = int(quotes[-1]) & 1
    return False


def _check_parquet_types(path: Path, schema: pa.Schema, source: str) -> None:
    """A contract column of a type no contract kind can come from fails the file, naming the column."""
    for name in C.columns(source):
        if name not in schema.names:
            continue
        kind = schema.field(name).type
        if pa.types.is_nested(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            raise UnreadableFileError(f"{path}: column {name} has type {kind}, not a contract type")


def list_delivery(
    folder: Path, source: str, *, allow_incomplete: bool, allow_empty: bool = False
) -> tuple[list[LandingFile], bool]:
    """Check a month folder and every file's columns.

    Returns the files in delivery order (modification time, then name) and whether it was incomplete.
    A folder without data files is refused unless ``allow_empty`` and it is complete (``_SUCCESS``) and
    holds no data-looking file that is not read: an optional source's month with nothing to deliver, such
    as a month without campaigns. Then the list is empty.
    """
    incomplete = not (folder / C.SUCCESS_MARKER).exists()
    if incomplete and not allow_incomplete:
        raise IncompleteDeliveryError(
            f"{folder}: no {C.SUCCESS_MARKER} marker, the delivery is incomplete "
            "(use --allow-incomplete to load it)"
        )
    required = set(C.columns(source))
    files = []
    unread = []
    for path in sorted(folder.iterdir()):
        if path.is_dir():
            continue
        if path.name.startswith(("_", ".")):
            # hidden and underscore names are a writer's bookkeeping (_SUCCESS, Hadoop's .crc files), never
            # data; a data-looking one is named, as its rows are not loaded
            if path.name.endswith(C.DATA_SUFFIXES):
                unread.append(path.name)
                log.warning(
                    "%s: %s is not read (a name starting with _ or . is not a data file)", folder, path.name
                )
            continue
        if not path.name.endswith(C.DATA_SUFFIXES):
            raise UnreadableFileError(f"{path}: not a CSV, CSV.gz or Parquet file")
        schema = None
        multiline = False
        if path.name.endswith(".parquet"):
            try:
                schema = pq.read_schema(path)
            except Exception as exc:
                raise UnreadableFileError(f"{path}: not a readable Parquet file ({exc})") from None
            cols = schema.names
            fmt = "parquet"
        else:
            cols = _header(path)
            fmt = "csv"
            if path.name.endswith(".gz"):
                _check_gzip(path)
            multiline = has_quoted_line_break(path)
        repeated = sorted({c for c in cols if cols.count(c) > 1})
        # a contract column twice is ambiguous; an extra column twice is ignored like any extra column
        # (Parquet readers need unique names)
        refused = repeated if fmt == "parquet" else [c for c in repeated if c in required]
        if refused:
            raise UnreadableFileError(f"{path}: column {', '.join(refused)} appears twice in the header")
        cols = unique_names(cols, required)
        missing = sorted(required - set(cols))
        if missing:
            raise MissingColumnsError(missing, f"{path}")
        if schema is not None:
            _check_parquet_types(path, schema, source)
        st = path.stat()
        files.append(
            LandingFile(
                str(path),
                path.name,
                fmt,
                tuple(cols),
                st.st_mtime,
                st.st_size,
                multiline=multiline,
                types=_contract_types(schema, source) if schema is not None else (),
            )
        )
    if not files:
        if unread:
            why = f"{', '.join(unread)} not read: a name starting with _ or . is not a data file"
        elif not allow_empty:
            why = f"a delivery of {source} holds at least one, a header-only CSV for a month without rows"
        elif incomplete:
            why = f"no {C.SUCCESS_MARKER} either: a delivery of nothing counts only when complete"
        else:
            log.warning("%s: the delivery holds no data files: no rows", folder)
            return [], incomplete
        raise UnreadableFileError(f"{folder}: no data files ({why})")
    # in delivery order: a later file's copy of a record wins
    return sorted(files, key=lambda f: (f.mtime, f.name)), incomplete


def unique_names(columns: Sequence[str], contract: set[str]) -> list[str]:
    """``columns`` with each extra column whose name repeats another's, regardless of case, renamed
    ``<name>#2``, ``#3``...: Spark resolves names regardless of case, and a reader needs them unique. Only
    extra columns repeat (a contract column twice is refused) and they are not read; the contract's
    columns keep their names."""
    taken = {c.casefold() for c in columns}
    kept = {c.casefold() for c in columns if c in contract}
    out: list[str] = []
    for name in columns:
        key = name.casefold()
        if name not in contract and key in kept:
            k = 2
            while f"{key}#{k}" in taken:
                k += 1
            name, key = f"{name}#{k}", f"{key}#{k}"
            taken.add(key)
        kept.add(key)
        out.append(name)
    return out


def extra_columns(files: Sequence[LandingFile], source: str) -> dict[str, list[str]]:
    """Per file, the columns it holds beyond the contract (ignored, and reported)."""
    contract = set(C.columns(source))
    return {f.name: sorted(set(f.columns) - contract) for f in files if set(f.columns) - contract}


# landing bytes on disk -> rows as text: gzip and Parquet expand to several times their size as text
_TEXT_FACTOR = {"csv": 1.0, "csv.gz": 5.0, "parquet": 4.0}


def delivery_text_mb(files: Sequence[LandingFile]) -> float:
    """The delivery's size as CSV text, estimated from its files' sizes (MB)."""
    kinds = ("csv.gz" if f.name.endswith(".gz") else f.fmt for f in files)
    return sum(f.size * _TEXT_FACTOR.get(kind, 1.0) for f, kind in zip(files, kinds, strict=True)) / 2**20
