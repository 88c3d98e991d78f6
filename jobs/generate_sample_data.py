"""Job: generate sample landing extracts with known churn behaviour.

python jobs/generate_sample_data.py --months 2024-01..2024-12 --subscribers 100000 --seed 7 [--bad-rows 0.001]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.core.runner import job_parser, month_range, run_job


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__, month=False)
    parser.add_argument("--months", type=month_range, required=True, help="YYYY-MM..YYYY-MM (inclusive)")
    parser.add_argument("--subscribers", type=int, default=None, help="size of the subscriber base")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--bad-rows", type=float, default=None, help="share of rows to corrupt (quarantine tests)"
    )
    parser.add_argument("--file-faults", action="store_true", default=None, help="add unreadable files")
    parser.add_argument("--format", choices=["csv", "parquet", "mixed"], default=None)

    def body(args, cfg):
        from pipelines.generate_sample_data import generate_sample_data

        generate_sample_data(
            cfg,
            args.months,
            subscribers=args.subscribers,
            seed=args.seed,
            bad_rows=args.bad_rows,
            file_faults=args.file_faults,
            fmt=args.format,
        )

    return run_job("generate_sample_data", parser, body, argv)


if __name__ == "__main__":
    sys.exit(main())
