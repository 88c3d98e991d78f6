"""Job: tidy the lake now (the monthly run's last stage, whatever its schedule): quarantine raw values past
their retention nulled, small files compacted, old files vacuumed, logs checkpointed and cleaned, job logs
and MLflow pruned.

python jobs/housekeeping.py --month 2024-06 [--conf ...] [--set k=v ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.core.runner import job_parser, run_job


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)

    def body(args, cfg):
        from pipelines.core.lake import Lake
        from pipelines.core.spark import get_spark
        from pipelines.housekeeping import housekeeping_month
        from pipelines.monthly import summary

        report = housekeeping_month(Lake(get_spark(cfg), cfg), args.month, now=None)
        print(f"housekeeping {report.month}: {summary(report)}")

    return run_job("housekeeping", parser, body, argv)


if __name__ == "__main__":
    sys.exit(main())
