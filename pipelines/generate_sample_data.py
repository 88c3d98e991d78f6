"""Stage: write sample landing extracts (all five sources) for a range of months."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pipelines.core.config import Config
from pipelines.sample_data.drivers import DriverStrengths
from pipelines.sample_data.writer import GenerateOptions, GenerateReport, generate

log = logging.getLogger(__name__)


def sample_options(cfg: Config, months: Sequence[str], **overrides: object) -> GenerateOptions:
    """The generator's options from ``sample_data.*``; keyword arguments that are not None win."""
    sd = cfg.sample_data
    base = {
        "subscribers": sd.subscribers,
        "seed": sd.seed,
        "bad_rows": sd.bad_rows,
        "file_faults": sd.file_faults,
        "fmt": sd.format,
        "gzip_share": sd.gzip_share,
        "files_per_month": sd.files_per_month,
        "events_per_subscriber": sd.cdr_events_per_subscriber,
        "drivers": DriverStrengths(**sd.drivers.model_dump()),
    }
    base.update({k: v for k, v in overrides.items() if v is not None})
    return GenerateOptions(months=tuple(months), **base)  # type: ignore[arg-type]


def options_from_args(cfg: Config, args: Any) -> GenerateOptions:
    """The options of a job's parsed :func:`pipelines.core.runner.sample_data_arguments`."""
    return sample_options(
        cfg,
        args.months,
        subscribers=args.subscribers,
        seed=args.seed,
        bad_rows=args.bad_rows,
        file_faults=getattr(args, "file_faults", None),
        fmt=args.format,
    )


def generate_sample_data(cfg: Config, opts: GenerateOptions) -> GenerateReport:
    """Generate ``opts.months`` of landing data under ``landing.root``."""
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
