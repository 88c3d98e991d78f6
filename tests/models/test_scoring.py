"""What a score means, on literal inputs: bands, tiers, strategy, reasons, churn type, PSI, segments."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from models.monitoring import DriftProfile, psi
from models.params import ScoreParams
from models.scoring import reason_families, risk_band, strategy, top_reasons, value_tier
from models.segments import fit_segments

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


def test_top_reasons_are_the_largest_risk_raising_contributions():
    features = ["overdue_days_m0", "care_complaint_m0", "care_network_m0", "data_mb_chg_1m", "tenure_months"]
    contrib = np.array(
        [
            # care 0.5 + 0.4 outweighs overdue 0.7 as a family; the bias (last) is never a reason
            [0.7, 0.5, 0.4, -0.9, 0.1, -2.0],
            [-0.1, -0.2, -0.3, -0.4, -0.5, 3.0],  # nothing raises the risk: no reason, no type
            [0.0, 0.0, 0.0, 0.2, 0.0, -3.0],
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
    assert list(churn_type) == ["service_issue", None, "usage_decline"]


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


def _usage(n: int, seed: int) -> pd.DataFrame:
    """Three planted profiles: data-heavy, voice-heavy and roamers."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(["data", "voice", "roam"], n, p=[0.5, 0.4, 0.1])
    return pd.DataFrame(
        {
            "voice_out_min_m0": np.where(kind == "voice", 300.0, 10.0) * rng.uniform(0.8, 1.2, n),
            "data_mb_m0": np.where(kind == "data", 8000.0, 100.0) * rng.uniform(0.8, 1.2, n),
            "sms_out_m0": rng.poisson(3, n).astype(float),
            "arpu_avg_3m": rng.uniform(20, 30, n),
            "roaming_usage_share_m0": np.where(kind == "roam", 0.6, 0.0),
            "night_usage_share_m0": rng.uniform(0.1, 0.2, n),
            "out_events_ratio_avg_3m": rng.uniform(0.9, 1.1, n),
        }
    ), kind


def test_segments_find_planted_profiles_name_them_and_assign_new_rows_the_same_way():
    frame, _kind = _usage(3000, 1)
    segments = fit_segments(frame, k=3, seed=1)
    assert sorted(segments.names) == ["data-heavy", "roamer", "voice-heavy"]
    test, test_kind = _usage(500, 2)
    got = segments.assign(test)
    want = pd.Series(test_kind).map({"data": "data-heavy", "voice": "voice-heavy", "roam": "roamer"})
    assert (got == want.to_numpy()).mean() > 0.98
    assert list(segments.assign(test)) == list(got)  # deterministic
    assert fit_segments(frame.drop(columns=["night_usage_share_m0"])) is None  # no profile, no segments
