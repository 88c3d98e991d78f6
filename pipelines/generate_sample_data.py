"""Stage: write sample landing extracts (all five sources) for a range of months."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pipelines.core.config import Config
from pipelines.sample_data.writer import GenerateOptions, GenerateReport, generate

log = logging.getLogger(__name__)


def generate_sample_data(
    cfg: Config,
    months: Sequence[str],
    *,
    subscribers: int | None = None,
    seed: int | None = None,
    bad_rows: float | None = None,
    file_faults: bool | None = None,
    fmt: str | None = None,
) -> GenerateReport:
    """Generate ``months`` of landing data under ``landing.root``; arguments override ``sample_data.*``."""
    sd = cfg.sample_data
    opts = GenerateOptions(
        months=tuple(months),
        subscribers=subscribers if subscribers is not None else sd.subscribers,
        seed=seed if seed is not None else sd.seed,
        bad_rows=bad_rows if bad_rows is not None else sd.bad_rows,
        file_faults=file_faults if file_faults is not None else sd.file_faults,
        fmt=fmt or sd.format,
        gzip_share=sd.gzip_share,
        files_per_month=sd.files_per_month,
        events_per_subscriber=sd.cdr_events_per_subscriber,
    )
    report = generate(cfg.landing_root, opts)
    log.info(
        "wrote %d months to %s: %d CDR rows in %.1fs (%.0f rows/s)",
        len(opts.months),
        cfg.landing_root,
        report.cdr_rows,
        report.seconds,
        report.cdr_rows / max(report.seconds, 1e-9),
    )
    return report
