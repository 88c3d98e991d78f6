"""What a score means, on literal inputs and a family fitted on planted data: bands, tiers, strategy,
reasons, churn type, the value column of the trend window, drift bins and PSI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from models import ModelParams, ModelSpec, fit_family
from models.monitoring import DriftProfile, psi
from models.params import ScoreParams
from models.scoring import (
    drift_bins,
    drift_psi,
    reason_families,
    reason_frame,
    risk_band,
    score_frame,
    strategy,
    top_reasons,
    value_tier,
)

P = ScoreParams(band_high=0.3, band_medium=0.1, value_high=45, value_medium=20, value_low=5)


def test_bands_tiers_and_the_strategy_matrix():
    assert list(risk_band(np.array([0.0, 0.0999, 0.1, 0.2999, 0.3, 1.0]), P)) == [
        "low",
        "low",
        "medium",
        "medium",
        "high",
        "high",
    ]
    tiers = value_tier(np.array([100.0, 45.0, 44.99, 20.0, 5.0, 4.99, -3.0, np.nan]), P)
    assert list(tiers) == [
        "high",
        "high",
        "medium",
        "medium",
        "low",
        "unprofitable",
        "unprofitable",
        "unprofitable",
    ]
    got = strategy(
        np.array(["high", "high", "medium", "low", "unprofitable"], dtype=object),
        np.array(["high", "low", "medium", "medium", "high"], dtype=object),
        P,
    )
    assert list(got) == [
        "strongest_retention",
        "care_loyalty",
        "targeted_offer",
        "digital_offer",
        "no_action",
    ]


def test_params_refuse_inconsistent_thresholds_and_unknown_families():
    with pytest.raises(ValidationError, match="band_medium must be below band_high"):
        ScoreParams(band_high=0.1, band_medium=0.2)
    with pytest.raises(ValidationError, match="reason families must be among"):
        ScoreParams(reason_families={"bad_luck": ("x",)})
    with pytest.raises(ValidationError, match=r"strategy.low needs an action for bands high"):
        ScoreParams(strategy={**P.strategy, "low": {"low": "a", "medium": "b"}})


def test_feature_names_map_to_reason_families_by_pattern_in_order():
    names = [
        "months_to_contract_end",
        "overdue_days_m0",
        "roaming_charge_avg_3m",  # roaming before price: first match wins
        "care_complaint_m0",
        "competitor_out_share_m0",
        "data_mb_chg_1m",
        "tenure_months",
        "bill_shock_ratio_m0",
        "voice_out_min_m0",  # no pattern: the fallback
    ]
    assert reason_families(names, ScoreParams()) == [
        "contract_expiry",
        "payment_trouble",
        "roaming_cost",
        "service_issue",
        "competitor_pull",
        "usage_decline",
        "new_customer_fit",
        "price_sensitivity",
        "low_engagement",
    ]


def test_top_reasons_are_the_largest_risk_raising_actionable_contributions():
    features = [
        "overdue_days_m0",
        "care_complaint_m0",
        "care_network_m0",
        "data_mb_chg_1m",
        "tenure_months",
        "region",
    ]
    contrib = np.array(
        [
            # overdue 0.7 is the largest single contribution: care's 0.5 + 0.4 do not outweigh it (the
            # family with more features would win by a sum); the region (not actionable) and the bias
            # (last) are never reasons
            [0.7, 0.5, 0.4, -0.9, 0.1, 0.9, -2.0],
            [-0.1, -0.2, -0.3, -0.4, -0.5, 0.8, 3.0],  # only the region raises the risk: no reason, no type
            [0.0, 0.0, 0.0, 0.2, 0.0, 0.0, -3.0],
        ]
    )
    reasons, churn_type = top_reasons(contrib, features, ScoreParams(reasons_top=3))
    assert reasons[0] == [
        {"feature": "overdue_days_m0", "contribution": 0.7, "family": "payment_trouble"},
        {"feature": "care_complaint_m0", "contribution": 0.5, "family": "service_issue"},
        {"feature": "care_network_m0", "contribution": 0.4, "family": "service_issue"},
    ]
    assert reasons[1] == [] and reasons[2] == [
        {"feature": "data_mb_chg_1m", "contribution": 0.2, "family": "usage_decline"}
    ]
    assert list(churn_type) == ["payment_trouble", None, "usage_decline"]


def test_psi_of_a_sample_against_itself_is_zero_and_a_shift_is_large():
    rng = np.random.default_rng(3)
    values = rng.lognormal(size=20000)
    values[:500] = np.nan
    profile = DriftProfile.fit({"x": values})
    counts = np.bincount(profile.bins("x", values), minlength=profile.n_bins("x"))
    assert profile.psi("x", counts) == 0.0
    assert profile.expected["x"][-1] == pytest.approx(500 / 20000)  # the null bin
    shifted = values * 3
    assert profile.psi("x", np.bincount(profile.bins("x", shifted), minlength=profile.n_bins("x"))) > 1.0
    # the textbook formula on two share vectors
    assert psi(np.array([0.5, 0.5]), np.array([0.25, 0.75])) == pytest.approx(
        0.25 * np.log(0.25 / 0.5) * -1 + 0.25 * np.log(0.75 / 0.5)
    )


def _planted(n: int, seed: int) -> pd.DataFrame:
    """Churn driven by overdue days (payment trouble) and complaints (service issue), nothing else."""
    rng = np.random.default_rng(seed)
    overdue = rng.exponential(5.0, n)
    complaints = rng.poisson(0.3, n).astype(float)
    logit = -3.0 + 0.25 * overdue + 1.2 * complaints
    return pd.DataFrame(
        {
            "subscriber_id": [f"s{seed}-{i}" for i in range(n)],
            "tenure_months": rng.integers(0, 80, n),
            "overdue_days_m0": overdue,
            "care_complaint_m0": complaints,
            "data_mb_chg_1m": rng.normal(size=n),
            "voice_out_min_m0": rng.exponential(100.0, n),
            "is_churn": rng.random(n) < 1 / (1 + np.exp(-logit)),
        }
    )


@pytest.fixture(scope="module")
def family():
    spec = ModelSpec(id_columns=["subscriber_id"], params=ModelParams(num_boost_round=150, num_threads=1))
    return fit_family(_planted(12000, 1), spec=spec, valid=_planted(4000, 2))


def test_the_churn_type_is_the_family_of_the_planted_driver(family):
    typical = _planted(3, 3).drop(columns="is_churn")
    calm = {"overdue_days_m0": 0.0, "care_complaint_m0": 0.0, "data_mb_chg_1m": 0.0}
    rows = pd.DataFrame(
        [
            {**typical.iloc[0].to_dict(), **calm, "overdue_days_m0": 60.0},  # long overdue, no complaint
            {**typical.iloc[1].to_dict(), **calm, "care_complaint_m0": 6.0},  # complaints, paid on time
        ]
    )
    got = reason_frame(family, rows, ScoreParams())
    assert list(got["churn_type"]) == ["payment_trouble", "service_issue"]
    assert got["reasons"][0][0]["feature"] == "overdue_days_m0"
    assert got["reasons"][1][0]["feature"] == "care_complaint_m0"
    assert list(got["subscriber_id"]) == list(rows["subscriber_id"])


def test_score_frame_reads_the_value_of_the_trend_window_it_is_given(family):
    frame = _planted(6, 4).drop(columns="is_churn")
    frame["arpu_avg_4m"] = [50.0, np.nan, 10.0, np.nan, 3.0, 30.0]
    frame["arpu_avg_3m"] = 999.0  # another window's column: never read with trend_months=4
    frame["monthly_fee"] = [1.0, 25.0, 1.0, np.nan, 1.0, 1.0]
    params = ScoreParams(value_high=45, value_medium=20, value_low=5)
    got = score_frame(family, frame, params, trend_months=4)
    want = [50.0, 25.0, 10.0, np.nan, 3.0, 30.0]  # the 4-month ARPU, else the plan fee
    np.testing.assert_array_equal(got["arpu_3m"].to_numpy(), want)
    assert list(got["value_tier"]) == ["high", "medium", "low", "unprofitable", "unprofitable", "medium"]
    np.testing.assert_allclose(got["churn_probability"], family.predict_proba(frame), rtol=1e-12)
    assert list(got["risk_band"]) == list(risk_band(family.predict_proba(frame), params))
    assert list(got["usage_segment"]) == [None] * 6  # no segments fitted
    assert (got["hard_warning"] == False).all()  # noqa: E712 (no hard_warning column: none)
    three = score_frame(family, frame, params, trend_months=3)
    assert (three["arpu_3m"] == 999.0).all()


def test_drift_bins_are_each_monitored_value_s_bin_in_the_profile(family):
    frame = _planted(500, 5).drop(columns="is_churn")
    frame.loc[:9, "overdue_days_m0"] = np.nan
    got = score_frame(family, frame, ScoreParams(), trend_months=3)
    profile = family.drift
    bins = np.vstack(got["drift_bins"].to_list())
    assert bins.shape == (len(frame), len(profile.columns))
    values = {"score": got["churn_probability"].to_numpy()}
    values.update({c: frame[c].to_numpy(dtype=float) for c in profile.columns if c != "score"})
    for i, column in enumerate(profile.columns):
        v, edges = values[column], profile.edges[column]
        # independently: how many inner edges lie at or below the value; nulls in the last bin
        want = np.where(np.isnan(v), len(edges) + 1, (edges[None, :] <= v[:, None]).sum(axis=1))
        np.testing.assert_array_equal(bins[:, i], want, err_msg=column)
    assert drift_bins(None, {}, 3) == [[], [], []]


def test_drift_psi_of_planted_counts():
    rng = np.random.default_rng(6)
    profile = DriftProfile.fit({"a": rng.normal(size=1000), "b": rng.uniform(size=1000)}, bins=4)
    e = profile.expected["b"]  # training shares: four quartile bins and an empty null bin
    np.testing.assert_allclose(e, [0.25, 0.25, 0.25, 0.25, 0.0])
    # the training shares themselves: PSI 0; every row in the first bin: the textbook sum by hand
    same = [(1, b, int(share * 400)) for b, share in enumerate(e) if share]
    shifted = [(1, 0, 400)]
    floor = 1e-4
    by_hand = (1 - 0.25) * np.log(1 / 0.25) + 3 * (floor - 0.25) * np.log(floor / 0.25) + 0.0
    assert drift_psi(profile, same)["b"] == pytest.approx(0.0, abs=1e-12)
    got = drift_psi(profile, shifted)
    assert got["b"] == pytest.approx(by_hand, rel=1e-9)
    assert np.isnan(got["a"])  # no row counted for column 0
