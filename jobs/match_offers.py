"""Job: match retention offers to the month's warning list under budget, capacities and contact policy.

python jobs/match_offers.py --month 2024-06 [--conf ...] [--set k=v ...]
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
        from pipelines.match_offers import match_offers_month

        with hold_stage(cfg, "match_offers", args.month):
            r = match_offers_month(get_spark(cfg), cfg, args.month)
        versus = (
            f"greedy {r.greedy_value:.1f}"
            if r.greedy_value is not None
            else f"bound {r.bound:.1f}, gap at most {r.bound - r.optimised_value:.1f}"
        )
        print(
            f"offer_assignments {r.month}: {r.method} solve over {r.candidates} candidates, net value "
            f"{r.optimised_value:.1f} ({versus})"
        )
        print(
            f"  {r.assigned} assigned (value {r.total_value:.1f}, spend {r.spend:.1f} of {r.budget:.1f}), "
            f"{r.holdout} held out"
        )
        print("  " + ", ".join(f"{k} {v}" for k, v in r.by_status.items()))
        print(f"  offers valued by {r.targeting}")

    return run_job("match_offers", parser, body, argv)


if __name__ == "__main__":
    sys.exit(main())
