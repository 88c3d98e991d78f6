"""Job: generate sample landing extracts with known churn behaviour.

python jobs/generate_sample_data.py --months 2024-01..2024-12 --subscribers 100000 --seed 7 [--bad-rows 0.001]
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

    def body(args, cfg):
        from pipelines.generate_sample_data import generate_sample_data, options_from_args

        generate_sample_data(cfg, options_from_args(cfg, args))

    return run_job("generate_sample_data", parser, body, argv)


if __name__ == "__main__":
    sys.exit(main())
