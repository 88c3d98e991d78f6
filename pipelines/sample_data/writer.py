"""Writes simulated months as landing files per the contract, with late records, duplicates and faults.

Every injected fault is recorded in ``<landing_root>/_sample_manifest/`` (outside the source folders):
``faults.jsonl`` (source, month, file, row, reason) and ``manifest.json`` (per source-month counts of rows
written, late records, duplicates, and file-level faults), so tests can check ingest caught exactly those.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from isal import igzip

from features import contract as C
from features.calendar import add_months, month_start
from pipelines.sample_data.simulate import CATALOGUE_TRUTH, MonthOutput, OperatorSimulation

log = logging.getLogger(__name__)

MANIFEST_DIR = "_sample_manifest"
BURN_IN_MONTHS = 3
LATE_SHARE = 0.04  # of the events of a month's last 7 days, delivered in the next month's folder
DUPLICATE_SHARE = 0.003


@dataclass(frozen=True)
class GenerateOptions:
    months: tuple[str, ...]
    subscribers: int
    seed: int
    bad_rows: float = 0.0
    file_faults: bool = False
    fmt: str = "csv"
    gzip_share: float = 0.3
    files_per_month: int = 2
    events_per_subscriber: int = 40


@dataclass
class GenerateReport:
    rows: dict[str, int] = field(default_factory=dict)
    cdr_rows: int = 0
    seconds: float = 0.0
    churn: list[dict[str, float]] = field(default_factory=list)


PARALLEL_WRITE_ROWS = 200_000  # sources at least this big are formatted and written on two threads


# ------------------------------------------------------------------------------- formatting
def _ids(prefix: str, values: np.ndarray, width: int = 9) -> pa.Array:
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
        return _ids(prefix, values, width)
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


# ------------------------------------------------------------------------------------ faults
def _fault_catalog(source: str, month: str) -> list[tuple[str, str | None, str, bool]]:
    """(column, replacement text or None for null, reason code, representable in Parquet)."""
    nxt2 = month_start(add_months(month, 2)).isoformat() + " 10:00:00"
    old = (np.datetime64(month_start(month)) - np.timedelta64(20, "D")).astype(str) + " 10:00:00"
    other_month = add_months(month, -5)
    return {
        "cdr": [
            ("event_ts", None, f"{C.MISSING_REQUIRED}:event_ts", True),
            ("event_ts", "2024-13-45 25:61:00", f"{C.UNPARSEABLE}:event_ts", False),
            ("event_type", "video", f"{C.INVALID_VALUE}:event_type", True),
            ("duration_s", "-5", f"{C.INVALID_VALUE}:duration_s", True),
            ("volume_kb", "12kb", f"{C.UNPARSEABLE}:volume_kb", False),
            ("event_ts", nxt2, C.FUTURE_EVENT, True),
            ("event_ts", old, C.TOO_OLD_EVENT, True),
            ("msisdn", "39990000001", C.UNKNOWN_MSISDN, True),
            ("roaming", "maybe", f"{C.UNPARSEABLE}:roaming", False),
        ],
        "subscriptions": [
            ("segment", "retail", f"{C.INVALID_VALUE}:segment", True),
            ("activation_date", "31/01/2020", f"{C.UNPARSEABLE}:activation_date", False),
            ("plan_id", None, f"{C.MISSING_REQUIRED}:plan_id", True),
        ],
        "billing": [
            ("bill_month", other_month, C.MONTH_MISMATCH, True),
            ("invoice_amount", "12,50", f"{C.UNPARSEABLE}:invoice_amount", False),
            ("overdue_days", "-3", f"{C.INVALID_VALUE}:overdue_days", True),
        ],
        "care": [
            ("category", "spam", f"{C.INVALID_VALUE}:category", True),
            ("contact_ts", None, f"{C.MISSING_REQUIRED}:contact_ts", True),
            ("resolved", "perhaps", f"{C.UNPARSEABLE}:resolved", False),
        ],
        "campaign_outcomes": [
            ("contacted", "yes?", f"{C.UNPARSEABLE}:contacted", False),
            ("subscriber_id", None, f"{C.MISSING_REQUIRED}:subscriber_id", True),
        ],
    }[source]


def inject_faults(
    table: pa.Table,
    source: str,
    month: str,
    rate: float,
    eligible: np.ndarray,
    rng: np.random.Generator,
    fmt: str,
) -> tuple[pa.Table, np.ndarray, list[str]]:
    """Corrupt about ``rate`` of the eligible rows; return the table, row indexes and reason codes."""
    candidates = np.flatnonzero(eligible)
    k = round(rate * table.num_rows)
    if k == 0 or candidates.size == 0:
        return table, np.array([], dtype=np.int64), []
    rows = np.sort(rng.choice(candidates, min(k, candidates.size), replace=False))
    catalog = [f for f in _fault_catalog(source, month) if fmt == "csv" or f[3]]
    which = rng.integers(0, len(catalog), rows.size)
    for i, (column, value, _reason, _) in enumerate(catalog):
        chosen = rows[which == i]
        if chosen.size == 0:
            continue
        mask = np.zeros(table.num_rows, dtype=bool)
        mask[chosen] = True
        col = table.column(column).combine_chunks()
        new = pc.if_else(pa.array(mask), pa.scalar(value, pa.string()), col)
        table = table.set_column(table.schema.get_field_index(column), column, new)
    reasons = [catalog[w][2] for w in which]
    return table, rows, reasons


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


# --format mixed: the parts of a month cycle through these (format, gzip, Parquet style)
MIXED_PARTS = (
    ("csv", False, ""),
    ("parquet", False, "arrow"),
    ("csv", True, ""),
    ("parquet", False, "pandas"),
)


# ------------------------------------------------------------------------------------ writing
def _write_part(table: pa.Table, path: Path, fmt: str, gz: bool, quoting: str) -> None:
    if fmt == "parquet":
        pq.write_table(table, path)
        return
    options = pacsv.WriteOptions(quoting_style=quoting)
    if gz:  # ISA-L's gzip at level 1: twice as fast as zlib's level 1, and it releases the GIL
        with igzip.open(path, "wb", compresslevel=1) as stream:
            pacsv.write_csv(table, stream, options)
    else:
        pacsv.write_csv(table, str(path), options)


# Generated CDR text never needs quotes (codes, digits, hex; its fault values hold no comma or quote),
# and unquoted text is a sixth smaller to write and compress. Arrow refuses to write a value that would
# need quotes under "none", so a change that breaks this fails loudly. Other sources keep quoting.
UNQUOTED_SOURCES = frozenset({"cdr"})
PARALLEL_WRITE_ROWS = 200_000


def write_source_month(
    root: Path,
    source: str,
    month: str,
    table: pa.Table,
    fault_rows: np.ndarray,
    fault_reasons: list[str],
    opts: GenerateOptions,
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    """Split into files (mixed formats, column orders, an extra column); return fault records."""
    folder = root / source / f"month={month}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    n = table.num_rows
    wanted = max(opts.files_per_month, len(MIXED_PARTS)) if opts.fmt == "mixed" else opts.files_per_month
    parts = max(1, min(wanted, n)) if n else 1
    bounds = np.linspace(0, n, parts + 1).astype(int)
    quoting = "none" if source in UNQUOTED_SOURCES else "needed"
    records = []
    jobs = []
    for p in range(parts):
        lo, hi = bounds[p], bounds[p + 1]
        part = table.slice(lo, hi - lo)
        if opts.fmt == "mixed":
            fmt, gz, style = MIXED_PARTS[p % len(MIXED_PARTS)]
        else:
            fmt, style = opts.fmt, "arrow"
            gz = fmt == "csv" and rng.random() < opts.gzip_share
        if fmt == "parquet":
            part = typed(part, source, style=style)
        if p == 1:  # any column order
            part = part.select(list(reversed(part.column_names)))
        if p == 0 and fmt == "csv":  # extra columns are ignored (and reported) by ingest
            part = part.append_column("extract_system", pa.repeat(pa.scalar("mediation-01"), part.num_rows))
        name = f"part-{p:03d}." + ("parquet" if fmt == "parquet" else "csv.gz" if gz else "csv")
        jobs.append((part, folder / name, fmt, gz, quoting))
        in_part = (fault_rows >= lo) & (fault_rows < hi)
        for row, reason in zip(
            fault_rows[in_part], np.asarray(fault_reasons, dtype=object)[in_part], strict=True
        ):
            records.append(
                {"source": source, "month": month, "file": name, "row": int(row - lo + 1), "reason": reason}
            )
    if n >= PARALLEL_WRITE_ROWS and len(jobs) > 1:  # big sources: files written side by side
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda job: _write_part(*job), jobs))
    else:
        for job in jobs:
            _write_part(*job)
    (folder / C.SUCCESS_MARKER).touch()
    return records


def _file_faults(root: Path, month: str, tables: dict[str, pa.Table]) -> list[dict[str, Any]]:
    """One file with a missing required column (billing) and one file that is not CSV (care)."""
    billing = tables["billing"].slice(0, 5).drop_columns(["paid_amount"])
    pacsv.write_csv(billing, str(root / "billing" / f"month={month}" / "part-late-fix.csv"))
    (root / "care" / f"month={month}" / "export.xlsx").write_bytes(b"PK\x03\x04not a csv file\x00\x01")
    return [
        {
            "source": "billing",
            "month": month,
            "file": "part-late-fix.csv",
            "fault": "missing_columns",
            "columns": ["paid_amount"],
        },
        {"source": "care", "month": month, "file": "export.xlsx", "fault": "unreadable_file"},
    ]


class _MonthFinisher:
    """Formats a simulated month, splits late and duplicated CDRs, injects faults and writes the files.

    Months are finished strictly in order (one at a time) with the writer's own random stream, so the
    output is deterministic for a seed while the next month is simulated beside it.
    """

    def __init__(self, root: Path, opts: GenerateOptions, report: GenerateReport, faults_out: Any) -> None:
        self.root, self.opts, self.report, self.faults_out = root, opts, report, faults_out
        self.rng = np.random.default_rng(opts.seed + 1)
        self.summary: dict[str, Any] = {
            "options": {**opts.__dict__, "months": list(opts.months)},
            "source_months": {},
            "file_faults": [],
        }
        self.carry: pa.Table | None = None  # late and duplicated CDRs for the next month's folder
        self.carry_late = self.carry_dup = 0
        self.prev_ids: np.ndarray | None = None
        self.pool = ThreadPoolExecutor(max_workers=2)  # Arrow's CSV writer and ISA-L release the GIL

    def finish(self, month: str, out: MonthOutput, is_last: bool) -> None:
        opts, rng, report = self.opts, self.rng, self.report
        report.churn.append({"month": month, **out.stats})
        n = out.cdr["event_ts"].size
        last_week = out.cdr["event_ts"] >= (
            np.datetime64(month_start(add_months(month, 1))) - np.timedelta64(7, "D")
        ).astype("datetime64[s]").astype(np.int64)
        late = last_week & (rng.random(n) < LATE_SHARE) & (not is_last)
        dup = ~late & (rng.random(n) < DUPLICATE_SHARE)
        # a record redelivered in the next folder is a late one (older records would be too old there)
        dup_next = dup & last_week & (rng.random(n) < 0.6) & (not is_last)
        dup_same = dup & ~dup_next
        # this folder: last month's late records, this month's on-time ones, and repeats of some of them;
        # the rows are picked before formatting, so the text is built once
        dup_rows = np.flatnonzero(dup_same)
        now = format_source("cdr", out.cdr, np.concatenate([np.flatnonzero(~late), dup_rows]))
        month_cdr = pa.concat_tables([self.carry, now]) if self.carry is not None else now
        n_carried = self.carry.num_rows if self.carry is not None else 0
        late_in, dup_in = self.carry_late, self.carry_dup
        self.carry = format_source("cdr", out.cdr, np.flatnonzero(late | dup_next))
        self.carry_late, self.carry_dup = int(late.sum()), int(dup_next.sum())
        tables = format_month(out)
        tables = {"subscriptions": tables.pop("subscriptions"), "cdr": month_cdr, **tables}
        # faults go to rows that are neither carried-in, nor duplicated, nor to be duplicated
        eligible = {
            "cdr": np.concatenate([np.zeros(n_carried, bool), ~(dup[~late]), np.zeros(dup_rows.size, bool)]),
        }
        # a quarantined snapshot row must not orphan the subscriber: only those seen the month before
        sub_ids = out.subscriptions["subscriber_id"]
        eligible["subscriptions"] = (
            np.isin(sub_ids, self.prev_ids) & (out.subscriptions["status"] == "active")
            if self.prev_ids is not None
            else np.zeros(sub_ids.size, bool)
        )
        self.prev_ids = sub_ids
        for source in ("billing", "care", "campaign_outcomes"):
            if source in tables:
                eligible[source] = np.ones(tables[source].num_rows, bool)
        writes: list[Future[list[dict[str, Any]]]] = []
        for source, table in tables.items():
            fault_rows, reasons = np.array([], dtype=np.int64), []
            if opts.bad_rows > 0:
                table, fault_rows, reasons = inject_faults(
                    table, source, month, opts.bad_rows, eligible[source], rng, opts.fmt
                )
            seed = int(rng.integers(0, 2**31))
            writes.append(
                self.pool.submit(
                    write_source_month,
                    self.root,
                    source,
                    month,
                    table,
                    fault_rows,
                    reasons,
                    opts,
                    np.random.default_rng(seed),
                )
            )
            self.summary["source_months"][f"{source}/{month}"] = {
                "rows": table.num_rows,
                "faults": int(fault_rows.size),
                **(
                    {
                        "late_in": late_in,
                        "duplicates_from_previous": dup_in,
                        "duplicates_same_month": int(dup_same.sum()),
                    }
                    if source == "cdr"
                    else {}
                ),
            }
            report.rows[source] = report.rows.get(source, 0) + table.num_rows
        report.cdr_rows += month_cdr.num_rows
        for future in writes:  # faults recorded in submission order (deterministic)
            for record in future.result():
                self.faults_out.write(json.dumps(record) + "\n")
        if opts.file_faults and is_last:
            self.summary["file_faults"] = _file_faults(self.root, month, tables)
        log.info(
            "generated %s: %d subscribers, %d CDRs (churn prepaid %.3f, postpaid %.3f)",
            month,
            tables["subscriptions"].num_rows,
            month_cdr.num_rows,
            out.stats["churn_prepaid"],
            out.stats["churn_postpaid"],
        )


def generate(landing_root: str | Path, opts: GenerateOptions) -> GenerateReport:
    """Simulate and write ``opts.months`` (consecutive) of all five sources under ``landing_root``."""
    t0 = time.perf_counter()
    root = Path(landing_root)
    root.mkdir(parents=True, exist_ok=True)
    months = list(opts.months)
    sim = OperatorSimulation(
        opts.subscribers, opts.seed, add_months(months[0], -BURN_IN_MONTHS), opts.events_per_subscriber
    )
    manifest_dir = root / MANIFEST_DIR
    manifest_dir.mkdir(exist_ok=True)
    report = GenerateReport()
    with (manifest_dir / "faults.jsonl").open("w") as faults_out, ThreadPoolExecutor(1) as finisher:
        finish = _MonthFinisher(root, opts, report, faults_out)
        for _ in range(BURN_IN_MONTHS):
            sim.step(emit=False)
        # month i is finished (formatted and written) on another thread while month i+1 is simulated;
        # at most one month waits, so memory stays bounded
        pending: Future[None] | None = None
        for i, month in enumerate(months):
            out = sim.step()
            if pending is not None:
                pending.result()
            pending = finisher.submit(finish.finish, month, out, i == len(months) - 1)
        if pending is not None:
            pending.result()
        finish.pool.shutdown()
    report.seconds = time.perf_counter() - t0
    finish.summary["churn"] = report.churn
    (manifest_dir / "manifest.json").write_text(json.dumps(finish.summary, indent=1, default=str))
    return report


class SampleOperator:
    """The simulated operator one month at a time, with its campaign system in the loop.

    ``deliver(month)`` simulates and writes the month's landing folders; then ``respond(month, offers)``
    carries out the pipeline's offer list for that month (contacts, acceptances and their true effect on
    churn, outcomes in the next month's ``campaign_outcomes``), or, when no list came, runs the operator's
    own campaign. ``close()`` writes the manifest, with the truth of every campaign under
    ``campaign_truth``. Same seed and same offer lists: same files.
    """

    def __init__(self, landing_root: str | Path, opts: GenerateOptions, first_month: str) -> None:
        self.t0 = time.perf_counter()
        self.root = Path(landing_root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.opts = opts
        self.sim = OperatorSimulation(
            opts.subscribers, opts.seed, add_months(first_month, -BURN_IN_MONTHS), opts.events_per_subscriber
        )
        for _ in range(BURN_IN_MONTHS):
            self.sim.step(emit=False)
        manifest_dir = self.root / MANIFEST_DIR
        manifest_dir.mkdir(exist_ok=True)
        self.report = GenerateReport()
        self._faults = (manifest_dir / "faults.jsonl").open("w")
        self.finisher = _MonthFinisher(self.root, opts, self.report, self._faults)
        self.truth: list[dict[str, Any]] = []

    def deliver(self, month: str) -> None:
        """Simulate ``month`` and write its landing folders (the operator's campaign waits for respond)."""
        if self.sim.month != month:
            raise ValueError(f"the next month to deliver is {self.sim.month}, not {month}")
        self.finisher.finish(month, self.sim.step(campaign=False), False)

    def respond(self, month: str, offers: Any | None, *, gap_months: int = 1, window_months: int = 1) -> None:
        """Act on ``month``'s offer list: a frame with ``subscriber_id`` (contract text), ``status``
        (``assigned`` or ``holdout``), ``intended_offer_id`` and ``channel``; None or empty: own campaign."""
        if offers is None or len(offers) == 0:
            self.sim.own_campaign(month)
            return
        ids = offers["subscriber_id"].astype(str).str.slice(1).astype(np.int64).to_numpy()
        rows = self.sim.act_on(
            month,
            ids,
            offers["intended_offer_id"].to_numpy(dtype=object),
            (offers["status"] == "assigned").to_numpy(),
            offers["channel"].to_numpy(dtype=object),
            gap_months=gap_months,
            window_months=window_months,
        )
        self.truth.extend(rows)
        log.info(
            "campaign system %s: %d lines treated, %d held out; true effect on the churn rate %.4f",
            month,
            rows[0]["treated"],
            rows[0]["holdout"],
            rows[0]["true_effect"] or 0.0,
        )

    def close(self) -> GenerateReport:
        self.finisher.pool.shutdown()
        self._faults.close()
        self.report.seconds = time.perf_counter() - self.t0
        summary = self.finisher.summary
        summary["churn"] = self.report.churn
        summary["campaign_truth"] = self.truth
        summary["offer_truth"] = {k: vars(v) for k, v in CATALOGUE_TRUTH.items()}
        (self.root / MANIFEST_DIR / "manifest.json").write_text(json.dumps(summary, indent=1, default=str))
        return self.report


def read_faults(landing_root: str | Path) -> list[dict[str, Any]]:
    path = Path(landing_root) / MANIFEST_DIR / "faults.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_manifest(landing_root: str | Path) -> dict[str, Any]:
    return json.loads((Path(landing_root) / MANIFEST_DIR / "manifest.json").read_text())
