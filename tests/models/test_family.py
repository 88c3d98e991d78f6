"""The pure model API on synthetic pandas frames: cohorts, categoricals, nulls, calibration, fallbacks."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from features.errors import MissingColumnsError
from models import ModelParams, ModelSpec, TrainingDataError, fit_family
from models.metrics import expected_calibration_error

# one thread: LightGBM's threads spin on a busy machine
FAST = ModelParams(num_boost_round=200, num_threads=1)


def _frame(n: int, seed: int, *, new_share: float = 0.2) -> pd.DataFrame:
    """Churn driven by usage decline, a plan category and, for new subscribers, by handset age."""
    rng = np.random.default_rng(seed)
    tenure = np.where(rng.random(n) < new_share, rng.integers(0, 6, n), rng.integers(6, 80, n))
    plan = rng.choice(["basic", "max", "family", None], n, p=[0.4, 0.3, 0.2, 0.1])
    decline = rng.normal(size=n)
    handset = rng.integers(0, 48, n).astype(float)
    handset[rng.random(n) < 0.2] = np.nan  # nulls need no preprocessing
    logit = (
        -3.2
        + 1.2 * decline
        + 0.9 * (plan == "basic")
        + np.where(tenure < 6, 0.04 * np.nan_to_num(handset), 0)
    )
    return pd.DataFrame(
        {
            "subscriber_id": [f"s{seed}-{i}" for i in range(n)],
            "tenure_months": tenure,
            "plan": plan,
            "usage_decline": decline,
            "handset_age": handset,
            "roams": rng.random(n) < 0.1,
            "is_churn": rng.random(n) < 1 / (1 + np.exp(-logit)),
        }
    )


SPEC = ModelSpec(label="is_churn", tenure="tenure_months", id_columns=["subscriber_id"], params=FAST)


@pytest.fixture(scope="module")
def fitted():
    train, valid, test = _frame(24000, 1), _frame(8000, 2), _frame(20000, 3)
    return fit_family(train, spec=SPEC, valid=valid), test


def test_each_calibrator_is_fitted_on_its_cohort_s_calibration_slice_of_the_serving_model(fitted):
    from models.calibration import Calibrator
    from models.family import labelled_rows
    from models.fit import split_validation

    family, _ = fitted
    valid = _frame(8000, 2)  # the fixture's validation rows
    rows_c = split_validation(labelled_rows(valid, SPEC, "test"), SPEC)["calibrate"]
    raw, cohort, y = family.raw_score(valid), family.cohorts(valid), valid["is_churn"].to_numpy(float)
    grid = np.linspace(0.01, 0.9, 25)
    own = [name for name, info in family.report["cohorts"].items() if info["calibration"] == "own"]
    assert len(own) >= 2  # the comparison below runs
    for name, info in family.report["cohorts"].items():
        rows = cohort == name
        assert info["valid_rows"] == rows.sum() and info["valid_churners"] == y[rows].sum()
        mine = rows_c[cohort[rows_c] == name]
        assert info["calibrate_churners"] == y[mine].sum()
        if info["calibration"] == "own":
            alone = Calibrator(FAST.calibration).fit(raw[mine], y[mine], np.ones(len(mine)))
            np.testing.assert_allclose(family.calibrators[name].predict(grid), alone.predict(grid), rtol=1e-9)


def test_the_validation_slices_are_disjoint_and_each_choice_ignores_the_others_labels():
    """Early stopping, the serving choice and calibration each see their own rows: flipping the labels
    of one slice changes nothing the earlier steps decided (asserted on subscriber ids and trees)."""
    from models.family import labelled_rows
    from models.fit import SLICES, split_validation

    train, valid = _frame(8000, 21), _frame(6000, 22)
    slices = split_validation(labelled_rows(valid, SPEC, "test"), SPEC)
    ids = {name: set(valid["subscriber_id"].iloc[index]) for name, index in slices.items()}
    assert sum(len(v) for v in ids.values()) == len(valid) == len(set().union(*ids.values()))
    for a in SLICES:
        for b in SLICES:
            assert a == b or not ids[a] & ids[b]
    shares = [len(ids[name]) / len(valid) for name in SLICES]
    np.testing.assert_allclose(shares, FAST.validation_split, atol=0.01)
    base = fit_family(train, spec=SPEC, valid=valid)
    assert base.report["slices"] == {name: len(ids[name]) for name in SLICES}

    def flipped(names: tuple[str, ...]) -> pd.DataFrame:
        out = valid.copy()
        at = out["subscriber_id"].isin(set().union(*(ids[n] for n in names)))
        out.loc[at, "is_churn"] = ~out.loc[at, "is_churn"].astype(bool)
        return out

    trees = {k: b.model_to_string() for k, b in base.boosters.items()}
    # the calibration rows' labels: neither the trees, nor the serving choice
    other = fit_family(train, spec=SPEC, valid=flipped(("calibrate",)))
    assert {k: b.model_to_string() for k, b in other.boosters.items()} == trees
    assert other.serving == base.serving
    assert other.calibrators["established"].predict(np.array([0.1]))[0] != pytest.approx(
        base.calibrators["established"].predict(np.array([0.1]))[0], rel=1e-3
    )
    # the choice and calibration rows' labels: not the trees (early stopping sees only its own slice)
    other = fit_family(train, spec=SPEC, valid=flipped(("choose", "calibrate")))
    assert {k: b.model_to_string() for k, b in other.boosters.items()} == trees


def test_a_cohort_without_validation_churners_is_served_by_the_pooled_model():
    train, valid = _frame(12000, 23), _frame(4000, 24)
    new = SPEC.cohort_of(valid["tenure_months"]) == "new"
    family = fit_family(train, spec=SPEC, valid=valid.assign(is_churn=valid["is_churn"] & ~new))
    info = family.report["cohorts"]["new"]
    assert info["served_by"] == "pooled" and "no validation evidence" in info["reason"]
    assert "new" not in family.boosters and info["stop_churners"] == 0


def test_baselines_are_calibrated_on_the_family_s_calibration_rows(fitted):
    family, test = fitted
    y = test["is_churn"].to_numpy(float)
    for which in ("pooled", "logistic"):
        p = family.baseline_proba(test, which)
        assert abs(p.mean() - y.mean()) < 0.01
        assert expected_calibration_error(y, p) < 0.02
    # the validation figures are the calibration slice's, cross-fitted
    assert family.report["valid"]["family"]["all"]["rows"] == family.report["slices"]["calibrate"]


def test_string_categoricals_nulls_and_no_month_column(fitted):
    family, test = fitted
    assert "month" not in test.columns
    assert family.encoder.categories["plan"] == ("basic", "family", "max")
    assert family.features == ("tenure_months", "plan", "usage_decline", "handset_age", "roams")
    p = family.predict_proba(test)
    assert p.shape == (len(test),) and np.all((p >= 0) & (p <= 1))
    # a category never seen at fit time is missing, not an error
    unseen = test.head(50).assign(plan="unlimited")
    assert np.isfinite(family.predict_proba(unseen)).all()


def test_probabilities_are_calibrated_on_later_rows(fitted):
    family, test = fitted
    y, p = test["is_churn"].to_numpy(), family.predict_proba(test)
    assert abs(p.mean() - y.mean()) < 0.01
    assert expected_calibration_error(y, p) < 0.015
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y, p) > 0.75


def test_family_reports_every_cohort_and_its_baselines(fitted):
    family, _ = fitted
    report = family.report
    assert set(report["cohorts"]) == {"new", "early", "established"}
    for info in report["cohorts"].values():
        assert info["served_by"] in ("cohort", "pooled") and info["reason"]
    assert set(report["valid"]) == {"family", "pooled", "logistic"}
    auc = {m: report["valid"][m]["all"]["roc_auc"] for m in report["valid"]}
    assert auc["family"] > 0.75 and auc["logistic"] > 0.7


def test_contributions_add_up_to_the_raw_log_odds(fitted):
    family, test = fitted
    head = test.head(200)
    contrib, names = family.contributions(head)
    raw = family.raw_score(head)
    assert names[-1] == "__bias" and len(names) == len(family.features) + 1
    np.testing.assert_allclose(1 / (1 + np.exp(-contrib.sum(axis=1))), raw, rtol=1e-6)


def test_a_tiny_cohort_is_served_by_the_pooled_model():
    train, valid = _frame(12000, 4, new_share=0.01), _frame(4000, 5, new_share=0.01)
    family = fit_family(train, spec=SPEC, valid=valid)
    new = family.report["cohorts"]["new"]
    assert new["served_by"] == "pooled" and "too few" in new["reason"]
    assert "new" not in family.boosters
    test = _frame(2000, 6, new_share=0.5)
    rows = family.cohorts(test) == "new"
    pooled = family.boosters["pooled"].predict(family._matrix(test, family.cohorts(test))[rows])
    np.testing.assert_allclose(family.raw_score(test)[rows], pooled)


def test_a_refit_without_baselines_serves_the_same_and_keeps_the_gated_baselines():
    """Refitted for serving (``baselines=False``), only the boosters that serve a cohort grow again: the
    served probabilities equal the full refit's, while the pooled booster (when every cohort's own model
    serves) and the logistic baseline stay the gated family's objects. The full refit (the backtest's)
    refits them on the new rows."""
    from models.fit import refit_family

    train, valid, more = _frame(8000, 7), _frame(3000, 8), _frame(6000, 9)
    spec = ModelSpec(id_columns=["subscriber_id"], params=FAST.model_copy(update={"serve": "cohort"}))
    gated = fit_family(train, spec=spec, valid=valid)
    assert set(gated.serving.values()) == {"cohort"}
    rows = pd.concat([train, valid, more], ignore_index=True)
    served, full = refit_family(gated, rows, baselines=False), refit_family(gated, rows)
    test = _frame(2000, 10)
    np.testing.assert_array_equal(served.predict_proba(test), full.predict_proba(test))
    assert not np.array_equal(served.predict_proba(test), gated.predict_proba(test))
    assert served.boosters["pooled"] is gated.boosters["pooled"] and served.logistic is gated.logistic
    for which in ("pooled", "logistic"):
        np.testing.assert_array_equal(served.baseline_proba(test, which), gated.baseline_proba(test, which))
        assert not np.array_equal(full.baseline_proba(test, which), gated.baseline_proba(test, which))
    cohorts = sorted(gated.serving)
    assert sorted(served.report["refit"]["iterations"]) == cohorts
    assert served.report["refit"]["kept"] == ["pooled", "logistic"] and full.report["refit"]["kept"] == []
    assert sorted(full.report["refit"]["iterations"]) == sorted(gated.boosters)
    # the pooled model serving one cohort (as when it wins that cohort's choose slice): that cohort's own
    # booster is the one kept, the pooled one grows again
    mixed = copy.copy(gated)
    mixed.serving = {**gated.serving, "new": "pooled"}
    refit = refit_family(mixed, rows, baselines=False)
    assert refit.report["refit"]["kept"] == ["new", "logistic"]
    assert refit.boosters["new"] is gated.boosters["new"]
    assert refit.boosters["pooled"] is not gated.boosters["pooled"]
    np.testing.assert_array_equal(refit.predict_proba(test), refit_family(mixed, rows).predict_proba(test))


def test_config_can_force_the_pooled_or_the_cohort_models():
    train, valid = _frame(8000, 7), _frame(3000, 8)
    pooled = fit_family(
        train,
        spec=ModelSpec(id_columns=["subscriber_id"], params=FAST.model_copy(update={"serve": "pooled"})),
        valid=valid,
    )
    assert set(pooled.serving.values()) == {"pooled"}
    cohort = fit_family(
        train,
        spec=ModelSpec(id_columns=["subscriber_id"], params=FAST.model_copy(update={"serve": "cohort"})),
        valid=valid,
    )
    assert set(cohort.serving.values()) == {"cohort"}


def test_downsampled_training_stays_calibrated():
    train, valid, test = _frame(30000, 9), _frame(8000, 10), _frame(15000, 11)
    params = FAST.model_copy(update={"row_budget": 6000})
    family = fit_family(train, spec=ModelSpec(id_columns=["subscriber_id"], params=params), valid=valid)
    assert family.report["rows"]["train_fitted"] < 8000 and family.report["downsample_rate"] < 0.25
    y, p = test["is_churn"].to_numpy(), family.predict_proba(test)
    # calibrated on the calibration slice's 2,800 rows, whose churn rate is 0.119 against the test's 0.105
    assert abs(p.mean() - y.mean()) < 0.02


def test_valid_none_draws_a_stratified_split_and_bad_inputs_fail_clearly():
    frame = _frame(6000, 12)
    family = fit_family(frame, spec=SPEC)
    assert family.report["rows"]["valid"] == pytest.approx(1500, abs=2)
    with pytest.raises(MissingColumnsError, match="missing columns tenure_months"):
        fit_family(frame.drop(columns="tenure_months"), spec=SPEC)
    with pytest.raises(TrainingDataError, match="0 churners"):
        fit_family(frame.assign(is_churn=False), spec=SPEC, valid=frame)
    with pytest.raises(TrainingDataError, match=r"calibration slice .* holds 0 churners"):
        fit_family(frame, spec=SPEC, valid=frame.assign(is_churn=False))
    with pytest.raises(MissingColumnsError, match="usage_decline"):
        family.predict_proba(frame.drop(columns="usage_decline"))
