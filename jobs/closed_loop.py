"""Job: the whole loop on simulated data (the simulated operator delivers each month, the monthly pipeline
runs on it, the operator's campaign system carries out the pipeline's offers). ``make demo`` runs it.

python jobs/closed_loop.py --months 2024-01..2024-12 [--subscribers 3000] [--seed 7] [--format mixed]
    [--bad-rows 0.002] [--fresh]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.core.runner import job_parser, run_job, sample_data_arguments


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__, month=False)
    sample_data_arguments(parser)
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="empty the lake and landing roots first (only folders the demo created and marked)",
    )

    def body(args, cfg):
        from pipelines.closed_loop import reset_demo_roots, run_closed_loop
        from pipelines.core.spark import get_spark
        from pipelines.generate_sample_data import options_from_args

        if args.fresh:
            reset_demo_roots(cfg)
        run_closed_loop(get_spark(cfg), cfg, args.months, options_from_args(cfg, args))

    return run_job("closed_loop", parser, body, argv)


if __name__ == "__main__":
    sys.exit(main())
