"""A simulated month finished into landing files: late and duplicated CDRs, planted faults, the writes.

Months are finished strictly in order (one at a time) with the writer's own random stream, so the
output is deterministic for a seed while the next month is simulated beside it.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from features.calendar import add_months, month_start
from pipelines.sample_data.faults import file_faults, inject_faults
from pipelines.sample_data.files import write_source_month
from pipelines.sample_data.formatting import format_month, format_source
from pipelines.sample_data.options import GenerateOptions, GenerateReport
from pipelines.sample_data.simulate import MonthOutput

log = logging.getLogger(__name__)

LATE_DAYS = 7  # late records are among the events of a month's last days ...
LATE_SHARE = 0.04  # ... delivered in the next month's folder
DUPLICATE_SHARE = 0.003
# duplicates of the last days that come again in the next month's folder (the others: in the same one)
DUPLICATE_NEXT_SHARE = 0.6


class MonthFinisher:
    """Formats a simulated month, splits late and duplicated CDRs, injects faults and writes the files."""

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
        """Write ``month``'s landing folders (``is_last``: no next folder takes late records)."""
        self.report.churn.append({"month": month, **out.stats})
        month_cdr, cdr_info, cdr_eligible = self._cdr(month, out, is_last)
        tables = format_month(out)
        tables = {"subscriptions": tables.pop("subscriptions"), "cdr": month_cdr, **tables}
        eligible = {"cdr": cdr_eligible, **self._eligible(out, tables)}
        writes: list[Future[list[dict[str, Any]]]] = []
        for source, table in tables.items():
            fault_rows, reasons = np.array([], dtype=np.int64), []
            if self.opts.bad_rows > 0:
                table, fault_rows, reasons = inject_faults(
                    table, source, month, self.opts.bad_rows, eligible[source], self.rng, self.opts.fmt
                )
            seed = int(self.rng.integers(0, 2**31))
            writes.append(
                self.pool.submit(
                    write_source_month,
                    self.root,
                    source,
                    month,
                    table,
                    fault_rows,
                    reasons,
                    self.opts,
                    np.random.default_rng(seed),
                )
            )
            self.summary["source_months"][f"{source}/{month}"] = {
                "rows": table.num_rows,
                "faults": int(fault_rows.size),
                **(cdr_info if source == "cdr" else {}),
            }
            self.report.rows[source] = self.report.rows.get(source, 0) + table.num_rows
        self.report.cdr_rows += month_cdr.num_rows
        for future in writes:  # faults recorded in submission order (deterministic)
            for record in future.result():
                self.faults_out.write(json.dumps(record) + "\n")
        if self.opts.file_faults and is_last:
            self.summary["file_faults"] = file_faults(self.root, month, tables)
        log.info(
            "generated %s: %d subscribers, %d CDRs (churn prepaid %.3f, postpaid %.3f)",
            month,
            tables["subscriptions"].num_rows,
            month_cdr.num_rows,
            out.stats["churn_prepaid"],
            out.stats["churn_postpaid"],
        )

    def _cdr(
        self, month: str, out: MonthOutput, is_last: bool
    ) -> tuple[pa.Table, dict[str, int], np.ndarray]:
        """This folder's CDRs: last month's late records, this month's on-time ones, and repeats of some.

        Late and duplicated records of the last days go to the next month's folder instead. Returns the
        table, its manifest counts, and the rows that may take a fault (neither carried in, nor
        duplicated, nor to be duplicated).
        """
        rng = self.rng
        n = out.cdr["event_ts"].size
        last_days = out.cdr["event_ts"] >= (
            np.datetime64(month_start(add_months(month, 1))) - np.timedelta64(LATE_DAYS, "D")
        ).astype("datetime64[s]").astype(np.int64)
        late = last_days & (rng.random(n) < LATE_SHARE) & (not is_last)
        dup = ~late & (rng.random(n) < DUPLICATE_SHARE)
        # a record redelivered in the next folder is a late one (older records would be too old there)
        dup_next = dup & last_days & (rng.random(n) < DUPLICATE_NEXT_SHARE) & (not is_last)
        dup_same = dup & ~dup_next
        # the rows are picked before formatting, so the text is built once
        dup_rows = np.flatnonzero(dup_same)
        now = format_source("cdr", out.cdr, np.concatenate([np.flatnonzero(~late), dup_rows]))
        month_cdr = pa.concat_tables([self.carry, now]) if self.carry is not None else now
        n_carried = self.carry.num_rows if self.carry is not None else 0
        info = {
            "late_in": self.carry_late,
            "duplicates_from_previous": self.carry_dup,
            "duplicates_same_month": int(dup_same.sum()),
        }
        self.carry = format_source("cdr", out.cdr, np.flatnonzero(late | dup_next))
        self.carry_late, self.carry_dup = int(late.sum()), int(dup_next.sum())
        eligible = np.concatenate([np.zeros(n_carried, bool), ~(dup[~late]), np.zeros(dup_rows.size, bool)])
        return month_cdr, info, eligible

    def _eligible(self, out: MonthOutput, tables: dict[str, pa.Table]) -> dict[str, np.ndarray]:
        """The rows of the other sources that may take a fault."""
        # a quarantined snapshot row must not orphan the subscriber: only those seen the month before
        sub_ids = out.subscriptions["subscriber_id"]
        eligible = {
            "subscriptions": (
                np.isin(sub_ids, self.prev_ids) & (out.subscriptions["status"] == "active")
                if self.prev_ids is not None
                else np.zeros(sub_ids.size, bool)
            )
        }
        self.prev_ids = sub_ids
        for source in ("billing", "care", "campaign_outcomes"):
            if source in tables:
                eligible[source] = np.ones(tables[source].num_rows, bool)
        return eligible
