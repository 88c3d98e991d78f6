"""Job: all stages of a month in order (or of several months: --months 2024-01..2024-06).

python jobs/monthly.py --month 2024-06 [--force] [--allow-incomplete] [--override-gates]

A stage whose last run for the month succeeded on the same inputs (landing files, input table versions,
champion, config hash, code version) is skipped unless --force. Exit status: 0 success, 2 bad config,
3 a damaged, missing or read-only table before any stage (a corrupt pipeline_runs), 10 ingest,
11 build_features, 12 train, 13 score, 14 evaluate, 15 match_offers, 16 uplift, 17 housekeeping failed
(1: other); 75 another run holds the month (or a table and month a stage writes), 143 stopped by SIGTERM.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.core.runner import job_parser, month_range, month_type, run_job


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__, month=False)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--month", type=month_type, help="month to process, YYYY-MM")
    group.add_argument("--months", type=month_range, help="YYYY-MM..YYYY-MM, processed in order")
    parser.add_argument("--force", action="store_true", help="rerun stages whose inputs did not change")
    parser.add_argument("--allow-incomplete", action="store_true")
    parser.add_argument("--override-gates", action="store_true")

    def body(args, cfg):
        from pipelines.core.spark import get_spark
        from pipelines.monthly import run_monthly

        months = args.months or [args.month]
        run_monthly(
            get_spark(cfg),
            cfg,
            months,
            force=args.force,
            allow_incomplete=args.allow_incomplete,
            override_gates=args.override_gates,
        )

    return run_job("monthly", parser, body, argv)


if __name__ == "__main__":
    sys.exit(main())
