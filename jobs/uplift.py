"""Job: fit the offers' uplift model on the matured experiment and decide whether matching targets by it.

python jobs/uplift.py --month 2024-08 [--conf ...] [--set k=v ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.core.runner import job_parser, run_job


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)

    def body(args, cfg):
        from pipelines.core.spark import get_spark
        from pipelines.uplift import uplift_month

        r = uplift_month(get_spark(cfg), cfg, args.month)
        months = f"fitted {','.join(r.fit_months) or '-'}, held out {','.join(r.holdout_months) or '-'}"
        print(f"uplift {r.month}: {r.status} ({months})")
        for line in r.decision:
            print(f"  {line}")
        if r.version:
            print(f"  {cfg.uplift.registered_model} version {r.version} is champion: matching targets by it")

    return run_job("uplift", parser, body, argv)


if __name__ == "__main__":
    sys.exit(main())
