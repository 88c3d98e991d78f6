"""Sample data: the generator's CDR rows per second over three months of every source (the size's cached
landing zone is generated once, untimed)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from bench.harness import RunContext, timed
from bench.record import Record, TableRow, compare
from features.calendar import months_between
from pipelines.sample_data.writer import GenerateOptions, generate

TARGET_ROWS_PER_S = 1_000_000


@dataclass(frozen=True, kw_only=True)
class GeneratorResult(Record):
    subscribers: int
    months: int
    cdr_rows: int
    seconds: float
    cdr_rows_per_s: int
    target_rows_per_s: int
    peak_mb: int

    def table_rows(self) -> list[TableRow]:
        return [compare("generator (3 months)", self.seconds, rows=self.cdr_rows, peak_mb=self.peak_mb)]


def run(ctx: RunContext) -> GeneratorResult:
    months = tuple(months_between("2024-01", "2024-03"))
    opts = GenerateOptions(months=months, subscribers=ctx.subscribers, seed=3)
    gen = timed(lambda: generate(ctx.work / "generated", opts))
    shutil.rmtree(ctx.work / "generated", ignore_errors=True)
    return GeneratorResult(
        subscribers=ctx.subscribers,
        months=len(months),
        cdr_rows=gen.value.cdr_rows,
        seconds=round(gen.seconds, 2),
        cdr_rows_per_s=round(gen.value.cdr_rows / gen.seconds),
        target_rows_per_s=TARGET_ROWS_PER_S,
        peak_mb=gen.peak_mb,
    )
