"""Faults planted in the landing files: bad rows (by source, with the reason ingest must give) and bad files.

Each fault is a value of the contract's kind that ingest must quarantine with a named reason; the
reasons come from :mod:`features.contract`, so the generator and ingest agree on them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from features import contract as C
from features.calendar import add_months, month_start


class Fault(NamedTuple):
    """A bad value planted in ``column``: its text (None: null) and the reason ingest must give."""

    column: str
    value: str | None
    reason: str
    in_parquet: bool  # representable in a typed Parquet column (an unparseable text is not)


def _fault_catalog(source: str, month: str) -> list[Fault]:
    """The faults a row of ``source`` in ``month`` may take."""
    nxt2 = month_start(add_months(month, 2)).isoformat() + " 10:00:00"
    old = (np.datetime64(month_start(month)) - np.timedelta64(20, "D")).astype(str) + " 10:00:00"
    other_month = add_months(month, -5)
    return {
        "cdr": [
            Fault("event_ts", None, f"{C.MISSING_REQUIRED}:event_ts", True),
            Fault("event_ts", "2024-13-45 25:61:00", f"{C.UNPARSEABLE}:event_ts", False),
            Fault("event_type", "video", f"{C.INVALID_VALUE}:event_type", True),
            Fault("duration_s", "-5", f"{C.INVALID_VALUE}:duration_s", True),
            Fault("volume_kb", "12kb", f"{C.UNPARSEABLE}:volume_kb", False),
            Fault("event_ts", nxt2, C.FUTURE_EVENT, True),
            Fault("event_ts", old, C.TOO_OLD_EVENT, True),
            Fault("msisdn", "39990000001", C.UNKNOWN_MSISDN, True),
            Fault("roaming", "maybe", f"{C.UNPARSEABLE}:roaming", False),
        ],
        "subscriptions": [
            Fault("segment", "retail", f"{C.INVALID_VALUE}:segment", True),
            Fault("activation_date", "31/01/2020", f"{C.UNPARSEABLE}:activation_date", False),
            Fault("plan_id", None, f"{C.MISSING_REQUIRED}:plan_id", True),
        ],
        "billing": [
            Fault("bill_month", other_month, C.MONTH_MISMATCH, True),
            Fault("invoice_amount", "12,50", f"{C.UNPARSEABLE}:invoice_amount", False),
            Fault("overdue_days", "-3", f"{C.INVALID_VALUE}:overdue_days", True),
        ],
        "care": [
            Fault("category", "spam", f"{C.INVALID_VALUE}:category", True),
            Fault("contact_ts", None, f"{C.MISSING_REQUIRED}:contact_ts", True),
            Fault("resolved", "perhaps", f"{C.UNPARSEABLE}:resolved", False),
        ],
        "campaign_outcomes": [
            Fault("contacted", "yes?", f"{C.UNPARSEABLE}:contacted", False),
            Fault("subscriber_id", None, f"{C.MISSING_REQUIRED}:subscriber_id", True),
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
    catalog = [f for f in _fault_catalog(source, month) if fmt == "csv" or f.in_parquet]
    which = rng.integers(0, len(catalog), rows.size)
    for i, fault in enumerate(catalog):
        chosen = rows[which == i]
        if chosen.size == 0:
            continue
        mask = np.zeros(table.num_rows, dtype=bool)
        mask[chosen] = True
        col = table.column(fault.column).combine_chunks()
        new = pc.if_else(pa.array(mask), pa.scalar(fault.value, pa.string()), col)
        table = table.set_column(table.schema.get_field_index(fault.column), fault.column, new)
    reasons = [catalog[w].reason for w in which]
    return table, rows, reasons


def file_faults(root: Path, month: str, tables: dict[str, pa.Table]) -> list[dict[str, Any]]:
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
