"""One landing CSV file parsed, checked and staged by a Spark task in its Python worker, with pyarrow.

The task reads the file as text in blocks, applies the source's checks (:mod:`pipelines.ingest.kernels`)
and writes the checked rows (typed columns, ``_reasons``, ``_raw`` and the row's place: ``_fid``,
``_block``, ``_pid``, ``_pos``, as :func:`pipelines.ingest.read.read_delivery` gives them) to one staged
Parquet file. The rows never cross into the JVM: the task yields one small row (file, rows).
"""

from __future__ import annotations

import csv
import functools
import json
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from features import contract as C
from pipelines.core.arrow import BatchFn
from pipelines.core.privacy import PHONE_COLUMNS, PSEUDONYMISERS, PseudonymKey
from pipelines.core.spark import require_seen
from pipelines.ingest.kernels import ARROW_TYPES, RAW_COL, REASONS_COL, check_columns
from pipelines.ingest.owners import Owners, resolve

BLOCK_BYTES = 64 << 20  # text parsed per batch: bounds a task's memory whatever the file's size
STAGED_DDL = "fid int, file string, rejected_file string, rows long, rejected string, error string"


class SparkPathNeededError(RuntimeError):
    """The CSV reader cannot hand this file over as the checks need it: the source goes the Spark path."""


class MultilineMalformedError(SparkPathNeededError):
    """A file whose values hold line breaks also holds malformed records: their record numbers are only
    known to the whole-record parser, so the source goes the Spark path."""


def _blocks(open_reader: Callable[[], pcsv.CSVStreamingReader]) -> Iterator[pa.RecordBatch | None]:
    """The reader's batches, then None; what the reader itself refuses (e.g. a malformed record holding
    undecodable bytes) as :class:`SparkPathNeededError` (the checks' own errors are not caught here)."""
    reader = None
    try:
        reader = open_reader()
        yield from reader
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise SparkPathNeededError(str(exc)) from exc
    finally:
        if reader is not None:
            reader.close()
    yield None


@dataclass(frozen=True)
class TaskPlan:
    """What every task needs, made on the driver (plain data: it is pickled to the workers)."""

    source: str
    month: str
    late_days: int
    paths: tuple[str, ...]
    columns: tuple[tuple[str, ...], ...]  # per file, its header's columns
    multiline: tuple[bool, ...]  # per file, whether values may hold line breaks (or gzip: unknown)
    order: tuple[int, ...]  # the files in the order the tasks take them
    target: str  # the staging folder (a local path: executors share it with the driver)
    key: PseudonymKey | None = None  # phone numbers replaced by their pseudonyms (privacy)
    owners: Owners | None = None  # CDR numbers resolved to their holder at event time


def checked_schema(source: str, *, resolved: bool = False) -> pa.Schema:
    """The staged rows' schema: what ``validate_rows`` over ``read_delivery`` gives, as Arrow (``resolved``:
    with the numbers' holder, as :func:`pipelines.ingest.subscribers.with_subscriber` adds it)."""
    contract = C.CONTRACT[source]
    raw = pa.struct([pa.field(c.name, pa.string()) for c in contract])
    return pa.schema(
        [
            pa.field("_fid", pa.int32()),
            pa.field("_block", pa.int64()),
            pa.field("_pid", pa.int32()),
            pa.field("_pos", pa.int64()),
            *[pa.field(c.name, ARROW_TYPES[c.kind]) for c in contract],
            *([pa.field("subscriber_id", pa.string())] if resolved else []),
            pa.field(REASONS_COL, pa.list_(pa.string())),
            pa.field(RAW_COL, raw),
        ]
    )


def pseudonymised(values: pa.Array, column: str, key: PseudonymKey) -> pa.Array:
    """``values`` as :func:`pipelines.core.privacy.pseudonymise_rows` turns them: each distinct number
    hashed once, blanks and nulls kept."""
    one = PSEUDONYMISERS[column]
    distinct = pc.drop_null(pc.unique(values))
    hashed = pa.array([one(v, key) if v.strip() else v for v in distinct.to_pylist()], pa.string())
    return hashed.take(pc.index_in(values, distinct))


def _rejected_counts(reasons: pa.Array) -> dict[str, int]:
    """Rows per first reason."""
    first = pc.list_element(reasons.filter(pc.greater(pc.list_value_length(reasons), 0)), 0)
    return {str(v["values"]): int(v["counts"]) for v in pc.value_counts(first).to_pylist()}


def _text(column: pa.Array) -> pa.Array:
    """Bytes as text; undecodable bytes become the replacement character, as the JVM's decoder does."""
    try:
        return pc.cast(column, pa.string())
    except pa.ArrowInvalid:
        return pa.array(
            [None if b is None else b.decode("utf-8", "replace") for b in column.to_pylist()], pa.string()
        )


def _malformed_rows(bad: list[tuple[int, str]], header: Sequence[str]) -> dict[str, list[str | None]]:
    """Records whose field count differs from the header: their fields as the JVM's parser keeps them
    (missing ones null, extra ones dropped)."""
    out: dict[str, list[str | None]] = {c: [] for c in header}
    for _, text in bad:
        fields = next(csv.reader([text], quotechar='"', doublequote=True), [])
        for i, c in enumerate(header):
            value = fields[i] if i < len(fields) else None
            out[c].append(value if value != "" else None)
    return out


class _Staging:
    """One file's staged rows: the good ones (no reasons, no raw text) and, opened at the first, the
    rejected ones, each as one Parquet file (uncompressed: read back once or twice, then removed)."""

    def __init__(self, folder: str, fid: int, schema: pa.Schema) -> None:
        require_seen(folder, "ingest's staging folder")  # made by the driver: never this host's own
        stem = f"{folder.rstrip('/')}/part-{fid:05d}-{uuid.uuid4().hex[:8]}"
        self.good_path, self.rejected_path = f"{stem}.parquet", f"{stem}.rejected.parquet"
        self.schema = schema
        self.good_schema = pa.schema([f for f in schema if f.name not in (REASONS_COL, RAW_COL)])
        self.good = pq.ParquetWriter(self.good_path, self.good_schema, compression="none")
        self.rejected: pq.ParquetWriter | None = None

    def write(self, batch: pa.RecordBatch, rejected: np.ndarray) -> None:
        if not rejected.all():
            self.good.write_batch(batch.filter(pa.array(~rejected)).select(self.good_schema.names))
        if rejected.any():
            if self.rejected is None:
                self.rejected = pq.ParquetWriter(self.rejected_path, self.schema, compression="none")
            self.rejected.write_batch(batch.filter(pa.array(rejected)))

    def close(self) -> None:
        self.good.close()
        if self.rejected is not None:
            self.rejected.close()

    def remove(self) -> None:
        self.close()
        for path in (self.good_path, self.rejected_path):
            if os.path.exists(path):
                os.remove(path)


def check_file(plan: TaskPlan, fid: int, staging: _Staging, counts: Counter[str]) -> int:
    """Parse, check and stage one file's rows; the number of rows (``counts``: rejected rows by first
    reason, added to)."""
    header = plan.columns[fid]
    multiline = plan.multiline[fid]
    wanted = C.columns(plan.source)
    bad: list[tuple[int, str]] = []
    require_seen(plan.paths[fid], "a landing file the driver listed")

    def invalid(row: pcsv.InvalidRow) -> str:
        bad.append((row.number, row.text))
        return "skip"

    reader = functools.partial(
        pcsv.open_csv,
        plan.paths[fid],
        read_options=pcsv.ReadOptions(
            column_names=list(header), skip_rows=1, use_threads=False, block_size=BLOCK_BYTES
        ),
        parse_options=pcsv.ParseOptions(invalid_row_handler=invalid, newlines_in_values=multiline),
        convert_options=pcsv.ConvertOptions(
            column_types={c: pa.binary() for c in header},
            include_columns=list(wanted),
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
            null_values=[""],
        ),
    )
    schema = checked_schema(plan.source, resolved=plan.owners is not None)
    done = 0  # records of the file before this batch (good and malformed)
    used = 0  # malformed records already put back (the parser may run a block ahead of the batches)
    empty = {c: pa.array([], pa.string()) for c in wanted}
    for batch in _blocks(reader):  # None: malformed records after the last good one
        raw = empty if batch is None else {c: _text(batch.column(c)) for c in wanted}
        if multiline:  # the JVM's whole-record parser turns a quoted CRLF into LF: one rule for all
            raw = {c: pc.replace_substring(v, "\r\n", "\n") for c, v in raw.items()}
        n_good = 0 if batch is None else batch.num_rows
        rows: list[tuple[int, str]] = []
        for number, text in bad[used:]:  # record numbers count the header line, from 1
            if batch is not None and number - 2 >= done + n_good + len(rows):
                break
            rows.append((number, text))
        used += len(rows)
        n = n_good + len(rows)
        if n == 0:
            continue
        if rows and multiline:  # a line number is not a record number where values hold line breaks
            raise MultilineMalformedError(plan.paths[fid])
        malformed = None
        if rows:  # the batch's malformed records go back in their places
            extra = _malformed_rows(rows, header)
            is_bad = np.zeros(n, dtype=bool)
            is_bad[np.array([number - 2 - done for number, _ in rows], dtype=np.int64)] = True
            order = np.concatenate([np.flatnonzero(~is_bad), np.flatnonzero(is_bad)])
            back = np.empty(n, dtype=np.int64)
            back[order] = np.arange(n)
            raw = {
                c: pa.concat_arrays([raw[c], pa.array(extra[c], pa.string())]).take(pa.array(back))
                for c in wanted
            }
            malformed = is_bad
        typed, reasons, raw_struct, rejected = check_columns(
            raw, malformed, source=plan.source, month=plan.month, late_days=plan.late_days
        )
        if plan.key is not None:  # before anything is resolved or stored: no clear number goes further
            phones = PHONE_COLUMNS.get(plan.source, ())
            typed = {c: pseudonymised(v, c, plan.key) if c in phones else v for c, v in typed.items()}
            # the raw values show only on rejected rows: only theirs are hashed
            shown = pa.array(rejected)
            raw_struct = pa.StructArray.from_arrays(
                [
                    pseudonymised(pc.if_else(shown, f, pa.scalar(None, f.type)), c, plan.key)
                    if c in phones
                    else f
                    for c, f in ((c, raw_struct.field(c)) for c in wanted)
                ],
                names=list(wanted),
                mask=pa.array(~rejected, pa.bool_()),
            )
        holder = []
        if plan.owners is not None:  # a good row whose number nobody held then is quarantined
            subscriber = resolve(plan.owners, typed["msisdn"], typed["event_ts"])
            unknown = pc.and_(pa.array(~rejected), pc.is_null(subscriber))
            reasons = pc.if_else(unknown, pa.scalar([C.UNKNOWN_MSISDN], reasons.type), reasons)
            rejected = rejected | np.asarray(unknown.to_numpy(zero_copy_only=False), dtype=bool)
            holder = [subscriber]
        counts.update(_rejected_counts(reasons))
        columns = [
            pa.array(np.full(n, fid, dtype=np.int32)),
            pa.array(np.zeros(n, dtype=np.int64)),
            pa.array(np.full(n, fid, dtype=np.int32)),
            pa.array(np.arange(done, done + n, dtype=np.int64)),
            *[typed[c] for c in wanted],
            *holder,
            reasons,
            raw_struct,
        ]
        staging.write(pa.RecordBatch.from_arrays(columns, schema=schema), rejected)
        done += n
    return done


def check_files(plan: TaskPlan) -> BatchFn:
    """The ``mapInArrow`` function over ``spark.range``: row ``i`` is the file ``plan.order[i]``, staged as
    one file and named in one row (``STAGED_DDL``: its rows and, as JSON, its rejected rows by first
    reason); ``rows`` -1: the file needs the Spark path (:class:`SparkPathNeededError`, said in
    ``error``)."""
    out = pa.schema(
        [
            ("fid", pa.int32()),
            ("file", pa.string()),
            ("rejected_file", pa.string()),
            ("rows", pa.int64()),
            ("rejected", pa.string()),
            ("error", pa.string()),
        ]
    )
    schema = checked_schema(plan.source, resolved=plan.owners is not None)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for fid in (plan.order[i] for i in batch.column(0).to_pylist()):
                staging = _Staging(plan.target, fid, schema)
                counts: Counter[str] = Counter()
                error = ""
                try:
                    rows = check_file(plan, fid, staging, counts)
                    staging.close()
                    good = staging.good_path
                    rejected = staging.rejected_path if staging.rejected is not None else ""
                except SparkPathNeededError as exc:
                    staging.remove()
                    good, rejected, rows, error = "", "", -1, f"{plan.paths[fid]}: {exc}"[:500]
                except BaseException:
                    staging.remove()
                    raise
                row = {"fid": [fid], "file": [good], "rejected_file": [rejected], "rows": [rows],
                       "rejected": [json.dumps(counts)], "error": [error]}  # fmt: skip
                yield pa.RecordBatch.from_pydict(row, schema=out)

    return run
