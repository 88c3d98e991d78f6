"""The promotion gates (pure, no Spark): literal evidence for the rules, scored test months for the tests."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.special import expit, logit

from models.metrics import calibration_fit
from models.significance import AucDifference
from pipelines.core.config import PromotionGates
from pipelines.train.gates import RowEvidence, gate_evidence, promotion_decision

GATES = PromotionGates(
    min_auc=0.6,
    max_relative_ece=0.5,
    min_calibration_slope=0.7,
    max_calibration_slope=1.3,
    auc_tolerance=0.01,
    relative_ece_tolerance=0.3,
    alpha=0.05,
    bootstrap_rounds=1000,
    min_test_churners=10,
)
COHORTS = ("new", "early", "established")


def _good(churners: int, **changes) -> RowEvidence:
    """A row that passes every gate."""
    figures = dict(
        churners=churners,
        roc_auc=0.78,
        relative_ece=0.2,
        ece_p_value=0.6,
        calibration_slope=1.0,
        slope_p_value=0.9,
    )
    return RowEvidence(**{**figures, **changes})


def _versus(difference: float, p_value: float, auc_old: float = 0.78) -> AucDifference:
    return AucDifference(
        auc_new=auc_old + difference,
        auc_old=auc_old,
        difference=difference,
        ci_low=difference - 0.02,
        ci_high=difference + 0.02,
        confidence=0.9,
        p_value=p_value,
        rounds=1000,
    )


def test_all_is_gated_like_a_cohort():
    cohorts = {"new": _good(20), "early": _good(15), "established": _good(40)}
    ok, why = promotion_decision({"all": _good(75, roc_auc=0.58), **cohorts}, GATES, has_champion=False)
    assert not ok
    assert why[1] == "all: AUC 0.5800 below the floor 0.6"
    assert why[-1] == "not promoted: all failed the gates"
    # worse than the champion on all only (every cohort holds): refused
    rows = {
        "all": _good(75, versus_champion=_versus(-0.03, 0.004), champion_relative_ece=0.2),
        **{name: _good(r.churners, versus_champion=_versus(0.0, 0.5)) for name, r in cohorts.items()},
    }
    ok, why = promotion_decision(rows, GATES, has_champion=True)
    assert not ok and why[-1] == "not promoted: all failed the gates"
    assert why[1] == (
        "all: AUC 0.7500 against the champion's 0.7800 on the same rows: difference -0.0300, 90% CI "
        "[-0.0500, -0.0100], one-sided p = 0.004: significantly lower and by more than the tolerance 0.01: "
        "worse than the champion"
    )


def test_nothing_gated_is_not_promoted():
    """The rule this replaces promoted a model none of whose cohorts had enough churners to judge."""
    thin = {
        "all": RowEvidence(9),
        "new": RowEvidence(3),
        "early": RowEvidence(2),
        "established": RowEvidence(4),
    }
    for has_champion in (False, True):
        ok, why = promotion_decision(thin, GATES, has_champion=has_champion)
        assert not ok
        assert why == [
            "all: not gated (9 test churners, fewer than 10)",
            "new: not gated (3 test churners, fewer than 10)",
            "early: not gated (2 test churners, fewer than 10)",
            "established: not gated (4 test churners, fewer than 10)",
            "not promoted: nothing could be gated (fewer than 10 test churners in all and in every cohort): "
            "a model nobody judged does not become champion",
        ]


def test_the_first_model_needs_all_gated():
    # literal rows (on real rows all has at least the churners of any cohort): all has no AUC
    rows = {"all": RowEvidence(30), "new": _good(12)}
    assert promotion_decision(rows, GATES, has_champion=False) == (
        False,
        [
            "all: not gated (30 test churners)",
            "new: 12 test churners, AUC 0.7800, calibration error 0.20 of the churn rate (p = 0.600 against "
            "a calibrated model), calibration slope 1.00 (p = 0.900 against 1)",
            "not promoted: there is no champion yet and all could not be gated",
        ],
    )
    ok, why = promotion_decision(rows, GATES, has_champion=True)
    assert ok and why[-1] == "promoted: every gated row (new) meets the floors and the champion"


def test_a_threshold_crossed_by_chance_alone_does_not_refuse():
    rows = {"all": _good(12, relative_ece=0.7, ece_p_value=0.3, calibration_slope=1.5, slope_p_value=0.2)}
    ok, why = promotion_decision(rows, GATES, has_champion=False)
    assert ok
    assert why[1:] == [
        "all: calibration error 0.70 of the churn rate above 0.5, as a calibrated model may on 12 churners: "
        "not refused",
        "all: calibration slope 1.50 outside 0.7..1.3, not significantly different from 1: not refused",
        "promoted: every gated row (all) meets the floors (no champion yet)",
    ]
    beyond = {
        "all": _good(300, relative_ece=0.7, ece_p_value=0.01, calibration_slope=1.5, slope_p_value=0.001)
    }
    beyond_champion = {
        "all": replace(beyond["all"], versus_champion=_versus(0.0, 0.5), champion_relative_ece=0.6)
    }
    ok, why = promotion_decision(beyond_champion, GATES, has_champion=True)
    assert not ok
    assert why[1:3] == [
        "all: calibration error 0.70 of the churn rate above 0.5, more than a calibrated model shows on "
        "these rows",
        "all: calibration slope 1.50 outside 0.7..1.3, significantly different from 1",
    ]


def test_the_first_model_is_not_refused_for_its_calibration_alone():
    """No champion: a significant calibration miss is reported, the AUC floor still refuses."""
    beyond = _good(300, relative_ece=0.7, ece_p_value=0.01, calibration_slope=1.5, slope_p_value=0.001)
    ok, why = promotion_decision({"all": beyond}, GATES, has_champion=False)
    assert ok
    assert why[1:] == [
        "all: calibration error 0.70 of the churn rate above 0.5, more than a calibrated model shows on "
        "these rows: no champion to keep, not refused",
        "all: calibration slope 1.50 outside 0.7..1.3, significantly different from 1: no champion to keep, "
        "not refused",
        "promoted: every gated row (all) meets the floors (no champion yet)",
    ]
    ok, why = promotion_decision({"all": replace(beyond, roc_auc=0.55)}, GATES, has_champion=False)
    assert not ok and why[1] == "all: AUC 0.5500 below the floor 0.6"


def test_calibration_worse_than_the_champions_beyond_the_tolerance_refuses():
    worse = _good(50, relative_ece=0.45, versus_champion=_versus(0.01, 0.8), champion_relative_ece=0.1)
    ok, why = promotion_decision({"all": worse}, GATES, has_champion=True)
    assert not ok
    assert (
        why[-2]
        == "all: calibration error 0.45 of the churn rate worse than the champion's 0.10 by more than 0.3"
    )
    within = _good(50, relative_ece=0.35, versus_champion=_versus(0.01, 0.8), champion_relative_ece=0.1)
    assert promotion_decision({"all": within}, GATES, has_champion=True)[0]


# scored test months: labels drawn from known probabilities, so those probabilities are calibrated


def _test_month(seed: int, n: int = 8000) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.random.Generator]:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    q = expit(-4.0 + 1.2 * z)
    y = (rng.random(n) < q).astype(int)
    return y, q, rng.choice(COHORTS, size=n), rng


def _recalibrated(noisy_logit, z_rng: np.random.Generator, noise: float) -> np.ndarray:
    """Probabilities of a ranking blurred by ``noise``, Platt-calibrated on an independent sample."""
    z = z_rng.normal(size=200_000)
    y = z_rng.random(len(z)) < expit(-4.0 + 1.2 * z)
    fit = calibration_fit(y, expit(-4.0 + 1.2 * z + z_rng.normal(scale=noise, size=len(z))))
    return expit(fit.intercept + fit.slope * noisy_logit)


def _decide(y, new, old, cohort):
    rows = gate_evidence(y, new, old, cohort=cohort, cohort_names=COHORTS, gates=GATES, seed=7)
    return rows, *promotion_decision(rows, GATES, has_champion=old is not None)


def test_a_calibrated_first_model_is_promoted_on_all_and_every_cohort():
    y, q, cohort, _ = _test_month(seed=1)
    rows, ok, why = _decide(y, q, None, cohort)
    assert (
        ok
        and why[-1]
        == "promoted: every gated row (all, new, early, established) meets the floors (no champion yet)"
    )
    assert rows["all"].churners == y.sum() and rows["new"].churners == y[cohort == "new"].sum()
    # the same seed, the same evidence (compared as text: the figures of an ungated row are NaN)
    again = gate_evidence(y, q, None, cohort=cohort, cohort_names=COHORTS, gates=GATES, seed=7)
    assert repr(again) == repr(rows)


def test_a_clearly_worse_challenger_is_refused_with_a_small_p_value():
    y, q, cohort, rng = _test_month(seed=2)
    worse = _recalibrated(logit(q) + rng.normal(scale=1.5, size=len(q)), rng, noise=1.5)
    rows, ok, why = _decide(y, worse, q, cohort)
    versus = rows["all"].versus_champion
    assert versus is not None and versus.difference < -0.05 and versus.ci_high < 0 and versus.p_value < 0.01
    assert not ok
    refusals = [line for line in why if "worse than the champion" in line]
    # the smallest p-value 1000 resamples can give
    assert versus.p_value == 1 / 1001
    assert refusals[0].startswith("all: AUC ") and "one-sided p < 0.001" in refusals[0]
    # refused for its ranking alone (it is calibrated): the rows refused are those worse than the champion
    calibration_refusals = [
        line
        for line in why
        if line.endswith(
            ("more than a calibrated model shows on these rows", "significantly different from 1")
        )
        or ("calibration error" in line and "worse than the champion's" in line)
    ]
    assert calibration_refusals == []
    failed = [line.split(":")[0] for line in refusals]
    assert failed[0] == "all" and why[-1] == f"not promoted: {', '.join(failed)} failed the gates"


def test_a_tiny_non_significant_drop_within_the_tolerance_is_accepted():
    y, q, cohort, rng = _test_month(seed=8)
    # two equally good blurs of the true ranking: this draw left the challenger a hair lower
    old = expit(logit(q) + rng.normal(scale=0.3, size=len(q)))
    new = expit(logit(q) + rng.normal(scale=0.3, size=len(q)))
    rows, ok, why = _decide(y, new, old, cohort)
    versus = rows["all"].versus_champion
    assert versus is not None and -0.01 < versus.difference < 0 and versus.ci_low < 0 < versus.ci_high
    assert versus.p_value > 0.05
    assert ok, why
    assert (
        why[-1]
        == "promoted: every gated row (all, new, early, established) meets the floors and the champion"
    )
    assert any(line.startswith("all: AUC ") and line.endswith(": not significantly lower") for line in why)


def test_a_significant_drop_within_the_tolerance_is_accepted():
    """Paired on thousands of rows a drop of a thousandth is significant: the tolerance keeps it."""
    y, q, cohort, rng = _test_month(seed=3)
    rows, ok, why = _decide(y, expit(logit(q) + rng.normal(scale=0.05, size=len(q))), q, cohort)
    versus = rows["all"].versus_champion
    assert versus is not None and -0.01 < versus.difference < 0 and versus.p_value < 0.05
    assert ok, why
    assert any(
        line.startswith("all: AUC ")
        and line.endswith("significantly lower, but within the tolerance 0.01: not refused")
        for line in why
    )


def test_squared_probabilities_are_refused_for_their_calibration_slope():
    y, q, cohort, _ = _test_month(seed=4)
    # the same ranking as the champion's, so only the calibration tells them apart
    rows, ok, why = _decide(y, q**2, q, cohort)
    assert not ok and rows["all"].calibration_slope == pytest.approx(0.5, abs=0.1)
    slope = rows["all"].calibration_slope
    assert f"all: calibration slope {slope:.2f} outside 0.7..1.3, significantly different from 1" in why
    # as a first model it is reported, not refused
    _, ok, why = _decide(y, q**2, None, cohort)
    assert ok
    assert (
        f"all: calibration slope {slope:.2f} outside 0.7..1.3, significantly different from 1: no champion "
        "to keep, not refused" in why
    )
