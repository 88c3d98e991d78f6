"""Job: score every subscriber of the run month; writes warning_list, customer_risk and score_monitoring.

python jobs/score.py --month 2024-06 [--model-version N] [--conf ...] [--set k=v ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.core.runner import job_parser, run_job


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument(
        "--model-version",
        help="registered version to score with (default: the champion trained by the month)",
    )

    def body(args, cfg):
        from pipelines.core.lease import hold_stage
        from pipelines.core.spark import get_spark
        from pipelines.score import score_month

        with hold_stage(cfg, "score", args.month):
            report = score_month(get_spark(cfg), cfg, args.month, model_version=args.model_version)
        bands = ", ".join(f"{k} {v}" for k, v in report.bands.items())
        print(
            f"warning_list {report.month}: {report.subscribers} subscribers ({bands}), "
            f"{report.with_reasons} with reasons, {report.hard_warnings} hard warnings; "
            f"{report.model} version {report.version}"
        )
        for warning in report.drift_warnings:
            print(f"DRIFT WARNING: {warning}")

    return run_job("score", parser, body, argv)


if __name__ == "__main__":
    sys.exit(main())
