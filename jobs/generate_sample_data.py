"""Job: generate sample landing extracts with known churn behaviour.

python jobs/generate_sample_data.py --months 2024-01..2024-12 --subscribers 100000 --seed 7 [--bad-rows 0.001]
    [--daily | --daily-only]      (daily deliveries of the months too, or of months already in the landing)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.core.runner import job_parser, run_job, sample_data_arguments


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__, month=False)
    sample_data_arguments(parser)
    parser.add_argument("--file-faults", action="store_true", default=None, help="add unreadable files")
    parser.add_argument("--daily", action="store_true", help="also write the months' daily deliveries")
    parser.add_argument("--daily-only", action="store_true", help="only split landed months into days")

    def body(args, cfg):
        from pipelines.generate_sample_data import generate_sample_data, options_from_args
        from pipelines.sample_data.daily import write_daily_deliveries

        if not args.daily_only:
            generate_sample_data(cfg, options_from_args(cfg, args))
        if args.daily or args.daily_only:
            write_daily_deliveries(cfg.landing_root, args.months)

    return run_job("generate_sample_data", parser, body, argv)


if __name__ == "__main__":
    sys.exit(main())
