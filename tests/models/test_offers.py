"""Offer matching on literal and random small cases: policy, optimum vs brute force, greedy, prices."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from models.offers import (
    contract_state,
    holdout,
    net_values,
    policy_reasons,
    solve_exact,
    solve_greedy,
    solve_lagrangian,
)
from models.params import Offer, OfferEligibility, OfferParams


def _brute_force(values: np.ndarray, params: OfferParams) -> float:
    n, m = values.shape
    cost = np.array([o.cost for o in params.offers])
    cap = [np.inf if o.capacity is None else o.capacity for o in params.offers]
    best = 0.0
    for combo in itertools.product(range(-1, m), repeat=n):
        c = np.array(combo)
        rows = c >= 0
        if cost[c[rows]].sum() > params.budget + 1e-9 or any((c == j).sum() > cap[j] for j in range(m)):
            continue
        total = values[np.flatnonzero(rows), c[rows]].sum()
        if np.isfinite(total):
            best = max(best, float(total))
    return best


def test_the_solver_finds_the_brute_force_optimum_and_beats_greedy():
    rng = np.random.default_rng(5)
    strictly_better = 0
    for _ in range(25):
        offers = tuple(
            Offer(
                id=f"o{j}",
                channel="sms",
                cost=float(rng.integers(1, 10)),
                capacity=int(rng.integers(1, 4)),
                effect=0.1,
            )
            for j in range(3)
        )
        params = OfferParams(offers=offers, budget=float(rng.integers(5, 25)))
        values = rng.normal(3, 4, (6, 3))
        values[rng.random((6, 3)) < 0.2] = -np.inf
        exact, greedy = solve_exact(values, params), solve_greedy(values, params)
        lagrangian = solve_lagrangian(values, params)
        assert exact.total == pytest.approx(_brute_force(values, params), abs=1e-6)
        assert greedy.total <= exact.total + 1e-9 and lagrangian.total <= exact.total + 1e-9
        assert lagrangian.bound >= exact.total - 1e-6  # prices bound the optimum from above
        strictly_better += exact.total > greedy.total + 1e-9
        for a in (exact, greedy, lagrangian):
            chosen = a.offer[a.offer >= 0]
            assert sum(offers[c].cost for c in chosen) <= params.budget + 1e-9
            assert all((chosen == j).sum() <= offers[j].capacity for j in range(3))
    assert strictly_better > 0  # the cases are hard enough for greedy to miss the optimum


def test_lagrangian_is_near_the_optimum_on_a_larger_case():
    rng = np.random.default_rng(1)
    values = rng.normal(-2, 6, (3000, 8))
    values[rng.random(values.shape) < 0.5] = -np.inf
    params = OfferParams(budget=800)
    exact, lagrangian = solve_exact(values, params), solve_lagrangian(values, params)
    assert lagrangian.total <= exact.total <= lagrangian.bound + 1e-6
    assert lagrangian.total >= 0.97 * exact.total


def _lines() -> pd.DataFrame:
    base = {
        "churn_probability": 0.4,
        "risk_band": "high",
        "cohort": "established",
        "value_tier": "high",
        "churn_type": "service_issue",
        "usage_segment": "voice-heavy",
        "arpu_3m": 50.0,
        "plan_type": "postpaid",
        "contract_state": "in_contract",
        "marketing_consent": True,
        "cooling_down": False,
        "open_complaint": False,
    }
    changes = [
        {},  # a candidate
        {"marketing_consent": False},
        {"cooling_down": True},
        {"value_tier": "unprofitable"},
        {"risk_band": "low", "churn_probability": 0.01},
        # only the sales-like roaming pack fits
        {"churn_type": "roaming_cost", "cohort": "new", "value_tier": "low", "open_complaint": True},
        {"churn_type": "contract_expiry", "cohort": "new", "value_tier": "low"},  # nothing fits
        {
            "churn_probability": 0.06,
            "risk_band": "medium",
            "arpu_3m": 6.0,
        },  # fits, but worth less than it costs
        {"marketing_consent": None},  # unknown consent is no consent
    ]
    return pd.DataFrame([{"subscriber_id": f"s{i}", **base, **c} for i, c in enumerate(changes)])


def test_policy_reasons_in_order_and_values_only_for_candidates():
    # without the free add-on (open to every line) a line can fit no offer at all
    params = OfferParams(offers=tuple(o for o in OfferParams().offers if o.id != "free_addon"))
    frame = _lines()
    values = net_values(frame, params)
    reason, usable = policy_reasons(frame, params, values)
    assert list(reason) == [
        None,
        "no_consent",
        "cooling_down",
        "unprofitable",
        "below_value",
        "open_complaint",
        "not_eligible",
        "below_value",
        "no_consent",
    ]
    assert np.isfinite(usable[0]).any() and not np.isfinite(usable[1:]).any()
    ids = [o.id for o in params.offers]
    # the service-recovery call: 0.4 x 0.20 x 50 x 12 - 4 = 44
    assert usable[0, ids.index("service_recovery")] == pytest.approx(0.4 * 0.20 * 50 * 12 - 4)
    # a measured effect replaces the prior
    measured = net_values(frame, params, {"service_recovery": 0.05})
    assert measured[0, ids.index("service_recovery")] == pytest.approx(0.4 * 0.05 * 50 * 12 - 4)


def test_eligibility_rules_and_contract_states():
    state = contract_state(
        pd.Series([False, True, True, True]),
        pd.Series([False, True, False, False]),
        pd.Series([None, -2, 2, 10]),
    )
    assert list(state) == ["no_contract", "out_of_contract", "expiring", "in_contract"]
    offer = Offer(
        id="x",
        channel="call",
        cost=1,
        effect=0.5,
        eligibility=OfferEligibility(
            plan_types=("postpaid",), contract_states=("expiring",), usage_segments=("roamer",)
        ),
    )
    params = OfferParams(offers=(offer,))
    frame = _lines().head(1)
    assert not np.isfinite(net_values(frame, params)).any()
    frame = frame.assign(contract_state="expiring", usage_segment="roamer 2")
    assert np.isfinite(net_values(frame, params)).all()


def test_holdout_is_stratified_exact_and_reproducible():
    rng = np.random.default_rng(2)
    ids = pd.Series([f"s{i}" for i in range(5000)])
    strata = pd.Series(rng.choice(["new/high", "new/medium", "established/high"], 5000, p=[0.1, 0.3, 0.6]))
    held = holdout(ids, strata, "2024-06", "salt", 0.1)
    for s in strata.unique():
        rows = (strata == s).to_numpy()
        assert held[rows].sum() == round(0.1 * rows.sum())
    again = holdout(ids.sample(frac=1, random_state=1).sort_index(), strata, "2024-06", "salt", 0.1)
    assert (again == held).all()
    other_month = holdout(ids, strata, "2024-07", "salt", 0.1)
    assert (other_month != held).any()


def test_campaign_effect_intervals_cover_the_true_effect_and_shrinkage_follows_evidence():
    from models.evaluation import campaign_effect, shrunk_effect

    rng = np.random.default_rng(4)
    covered = 0
    for _ in range(300):
        t = int((rng.random(2000) < 0.10).sum())  # treated churn 10 %
        h = int((rng.random(500) < 0.30).sum())  # held-out churn 30 %: the offer prevents 0.2
        e = campaign_effect(2000, t, 500, h)
        covered += e["effect_low"] <= 0.2 <= e["effect_high"]
    assert 0.91 <= covered / 300 <= 0.99  # a 95 % interval
    e = campaign_effect(1000, 100, 1000, 300)
    assert e["effect"] == pytest.approx(0.2) and e["relative_effect"] == pytest.approx(2 / 3)
    # thin evidence stays near the prior, a large comparison moves to the measurement
    assert shrunk_effect(2 / 3, 20, 5, 0.1, 200) == pytest.approx((4 * 2 / 3 + 100 * 0.1) / 104)
    assert abs(shrunk_effect(2 / 3, 100_000, 100_000, 0.1, 200) - 2 / 3) < 0.002
    assert shrunk_effect(float("nan"), 10, 0, 0.1, 200) == 0.1


def test_binned_metrics_equal_the_line_level_metrics():
    from models.evaluation import binned_metrics
    from models.metrics import classification_metrics

    rng = np.random.default_rng(6)
    p = np.round(rng.beta(1, 12, 20000), 4)
    y = rng.random(20000) < p
    bins = (
        pd.DataFrame({"probability": p, "churners": y.astype(int), "stayers": (~y).astype(int)})
        .groupby("probability", as_index=False)
        .sum()
    )
    got, want = binned_metrics(bins), classification_metrics(y, p)
    for metric in ("rows", "churn_rate", "roc_auc", "pr_auc", "brier", "top_decile_lift", "empc"):
        assert got[metric] == pytest.approx(want[metric], rel=1e-9), metric
