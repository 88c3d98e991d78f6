"""A source-month of landing text written as files: split into parts, formats mixed, columns shuffled."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from isal import igzip

from features import contract as C
from pipelines.sample_data.formatting import PARALLEL_WRITE_ROWS, typed
from pipelines.sample_data.options import GenerateOptions

# --format mixed: the parts of a month cycle through these (format, gzip, Parquet style)
MIXED_PARTS = (
    ("csv", False, ""),
    ("parquet", False, "arrow"),
    ("csv", True, ""),
    ("parquet", False, "pandas"),
)


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
