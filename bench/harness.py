"""The benchmark harness: wall time with the peak memory of the process tree, interleaved best-of timings,
and the run context every stage receives (Spark, a scratch folder, the size's cached landing zone)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from bench.record import Record
from features.calendar import months_between
from pipelines.core.config import Config, load_config
from pipelines.sample_data.writer import GenerateOptions, generate

T = TypeVar("T")

CACHE = Path(__file__).resolve().parent / "cache"
# the month the score and offers stages score and match: the latest month the features stage built (the
# train stage's test month)
SCORE_MONTH = "2024-03"
Clock = Callable[[], float]


class PeakMemory:
    """Peak summed RSS of a set of processes, sampled every ``every`` seconds: this process and all its
    descendants (the JVM, Spark's Python workers), or with ``workers_only`` Spark's Python workers."""

    def __init__(self, *, workers_only: bool = False, every: float = 0.1) -> None:
        self.workers_only, self.every = workers_only, every
        self.peak = 0

    def _processes(self) -> list[Any]:
        import psutil

        if not self.workers_only:
            me = psutil.Process()
            return [me, *me.children(recursive=True)]
        return [
            proc
            for proc in psutil.process_iter(["cmdline"])
            if any(k in " ".join(proc.info["cmdline"] or []) for k in ("pyspark.daemon", "pyspark.worker"))
        ]

    def __enter__(self) -> PeakMemory:
        import psutil

        self.peak, self._stop = 0, threading.Event()

        def sample() -> None:
            while not self._stop.is_set():
                total = 0
                for proc in self._processes():
                    try:
                        total += proc.memory_info().rss
                    except psutil.Error:
                        continue
                self.peak = max(self.peak, total)
                self._stop.wait(self.every)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mb(self) -> int:
        return round(self.peak / 2**20)


@dataclass(frozen=True)
class Timed(Generic[T]):
    """What ``fn()`` returned, its wall time and the peak memory of the process tree meanwhile."""

    value: T
    seconds: float
    peak_mb: int


def timed(fn: Callable[[], T], *, clock: Clock = time.perf_counter) -> Timed[T]:
    """``fn()`` timed by ``clock``, with the process tree's peak memory sampled meanwhile."""
    with PeakMemory() as mem:
        t0 = clock()
        out = fn()
        seconds = clock() - t0
    return Timed(out, seconds, mem.mb)


def interleaved_best(n: int, *fns: Callable[[], object], clock: Clock = time.perf_counter) -> list[float]:
    """Each of ``fns`` timed ``n`` times, taking turns, and the best time of each: a ratio between two of
    them then does not depend on the machine's state drifting from one block of timings to the next."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(n):
        for fn, seen in zip(fns, times, strict=True):
            seen.append(timed(fn, clock=clock).seconds)
    return [min(seen) for seen in times]


def cached_landing(subscribers: int, months: int) -> Path:
    """The size's landing zone, generated once (seed 3) and reused while its options are the same."""
    root = CACHE / f"{subscribers}x{months}" / "landing"
    wanted = GenerateOptions(
        months=tuple(months_between("2024-01", f"2024-{months:02d}")), subscribers=subscribers, seed=3
    )
    manifest = root / "_sample_manifest" / "manifest.json"
    if manifest.exists() and json.loads(manifest.read_text())["options"]["months"] == list(wanted.months):
        return root
    shutil.rmtree(root, ignore_errors=True)
    generate(root, wanted)
    return root


@dataclass(frozen=True)
class RunContext:
    """What every stage receives: Spark, a scratch folder (its lake under ``work/lake``), the size's
    landing zone and the size itself. Stages run in order and each reads the lake the earlier ones left."""

    spark: Any  # pyspark.sql.SparkSession
    work: Path
    landing: Path
    subscribers: int
    months: int

    def config(self, *overrides: str) -> Config:
        """The project's configuration pointed at this run's lake and landing zone."""
        return load_config(
            [], [f"lake.root={self.work / 'lake'}", f"landing.root={self.landing}", *overrides]
        )


@dataclass(frozen=True, kw_only=True)
class Machine(Record):
    """Where a result was measured."""

    date: str
    platform: str
    cpus: int | None
    memory_gb: float
    python: str
    pyspark: str
    java: str

    @classmethod
    def current(cls) -> Machine:
        import psutil
        import pyspark

        java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()
        return cls(
            date=time.strftime("%Y-%m-%d %H:%M"),
            platform=platform.platform(),
            cpus=os.cpu_count(),
            memory_gb=round(psutil.virtual_memory().total / 2**30, 1),
            python=platform.python_version(),
            pyspark=pyspark.__version__,
            java=java[0] if java else "unknown",
        )
