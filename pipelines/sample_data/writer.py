"""Writes simulated months as landing files per the contract, with late records, duplicates and faults.

Two ways to drive the simulation: :func:`generate` writes a range of months at once (the
``generate_sample_data`` job, the bench, the test fixtures); :class:`SampleOperator` delivers one month
at a time with its campaign system in the loop (the closed loop). What was planted is recorded in the
manifest (:mod:`pipelines.sample_data.options`). The pieces: :mod:`.formatting` (columns as contract
text), :mod:`.faults`, :mod:`.files` (a source-month as files), :mod:`.finisher` (a month finished).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from features.calendar import add_months
from pipelines.sample_data.catalogue import CATALOGUE_TRUTH
from pipelines.sample_data.finisher import MonthFinisher
from pipelines.sample_data.formatting import format_ids
from pipelines.sample_data.options import (
    MANIFEST_DIR,
    GenerateOptions,
    GenerateReport,
    read_faults,
    read_manifest,
    write_manifest,
)
from pipelines.sample_data.simulate import OperatorSimulation

__all__ = [
    "GenerateOptions",
    "GenerateReport",
    "SampleOperator",
    "generate",
    "read_faults",
    "read_manifest",
    "truth_line_rows",
]

log = logging.getLogger(__name__)

TRUTH_DIGITS = 6  # decimals of the probabilities written to the manifest
BURN_IN_MONTHS = 3  # simulated before the first written month, so it already has episodes under way


def _burnt_in(opts: GenerateOptions, first_month: str) -> OperatorSimulation:
    """The simulation, stepped (without output) up to ``first_month``."""
    sim = OperatorSimulation(
        opts.subscribers,
        opts.seed,
        add_months(first_month, -BURN_IN_MONTHS),
        opts.events_per_subscriber,
        opts.drivers,
    )
    for _ in range(BURN_IN_MONTHS):
        sim.step(emit=False)
    return sim


def generate(landing_root: str | Path, opts: GenerateOptions) -> GenerateReport:
    """Simulate and write ``opts.months`` (consecutive) of all five sources under ``landing_root``."""
    t0 = time.perf_counter()
    root = Path(landing_root)
    root.mkdir(parents=True, exist_ok=True)
    months = list(opts.months)
    sim = _burnt_in(opts, months[0])
    (root / MANIFEST_DIR).mkdir(exist_ok=True)
    report = GenerateReport()
    with (root / MANIFEST_DIR / "faults.jsonl").open("w") as faults_out, ThreadPoolExecutor(1) as finisher:
        finish = MonthFinisher(root, opts, report, faults_out)
        # month i is finished (formatted and written) on another thread while month i+1 is simulated;
        # at most one month waits, so memory stays bounded
        pending: Future[None] | None = None
        for i, month in enumerate(months):
            out = sim.step()
            if pending is not None:
                pending.result()
            pending = finisher.submit(finish.finish, month, out, i == len(months) - 1)
        if pending is not None:
            pending.result()
        finish.pool.shutdown()
    report.seconds = time.perf_counter() - t0
    finish.summary["churn"] = report.churn
    write_manifest(root, finish.summary)
    return report


def truth_line_rows(lines: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """The per-line truth of a campaign as manifest rows: plain JSON values, ids as the contract's text."""
    columns: dict[str, list[Any]] = {
        name: (values.round(TRUTH_DIGITS) if values.dtype.kind == "f" else values).tolist()
        for name, values in lines.items()
    }
    columns["subscriber_id"] = format_ids("S", lines["subscriber_id"]).to_pylist()
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]


class SampleOperator:
    """The simulated operator one month at a time, with its campaign system in the loop.

    ``deliver(month)`` simulates and writes the month's landing folders; then ``respond(month, offers)``
    carries out the pipeline's offer list for that month (contacts, acceptances and their true effect on
    churn, outcomes in the next month's ``campaign_outcomes``), or, when no list came, runs the operator's
    own campaign. ``close()`` writes the manifest, with the truth of every campaign: per offer under
    ``campaign_truth``, per listed line under ``campaign_truth_lines`` (:func:`truth_line_rows`). Same
    seed and same offer lists: same files.
    """

    def __init__(self, landing_root: str | Path, opts: GenerateOptions, first_month: str) -> None:
        self.t0 = time.perf_counter()
        self.root = Path(landing_root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.opts = opts
        self.sim = _burnt_in(opts, first_month)
        (self.root / MANIFEST_DIR).mkdir(exist_ok=True)
        self.report = GenerateReport()
        self._faults = (self.root / MANIFEST_DIR / "faults.jsonl").open("w")
        self.finisher = MonthFinisher(self.root, opts, self.report, self._faults)
        self.truth: list[dict[str, Any]] = []
        self.truth_lines: list[dict[str, Any]] = []

    def deliver(self, month: str) -> None:
        """Simulate ``month`` and write its landing folders (the operator's campaign waits for respond)."""
        if self.sim.month != month:
            raise ValueError(f"the next month to deliver is {self.sim.month}, not {month}")
        self.finisher.finish(month, self.sim.step(campaign=False), False)

    def respond(self, month: str, offers: Any | None, *, gap_months: int = 1, window_months: int = 1) -> None:
        """Act on ``month``'s offer list: a frame with ``subscriber_id`` (contract text), ``status``
        (``assigned`` or ``holdout``), ``intended_offer_id`` and ``channel``; None or empty: own campaign."""
        if offers is None or len(offers) == 0:
            self.sim.own_campaign(month)
            return
        ids = offers["subscriber_id"].astype(str).str.slice(1).astype(np.int64).to_numpy()
        truth = self.sim.act_on(
            month,
            ids,
            offers["intended_offer_id"].to_numpy(dtype=object),
            (offers["status"] == "assigned").to_numpy(),
            offers["channel"].to_numpy(dtype=object),
            gap_months=gap_months,
            window_months=window_months,
        )
        self.truth.extend(truth.offers)
        self.truth_lines.extend(truth_line_rows(truth.lines))
        every = truth.offers[0]
        log.info(
            "campaign system %s: %d lines treated, %d held out; true effect on the churn rate %.4f",
            month,
            every["treated"],
            every["holdout"],
            every["true_effect"] or 0.0,
        )

    def close(self) -> GenerateReport:
        self.finisher.pool.shutdown()
        self._faults.close()
        self.report.seconds = time.perf_counter() - self.t0
        summary = self.finisher.summary
        summary["churn"] = self.report.churn
        summary["campaign_truth"] = self.truth
        summary["campaign_truth_lines"] = self.truth_lines
        summary["offer_truth"] = {k: vars(v) for k, v in CATALOGUE_TRUTH.items()}
        write_manifest(self.root, summary)
        return self.report
