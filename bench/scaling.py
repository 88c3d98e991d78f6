"""``make bench-scaling``: the monthly run over six generated months at growing sizes, each stage's seconds
against size, and a plot of them (``scaling.png`` beside the JSON)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

from bench.harness import Machine, RunContext, cached_landing, timed
from bench.record import OPTIONAL, Record
from features.calendar import months_between

SIZES = (25_000, 50_000, 100_000, 200_000)
STEADY = ("2024-04", "2024-05", "2024-06")  # months whose ingest and features read a full history
WITH_TRAINING, WITHOUT_TRAINING = "2024-05", "2024-06"  # training becomes due in the fifth month
LABELS = {
    "ingest": "ingest (month)",
    "build_features": "feature build",
    "train": "train job",
    "score": "score job",
    "evaluate": "evaluate",
    "match_offers": "match_offers",
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScalingRun(Record):
    """The monthly run at one size: its seconds, peak memory and each stage's seconds per month."""

    subscribers: int
    seconds: float
    peak_mb: int
    stages: dict[str, dict[str, float]]

    def stage_seconds(self, stage: str) -> float:
        """A stage's typical seconds: the mean over the steady months where it ran."""
        values = [self.stages[m][stage] for m in STEADY if stage in self.stages.get(m, {})]
        return round(sum(values) / len(values), 2)

    def month_seconds(self, month: str) -> float:
        return round(sum(self.stages[month].values()), 2)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScalingResult(Record):
    """Each stage's seconds per size (``seconds``), their growth from the smallest to the largest size
    against the size's growth (``growth_vs_linear``, 1.0: linear; below 1: a fixed cost per run that the
    larger sizes spread), the sizes taken from an earlier file (``reused``) and every run."""

    machine: Machine
    sizes: list[int]
    seconds: dict[str, list[float]]
    growth_vs_linear: dict[str, float]
    reused: dict[str, str] | None = dataclasses.field(default=None, metadata=OPTIONAL)
    runs: dict[int, ScalingRun]

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "runs": {str(n): r.to_dict() for n, r in self.runs.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        return cls(
            **{
                **data,
                "machine": Machine.from_dict(data["machine"]),
                "runs": {int(n): ScalingRun.from_dict(r) for n, r in data["runs"].items()},
            }
        )


def scaling_run(spark: Any, work: Path, subscribers: int, months: int = 6) -> ScalingRun:
    """The monthly run over ``months`` generated months at one size (training becomes due in the fifth,
    the first whose churn windows of three months have closed) and each stage's seconds per month."""
    from pipelines.monthly import run_monthly

    cfg = RunContext(spark, work, cached_landing(subscribers, months), subscribers, months).config()
    run = timed(lambda: run_monthly(spark, cfg, months_between("2024-01", f"2024-{months:02d}")))
    per_month: dict[str, dict[str, float]] = {}
    for o in run.value:
        if o.status == "ran":
            per_month.setdefault(o.month, {})[o.stage] = round(o.seconds, 2)
    return ScalingRun(
        subscribers=subscribers, seconds=round(run.seconds, 2), peak_mb=run.peak_mb, stages=per_month
    )


def scaling(
    spark: Any,
    sizes: Sequence[int] = SIZES,
    months: int = 6,
    reuse: Path | None = None,
    *,
    machine: Machine,
    plot: Path,
) -> ScalingResult:
    """Each stage at growing sizes, and a plot of time against size written to ``plot``.

    ``reuse``: an earlier scaling run's JSON whose other sizes join the plot (a large size is slow to run:
    after a change that only touches the largest, rerun that one); the output says which they are.
    """
    earlier = ScalingResult.from_dict(json.loads(reuse.read_text())).runs if reuse else {}
    runs = {n: r for n, r in earlier.items() if n not in sizes}
    reused = {str(n): str(reuse) for n in runs}
    for n in sizes:
        print(f"scaling {n:,} subscribers: {months} months ...", flush=True)
        work = Path(tempfile.mkdtemp(prefix=f"churn-scaling-{n}-"))
        try:
            runs[n] = scaling_run(spark, work, n, months)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(json.dumps(runs[n].stages), flush=True)
    ordered = sorted(runs)
    seconds = {label: [runs[n].stage_seconds(stage) for n in ordered] for stage, label in LABELS.items()}
    # one whole month with training due and one without
    seconds["month with training"] = [runs[n].month_seconds(WITH_TRAINING) for n in ordered]
    seconds["month without"] = [runs[n].month_seconds(WITHOUT_TRAINING) for n in ordered]
    plot_seconds(ordered, seconds, plot)
    growth = {k: round((v[-1] / v[0]) / (ordered[-1] / ordered[0]), 2) for k, v in seconds.items()}
    return ScalingResult(
        machine=machine,
        sizes=ordered,
        seconds=seconds,
        growth_vs_linear=growth,
        reused=reused,
        runs=runs,
    )


def plot_seconds(sizes: list[int], seconds: dict[str, list[float]], path: Path) -> None:
    """Whole months on the left, each stage on the right, each with a line linear through the largest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, ys in seconds.items():
        ax = axes[0] if name.startswith("month") else axes[1]
        ax.plot(sizes, ys, marker="o", label=name)
    for ax, ref in ((axes[0], seconds["month with training"]), (axes[1], seconds["ingest (month)"])):
        ax.plot(sizes, [ref[-1] * n / sizes[-1] for n in sizes], "k:", label="linear through the largest")
        ax.set(xlabel="subscribers", ylabel="seconds")
        ax.legend(fontsize=8)
    axes[0].set_title("One monthly run against base size (2 cores)")
    axes[1].set_title("Each stage")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def write_scaling(result: ScalingResult, folder: Path, stamp: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"scaling-{stamp}.json"
    path.write_text(json.dumps(result.to_dict(), indent=2))
    return path
