"""The generated landing counted without ingest: Python's ``csv`` and pyarrow over the files themselves.

What a delivery should load follows from the contract's business keys and the generator's fault record
alone: every record not recorded as a fault, once per key, unless an earlier delivery already held it.
"""

from __future__ import annotations

import csv
import gzip
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from features import contract as C

# sources whose records can repeat in a later delivery (late or redelivered CDRs, care contacts)
ACROSS_DELIVERIES = ("cdr", "care")
# the silver column that holds a delivery's month
DELIVERY_COLUMN = {"cdr": "delivery_month", "billing": "bill_month"}


@dataclass(frozen=True)
class DeliveryCount:
    """One source-month's landing folder, counted."""

    files: int
    records: int  # data records in the files (headers excluded)
    faults: Counter  # the generator's fault reasons, by reason
    extra_columns: dict[str, list[str]]  # per file, its columns beyond the contract
    # the records a load should hold, by business key (the last delivered copy; earlier deliveries' out)
    expected: dict[tuple, dict[str, Any]] = field(default_factory=dict)
    good_keys: frozenset = frozenset()  # every key of a record that is not a fault

    def daily_counts(self, column: str) -> dict[str, int]:
        return dict(Counter(str(r[column])[:10] for r in self.expected.values()))


def _records(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """A file's header and its records (a bad byte becomes U+FFFD: those rows are faults anyway)."""
    if path.name.endswith(".parquet"):
        table = pq.read_table(path)
        return table.column_names, table.to_pylist()
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", errors="replace", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        return header, [dict(zip(header, values, strict=False)) for values in reader]


def count_delivery(
    landing: Path, source: str, month: str, faults: list[dict[str, Any]], earlier: frozenset = frozenset()
) -> DeliveryCount:
    """Count ``source``'s folder for ``month``; ``earlier``: keys already loaded by earlier deliveries."""
    folder = landing / source / f"month={month}"
    mine = [f for f in faults if f["source"] == source and f["month"] == month]
    bad = {(f["file"], f["row"]) for f in mine}
    keys = C.KEYS[source]
    contract = set(C.columns(source))
    files = sorted(p for p in folder.iterdir() if not p.name.startswith(("_", ".")))
    records, extra, good = 0, {}, {}
    # delivery order: the generator writes part-000, part-001, ... in turn, a later copy wins
    for path in files:
        header, rows = _records(path)
        records += len(rows)
        if set(header) - contract:
            extra[path.name] = sorted(set(header) - contract)
        for number, row in enumerate(rows, start=1):
            if (path.name, number) not in bad:
                good[tuple(str(row[k]) for k in keys)] = row
    expected = {k: r for k, r in good.items() if k not in earlier}
    return DeliveryCount(
        len(files), records, Counter(f["reason"] for f in mine), extra, expected, frozenset(good)
    )


def count_months(
    landing: Path, months: list[str], faults: list[dict[str, Any]]
) -> dict[tuple[str, str], DeliveryCount]:
    """Every source of ``months`` (loaded in this order), by (source, month)."""
    out: dict[tuple[str, str], DeliveryCount] = {}
    for source in C.SOURCES:
        earlier: frozenset = frozenset()
        for month in months:
            if not (landing / source / f"month={month}").exists():
                continue
            count = count_delivery(
                landing, source, month, faults, earlier if source in ACROSS_DELIVERIES else frozenset()
            )
            out[(source, month)] = count
            earlier |= count.good_keys
    return out
