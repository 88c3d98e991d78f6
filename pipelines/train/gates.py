"""The promotion gates (pure): whether a newly trained family becomes ``champion``, and why.

Judged on the test month, on ``all`` and on each cohort alike; a row with fewer than
``train.promotion.min_test_churners`` churners is reported but not gated (too few to judge). A gated row
is refused when

- its ROC AUC is below ``min_auc``;
- its calibration error relative to the churn rate is above ``max_relative_ece`` **and** more than a
  calibrated model shows on the same rows (p < ``alpha``), or its calibration slope is outside
  ``min_calibration_slope`` .. ``max_calibration_slope`` **and** significantly different from 1;
- against the champion scored on the same rows: its AUC is lower by more than ``auc_tolerance`` **and**
  significantly lower (paired bootstrap, one-sided p < ``alpha``), or its relative calibration error is
  above the champion's by more than ``relative_ece_tolerance``.

The calibration thresholds and the comparison of AUCs need the test as well because with a few dozen
churners the figures move by chance alone: a calibrated model's calibration error is then a good part of
the churn rate, and the AUCs of two equally good models differ by a few hundredths. On many thousands
of rows the reverse holds, a tiny drop is significant: the tolerance keeps such a model.

A family none of whose rows could be gated is not promoted: nobody judged it. With no champion yet the
first family is promoted only when ``all`` was gated and meets the AUC floor; its calibration misses are
reported but do not refuse it: there is no better model to keep, a list ranked by a model that
discriminates beats no list, and the next family is compared with it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from models.metrics import calibration_fit, expected_calibration_error
from models.significance import (
    AucDifference,
    calibration_error_p_value,
    calibration_slope_p_value,
    paired_auc_difference,
    rank_auc,
)
from pipelines.core.config import PromotionGates

ALL = "all"
_NAN = float("nan")


@dataclass(frozen=True)
class RowEvidence:
    """What the gates judge on one row of the test month (``all`` or a cohort).

    ``churners``: test churners in the row. The rest is NaN (None) where the row is not gated:
    the new family's AUC, its calibration error over the churn rate and the p-value of that error
    against a calibrated model's, its calibration slope and the p-value of "the slope is 1";
    ``versus_champion``: the paired AUC comparison with the champion on the same rows, and
    ``champion_relative_ece`` the champion's relative calibration error there.
    """

    churners: int
    roc_auc: float = _NAN
    relative_ece: float = _NAN
    ece_p_value: float = _NAN
    calibration_slope: float = _NAN
    slope_p_value: float = _NAN
    versus_champion: AucDifference | None = None
    champion_relative_ece: float = _NAN


def _relative_ece(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> float:
    return expected_calibration_error(y, p, sample_weight=w) / (np.sum(w * y) / np.sum(w))


def gate_evidence(
    labels: np.ndarray,
    new: np.ndarray,
    champion: np.ndarray | None,
    *,
    cohort: np.ndarray,
    cohort_names: Sequence[str],
    gates: PromotionGates,
    seed: int,
    sample_weight: np.ndarray | None = None,
) -> dict[str, RowEvidence]:
    """The evidence on ``all`` and each cohort of the test rows: ``labels`` (0/1), the new family's
    probabilities ``new``, the champion's on the same rows (None: no champion), each row's ``cohort``.

    The tests draw ``gates.bootstrap_rounds`` resamples from ``seed``: the same evidence on every run.
    """
    y, new = np.asarray(labels, dtype=float), np.asarray(new, dtype=float)
    w = np.ones_like(y) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    rows = {ALL: np.ones(len(y), dtype=bool), **{name: cohort == name for name in cohort_names}}
    out: dict[str, RowEvidence] = {}
    for name, in_row in rows.items():
        yr, wr, pr = y[in_row], w[in_row], new[in_row]
        churners = int(np.sum(yr == 1))
        if churners < gates.min_test_churners or churners == len(yr):
            out[name] = RowEvidence(churners)
            continue
        fit = calibration_fit(yr, pr, sample_weight=wr)
        versus = old_ece = None
        if champion is not None:
            old = champion[in_row]
            versus = paired_auc_difference(
                yr, pr, old, rounds=gates.bootstrap_rounds, alpha=gates.alpha, seed=seed, sample_weight=wr
            )
            old_ece = _relative_ece(yr, old, wr)
        out[name] = RowEvidence(
            churners=churners,
            roc_auc=rank_auc(yr, pr, sample_weight=wr),
            relative_ece=_relative_ece(yr, pr, wr),
            ece_p_value=calibration_error_p_value(
                yr, pr, rounds=gates.bootstrap_rounds, seed=seed, sample_weight=wr
            ),
            calibration_slope=fit.slope,
            slope_p_value=calibration_slope_p_value(fit),
            versus_champion=versus,
            champion_relative_ece=_NAN if old_ece is None else old_ece,
        )
    return out


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _row_lines(
    name: str, r: RowEvidence, gates: PromotionGates, *, has_champion: bool
) -> tuple[list[str], bool]:
    """The decision lines of a gated row and whether it passed: its figures, then a line for each
    threshold it crosses (refused, or why not) and for the champion."""
    lines = [
        f"{name}: {r.churners} test churners, AUC {r.roc_auc:.4f}, calibration error {r.relative_ece:.2f} of "
        f"the churn rate ({_p(r.ece_p_value)} against a calibrated model), calibration slope "
        f"{r.calibration_slope:.2f} ({_p(r.slope_p_value)} against 1)"
    ]
    calibration = _calibration(name, r, gates)
    if not has_champion:
        calibration = [
            (f"{line}: no champion to keep, not refused" if refuses else line, False)
            for line, refuses in calibration
        ]
    checks = calibration + _versus_champion(name, r, gates)
    if r.roc_auc < gates.min_auc:
        checks.insert(0, (f"{name}: AUC {r.roc_auc:.4f} below the floor {gates.min_auc}", True))
    return [*lines, *(line for line, _ in checks)], not any(refuses for _, refuses in checks)


def _calibration(name: str, r: RowEvidence, gates: PromotionGates) -> list[tuple[str, bool]]:
    """(line, refuses) for each calibration threshold the row crosses."""
    out = []
    if r.relative_ece > gates.max_relative_ece:
        above = (
            f"{name}: calibration error {r.relative_ece:.2f} of the churn rate above {gates.max_relative_ece}"
        )
        if r.ece_p_value < gates.alpha:
            out.append((f"{above}, more than a calibrated model shows on these rows", True))
        else:
            out.append((f"{above}, as a calibrated model may on {r.churners} churners: not refused", False))
    band = f"{gates.min_calibration_slope}..{gates.max_calibration_slope}"
    slope = f"{name}: calibration slope {r.calibration_slope:.2f}"
    if math.isnan(r.calibration_slope):
        out.append((f"{slope}: undefined (the probabilities are constant or separate the classes)", False))
    elif not gates.min_calibration_slope <= r.calibration_slope <= gates.max_calibration_slope:
        if r.slope_p_value < gates.alpha:
            out.append((f"{slope} outside {band}, significantly different from 1", True))
        else:
            out.append((f"{slope} outside {band}, not significantly different from 1: not refused", False))
    return out


def _versus_champion(name: str, r: RowEvidence, gates: PromotionGates) -> list[tuple[str, bool]]:
    """(line, refuses): the AUC comparison with the champion, and its calibration when worse."""
    versus = r.versus_champion
    if versus is None:
        return []
    lower = versus.difference < -gates.auc_tolerance
    significant = versus.p_value < gates.alpha
    tolerance = f"the tolerance {gates.auc_tolerance}"
    if lower and significant:
        verdict = f"significantly lower and by more than {tolerance}: worse than the champion"
    elif lower:
        verdict = f"lower by more than {tolerance}, but not significantly: not refused"
    elif significant:
        verdict = f"significantly lower, but within {tolerance}: not refused"
    else:
        verdict = "not significantly lower"
    out = [
        (
            f"{name}: AUC {versus.auc_new:.4f} against the champion's {versus.auc_old:.4f} on the same rows: "
            f"difference {versus.difference:+.4f}, {versus.confidence:.0%} CI [{versus.ci_low:+.4f}, "
            f"{versus.ci_high:+.4f}], one-sided {_p(versus.p_value)}: {verdict}",
            lower and significant,
        )
    ]
    if r.relative_ece > r.champion_relative_ece + gates.relative_ece_tolerance:
        out.append(
            (
                f"{name}: calibration error {r.relative_ece:.2f} of the churn rate worse than the champion's "
                f"{r.champion_relative_ece:.2f} by more than {gates.relative_ece_tolerance}",
                True,
            )
        )
    return out


def promotion_decision(
    rows: Mapping[str, RowEvidence], gates: PromotionGates, *, has_champion: bool
) -> tuple[bool, list[str]]:
    """Whether the new family becomes champion, and why: one line of figures per gated row, a line per
    threshold crossed (refused, or not refused and why) and per champion comparison, a verdict last.

    ``rows``: :func:`gate_evidence` (``all`` and the cohorts); ``has_champion``: whether a champion was
    compared (its comparisons are in the rows).
    """
    lines: list[str] = []
    gated: list[str] = []
    failed: list[str] = []
    for name, r in sorted(rows.items(), key=lambda item: item[0] != ALL):
        if r.churners < gates.min_test_churners or math.isnan(r.roc_auc):
            few = f", fewer than {gates.min_test_churners}" if r.churners < gates.min_test_churners else ""
            lines.append(f"{name}: not gated ({r.churners} test churners{few})")
            continue
        gated.append(name)
        row_lines, ok = _row_lines(name, r, gates, has_champion=has_champion)
        lines.extend(row_lines)
        if not ok:
            failed.append(name)
    if not gated:
        lines.append(
            f"not promoted: nothing could be gated (fewer than {gates.min_test_churners} test churners in "
            "all and in every cohort): a model nobody judged does not become champion"
        )
        return False, lines
    if not has_champion and ALL not in gated:
        lines.append("not promoted: there is no champion yet and all could not be gated")
        return False, lines
    if failed:
        lines.append(f"not promoted: {', '.join(failed)} failed the gates")
        return False, lines
    against = "and the champion" if has_champion else "(no champion yet)"
    lines.append(f"promoted: every gated row ({', '.join(gated)}) meets the floors {against}")
    return True, lines
