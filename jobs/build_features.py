"""Job: build features_monthly for a month, and the churn labels known by then (labels_monthly).

python jobs/build_features.py --month 2024-03 [--conf conf/local.yml] [--set key=value ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.core.runner import job_parser, run_job


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)

    def body(args, cfg):
        from pipelines.build_features import build_features_month
        from pipelines.core.lease import hold_stage
        from pipelines.core.spark import get_spark

        with hold_stage(cfg, "build_features", args.month):
            build_features_month(get_spark(cfg), cfg, args.month)

    return run_job("build_features", parser, body, argv)


if __name__ == "__main__":
    sys.exit(main())
