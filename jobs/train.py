"""Job: train the LightGBM cohort family as of a run month; MLflow tracking, registry and promotion gates.

python jobs/train.py --month 2024-06 [--promote | --no-promote] [--reason TEXT] [--conf ...] [--set k=v ...]
    (--reason is required with --promote or --no-promote)
python jobs/train.py --backtest 2024-05..2024-10 [--markdown FILE]   # rolling origin, model_performance
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.core.runner import job_parser, month_range, month_type, run_job


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__, month=False)
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--month", type=month_type, help="run month YYYY-MM (the month whose data just landed)")
    when.add_argument("--backtest", type=month_range, metavar="FROM..TO", help="train as of each run month")
    promote = parser.add_mutually_exclusive_group()
    promote.add_argument(
        "--promote", dest="promote", action="store_true", default=None, help="champion anyway"
    )
    promote.add_argument("--no-promote", dest="promote", action="store_false", help="never move champion")
    parser.add_argument("--reason", default="", help="why the promotion gates are overridden (logged)")
    parser.add_argument("--markdown", type=Path, help="--backtest: also write the docs' table to this file")
    parser.add_argument(
        "--figure", type=Path, help="--backtest: also draw lift and calibration per cohort (PNG)"
    )

    def body(args, cfg):
        from pipelines.core.lease import hold_stage
        from pipelines.core.spark import get_spark
        from pipelines.train import (
            backtest,
            backtest_figure,
            backtest_markdown,
            summarize_backtest,
            train_month,
        )

        spark = get_spark(cfg)
        if args.backtest:
            results = backtest(spark, cfg, args.backtest)
            print(summarize_backtest(results).to_string(index=False))
            if args.markdown:
                args.markdown.write_text(backtest_markdown(results, cfg.cohorts.names))
            if args.figure:
                backtest_figure(results, cfg.cohorts.names).savefig(args.figure, dpi=90)
            return
        if args.promote is not None and not args.reason:
            parser.error("--promote / --no-promote need --reason")
        with hold_stage(cfg, "train", args.month):
            result = train_month(spark, cfg, args.month, promote=args.promote, reason=args.reason)
        state = f"champion (refitted as version {result.served_version})" if result.promoted else "challenger"
        print(
            f"{cfg.train.registered_model} version {result.version} is {state}: {'; '.join(result.decision)}"
        )

    return run_job("train", parser, body, argv)


if __name__ == "__main__":
    sys.exit(main())
