"""The daily triggers measured on the sample data: precision and lead time by trigger and value tier.

Generates eight months (2024-01..08), runs the monthly stages needed for a warning list of 2024-05
(ingest, features, training, scoring), splits June into daily deliveries, runs the daily warnings on every
``--every``-th day of June and evaluates them against the deactivations the snapshots show up to August.
Writes ``daily-eval-<date>-<time>.json`` under ``--out``.

python -m bench.daily_eval --subscribers 3000 --every 3 --out bench/results/
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from pipelines.build_features import build_features_month
from pipelines.core.config import load_config
from pipelines.core.spark import get_spark
from pipelines.daily import daily_warnings_day, evaluate_daily
from pipelines.ingest import ingest_month
from pipelines.sample_data.daily import write_daily_deliveries
from pipelines.sample_data.writer import GenerateOptions, generate
from pipelines.score import score_month
from pipelines.train import train_month

MONTHS = tuple(f"2024-{m:02d}" for m in range(1, 9))
SCORED = "2024-05"
DAILY_MONTH = "2024-06"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--every", type=int, default=3, help="run every N-th day of June")
    parser.add_argument("--work", type=Path, default=Path("bench/cache/daily_eval"))
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    landing, root = args.work / "landing", args.work / "lake"
    cfg = load_config(
        [Path("conf/test.yml")], [f"lake.root={root}", f"landing.root={landing}", "lake.lease.enabled=false"]
    )
    t0 = time.perf_counter()
    if not (landing / "subscriptions" / f"month={MONTHS[-1]}").exists():
        generate(landing, GenerateOptions(months=MONTHS, subscribers=args.subscribers, seed=args.seed))
        write_daily_deliveries(landing, [DAILY_MONTH])
    spark = get_spark(cfg)
    if not (root / "warning_list").exists():
        for month in MONTHS:
            ingest_month(spark, cfg, month)
        for month in MONTHS[:5]:
            build_features_month(spark, cfg, month)
        train_month(spark, cfg, SCORED)
        score_month(spark, cfg, SCORED)
    start = dt.date.fromisoformat(f"{DAILY_MONTH}-01")
    days = [(start + dt.timedelta(days=i)).isoformat() for i in range(0, 30, args.every)]
    seconds = []
    for day in days:
        t = time.perf_counter()
        daily_warnings_day(spark, cfg, day)
        seconds.append(time.perf_counter() - t)
    rows = evaluate_daily(spark, cfg, days)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"daily-eval-{dt.datetime.now():%Y%m%d-%H%M}.json"
    path.write_text(
        json.dumps(
            {
                "subscribers": args.subscribers,
                "seed": args.seed,
                "score_month": SCORED,
                "days": days,
                "horizon_days": cfg.daily.horizon_days,
                "seconds_per_day": seconds,
                "total_seconds": time.perf_counter() - t0,
                "rows": rows,
            },
            indent=1,
            default=str,
        )
    )
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
