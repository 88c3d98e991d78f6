"""Job: the daily warnings of a day (or of each day of a range, in order), or their evaluation.

python jobs/daily_warnings.py --day 2024-06-03 [--allow-incomplete]
python jobs/daily_warnings.py --day 2024-06-01..2024-06-07
python jobs/daily_warnings.py --day 2024-04-01..2024-04-30 --evaluate     (once the labels have matured)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.core.runner import day_range, job_parser, run_job


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__, month=False)
    parser.add_argument("--day", type=day_range, required=True, help="YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD")
    parser.add_argument("--allow-incomplete", action="store_true", help="load day folders without _SUCCESS")
    parser.add_argument("--evaluate", action="store_true", help="measure the triggers of these days instead")

    def body(args, cfg):
        from pipelines.core.spark import get_spark
        from pipelines.daily import daily_warnings_day, evaluate_daily

        spark = get_spark(cfg)
        if args.evaluate:
            evaluate_daily(spark, cfg, args.day)
            return
        for day in args.day:
            daily_warnings_day(spark, cfg, day, allow_incomplete=args.allow_incomplete)

    return run_job("daily_warnings", parser, body, argv)


if __name__ == "__main__":
    sys.exit(main())
