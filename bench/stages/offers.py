"""Offers: the match_offers job on the scored month (exact where the candidates fit), the optimum against
greedy, and the Lagrangian path in Spark against the exact solve of the same candidates."""

from __future__ import annotations

from dataclasses import dataclass

from bench.harness import SCORE_MONTH, RunContext, timed
from bench.record import Record, TableRow, compare


@dataclass(frozen=True, kw_only=True)
class OffersResult(Record):
    lines: int
    candidates: int
    method: str
    match_job_s: float
    us_per_line: float
    peak_mb: int
    optimised_value: float
    greedy_value: float | None
    lagrangian_job_s: float
    lagrangian_value: float
    lagrangian_bound: float | None

    def table_rows(self) -> list[TableRow]:
        return [
            compare("match_offers", self.match_job_s, rows=self.lines, peak_mb=self.peak_mb),
            compare("match_offers (Lagrangian)", self.lagrangian_job_s, "exact job", self.match_job_s,
                    rows=self.lines),
        ]  # fmt: skip


def run(ctx: RunContext) -> OffersResult:
    from pipelines.match_offers import match_offers_month

    spark, cfg = ctx.spark, ctx.config()
    exact = timed(lambda: match_offers_month(spark, cfg, SCORE_MONTH))
    lagrangian_cfg = ctx.config("offers.exact_max_candidates=0")
    lagrangian = timed(lambda: match_offers_month(spark, lagrangian_cfg, SCORE_MONTH))
    report, prices = exact.value, lagrangian.value
    lines = sum(report.by_status.values())
    return OffersResult(
        lines=lines,
        candidates=report.candidates,
        method=report.method,
        match_job_s=round(exact.seconds, 2),
        us_per_line=round(exact.seconds / max(lines, 1) * 1e6, 1),
        peak_mb=exact.peak_mb,
        optimised_value=round(report.optimised_value, 2),
        greedy_value=None if report.greedy_value is None else round(report.greedy_value, 2),
        lagrangian_job_s=round(lagrangian.seconds, 2),
        lagrangian_value=round(prices.optimised_value, 2),
        lagrangian_bound=None if prices.bound is None else round(prices.bound, 2),
    )
