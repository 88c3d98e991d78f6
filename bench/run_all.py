"""Benchmarks (``make bench [SIZE=S|M|L]``): every stage against a reference doing the same work on the
same files in the same run, printed as one table and saved as JSON.

Sizes: ``S`` 10,000 subscribers x 6 months, ``M`` 100,000 x 12, ``L`` 400,000 x 12. The generated landing
data is cached per size under ``bench/cache/``. ``make bench-scaling`` runs the monthly pipeline over six
months at growing sizes and plots each stage's time against size (``bench/scaling.py``).

The stages, in the order they run (each on the lake the earlier left), are the modules of
``bench/stages/``: the Delta layer, the sample-data generator, ingest, features, training, scoring,
offers, and the whole monthly run of the size's last month. ``bench/harness.py`` times them (peak memory
is the process tree's: this driver, its JVM, the Python workers) and ``bench/report.py`` writes the
result and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.harness import Machine, RunContext, cached_landing
from bench.report import RESULTS, BenchResult, render_table, write_result
from bench.scaling import SIZES as SCALING_SIZES
from bench.scaling import scaling, write_scaling
from bench.stages import delta_layer, features, generator, ingest, monthly, offers, score, train
from pipelines.core.config import load_config
from pipelines.core.runner import configure_logging
from pipelines.core.spark import get_spark

SIZES = {"S": (10_000, 6), "M": (100_000, 12), "L": (400_000, 12)}
# the pipeline's stages in the order they build the lake (the Delta layer and generator stand apart)
PIPELINE = (
    ("ingest", ingest.run),
    ("features", features.run),
    ("train", train.run),
    ("score", score.run),
    ("offers", offers.run),
    ("monthly", monthly.run),
)


def run_size(
    spark: Any,
    work: Path,
    size: str,
    *,
    extras: bool = True,
    stage: str | None = None,
    months: int | None = None,
) -> BenchResult:
    """Every stage at one size (``extras``: also the Delta layer and the generator), or only ``stage``
    (the stages before it are not run: ``ingest`` needs none) over the size's first ``months``."""
    machine = Machine.current()
    subscribers, all_months = SIZES[size]
    months = months or all_months
    ctx = RunContext(spark, work, cached_landing(subscribers, months), subscribers, months)
    stages: dict[str, Any] = {}
    if extras and stage is None:
        stages["delta_layer"] = delta_layer.run(ctx)
        stages["generator"] = generator.run(ctx)
    for name, run in PIPELINE:
        if stage is not None and name != stage:
            continue
        print(f"bench {subscribers:,}: {name} ...", flush=True)
        stages[name] = run(ctx)
    result = BenchResult(size=size, machine=machine, subscribers=subscribers, months=months, **stages)
    return result.with_table()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default=os.environ.get("SIZE", "M"))
    parser.add_argument(
        "--stage", choices=[name for name, _ in PIPELINE], help="only this stage (ingest needs no other)"
    )
    parser.add_argument("--months", type=int, help="the size's first MONTHS only (with --stage)")
    parser.add_argument("--scaling", action="store_true", help="the scaling run (25k..200k) and its plot")
    parser.add_argument(
        "--sizes",
        default=",".join(str(n) for n in SCALING_SIZES),
        help="the scaling runs' subscribers, comma-separated",
    )
    parser.add_argument("--reuse", type=Path, help="an earlier scaling JSON: its other sizes join the plot")
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS,
        help=f"the folder of the JSON results and plot (default {RESULTS})",
    )
    args = parser.parse_args(argv)
    configure_logging()
    cfg = load_config([Path(__file__).resolve().parent.parent / "conf" / "local.yml"])
    spark = get_spark(cfg)
    stamp = time.strftime("%Y%m%d-%H%M")
    if args.scaling:
        sizes = tuple(int(n) for n in args.sizes.split(","))
        machine = Machine.current()
        out = scaling(spark, sizes, reuse=args.reuse, machine=machine, plot=args.out / "scaling.png")
        write_scaling(out, args.out, stamp)
        summary = {"sizes": out.sizes, "seconds": out.seconds, "growth_vs_linear": out.growth_vs_linear}
        print(json.dumps(summary, indent=2))
        print(f"plot: {args.out / 'scaling.png'}")
        return 0
    work = Path(tempfile.mkdtemp(prefix="churn-bench-"))
    try:
        result = run_size(spark, work, args.size, stage=args.stage, months=args.months)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = write_result(result, args.out, stamp)
    print()
    print(render_table(result.table))
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
