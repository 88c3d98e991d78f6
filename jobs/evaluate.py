"""Job: measure the warning lists and offers of every score month whose labels matured by the run month.

python jobs/evaluate.py --month 2024-08 [--conf ...] [--set k=v ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.core.runner import job_parser, run_job


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)

    def body(args, cfg):
        from pipelines.core.lease import hold_stage
        from pipelines.core.spark import get_spark
        from pipelines.evaluate import evaluate_month

        with hold_stage(cfg, "evaluate", args.month):
            r = evaluate_month(get_spark(cfg), cfg, args.month)
        if not r.score_months:
            print(f"evaluate {r.month}: no score month has matured labels yet")
            return
        print(f"evaluate {r.month}: score months {', '.join(r.score_months)}")
        for m, auc in r.realised.items():
            print(f"  realised AUC {m}: {auc:.4f}")
        for offer, effect in sorted(r.effects.items()):
            print(f"  offer {offer}: effect used from now on {effect:.3f}")

    return run_job("evaluate", parser, body, argv)


if __name__ == "__main__":
    sys.exit(main())
