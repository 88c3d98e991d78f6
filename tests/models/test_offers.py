"""Offer matching on literal and random small cases: policy, optimum vs brute force, greedy, and the
price step and bound of the price path (the Spark half of that path is tested in test_match_offers)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from models.offers import (
    OfferEffects,
    contract_state,
    control_size,
    dual_bound,
    lp_bound,
    net_values,
    policy_reasons,
    solve_exact,
    solve_greedy,
    update_prices,
    value_of_save,
)
from models.params import Offer, OfferEligibility, OfferParams


def brute_force_optimum(values: np.ndarray, params: OfferParams) -> float:
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


def random_case(rng: np.random.Generator) -> tuple[np.ndarray, OfferParams]:
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
    values = rng.normal(3, 4, (6, 3))
    values[rng.random((6, 3)) < 0.2] = -np.inf
    return values, OfferParams(offers=offers, budget=float(rng.integers(5, 25)))


def test_the_solver_finds_the_brute_force_optimum_and_beats_greedy():
    rng = np.random.default_rng(5)
    strictly_better = 0
    for _ in range(25):
        values, params = random_case(rng)
        exact, greedy = solve_exact(values, params), solve_greedy(values, params)
        ratio = solve_greedy(values, params, by="ratio")
        optimum = brute_force_optimum(values, params)
        assert exact.total == pytest.approx(optimum, abs=1e-6)
        assert max(greedy.total, ratio.total) <= exact.total + 1e-9
        assert lp_bound(values, params) >= optimum - 1e-6  # the relaxation bounds the optimum
        strictly_better += exact.total > greedy.total + 1e-9
        for a in (exact, greedy, ratio):
            chosen = a.offer[a.offer >= 0]
            assert sum(params.offers[c].cost for c in chosen) <= params.budget + 1e-9
            assert all((chosen == j).sum() <= params.offers[j].capacity for j in range(3))
            assert np.isfinite(values[np.flatnonzero(a.offer >= 0), chosen]).all()  # only eligible pairs
    assert strictly_better > 0  # the cases are hard enough for greedy to miss the optimum


def test_any_prices_bound_the_brute_force_optimum_from_above():
    rng = np.random.default_rng(8)
    for _ in range(25):
        values, params = random_case(rng)
        costs = np.array([o.cost for o in params.offers])
        prices, mu = rng.uniform(0, 6, 3), float(rng.uniform(0, 1))
        # each line's best reduced value at these prices, or nothing
        reduced = np.maximum(0.0, (values - prices - mu * costs).max(axis=1)).sum()
        optimum = brute_force_optimum(values, params)
        assert dual_bound(float(reduced), prices, mu, params) >= optimum - 1e-9
    # prices x capacities + mu x budget, unlimited offers carrying no price
    params = OfferParams(
        offers=(
            Offer(id="a", channel="call", cost=2.0, capacity=3, effect=0.1),
            Offer(id="b", channel="sms", cost=1.0, effect=0.1),
        ),
        budget=10.0,
    )
    assert dual_bound(7.0, np.array([2.0, 5.0]), 0.5, params) == pytest.approx(7 + 2 * 3 + 0.5 * 10)


def test_prices_rise_where_over_used_and_fall_where_there_is_room():
    params = OfferParams(
        offers=(
            Offer(id="a", channel="call", cost=1.0, capacity=2, effect=0.1),
            Offer(id="b", channel="call", cost=1.0, capacity=5, effect=0.1),
            Offer(id="c", channel="sms", cost=1.0, effect=0.1),
        ),
        budget=20.0,
    )
    prices, mu = update_prices(np.array([1.0, 1.0, 3.0]), 0.0, np.array([4.0, 1.0, 7.0]), 30.0, params, 0.5)
    # a: 1 + 0.5 x (4 - 2) / 2; b: 1 + 0.5 x (1 - 5) / 5; c has no capacity, so no price. The step scales
    # with the largest price (3) ...
    assert prices == pytest.approx([1 + 0.5 * 3 * 2 / 2, max(0.0, 1 + 0.5 * 3 * -4 / 5), 0.0])
    # ... and the budget's price starts from 0.01 when the spend is over the budget
    assert mu == pytest.approx(0.5 * 0.01 * (30 - 20) / 20)
    under, mu_under = update_prices(
        np.array([0.5, 0.0, 0.0]), 0.2, np.array([1.0, 0.0, 0.0]), 5.0, params, 1.0
    )
    assert under == pytest.approx([0.5 - 1 / 2, 0.0, 0.0])  # never below zero
    assert mu_under == pytest.approx(max(0.0, 0.2 + 0.2 * (5 - 20) / 20))


def _lines() -> pd.DataFrame:
    base = {
        "churn_probability": 0.4,
        "risk_band": "high",
        "cohort": "established",
        "value_tier": "high",
        "strategy": "strongest_retention",
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
    policy = policy_reasons(frame, params, values)
    reason, usable = policy.reason, policy.usable
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
    # values (and exploration) only for the candidate and the line no offer is worth its cost to
    assert [bool(np.isfinite(row).any()) for row in usable] == [i in (0, 7) for i in range(9)]
    assert (policy.explorable == np.isfinite(usable)).all() and not (usable[7] > 0).any()
    ids = [o.id for o in params.offers]
    # the service-recovery call: 0.4 x 0.20 x 50 x 12 - 4 = 44
    assert usable[0, ids.index("service_recovery")] == pytest.approx(0.4 * 0.20 * 50 * 12 - 4)
    # a measured effect replaces the prior; the margin scales the value of a save
    measured = net_values(frame, params, OfferEffects({"service_recovery": 0.05}))
    assert measured[0, ids.index("service_recovery")] == pytest.approx(0.4 * 0.05 * 50 * 12 - 4)
    half = params.model_copy(update={"margin": 0.5})
    assert net_values(frame, half)[0, ids.index("service_recovery")] == pytest.approx(
        0.4 * 0.20 * 50 * 12 * 0.5 - 4
    )
    assert value_of_save(np.array([50.0, np.nan]), half).tolist() == [300.0, 0.0]


def test_an_offer_measured_to_harm_a_segment_is_not_offered_there():
    params = OfferParams()
    frame = pd.concat([_lines().head(1)] * 2, ignore_index=True).assign(cohort=["new", "established"])
    ids = [o.id for o in params.offers]
    harm = OfferEffects({}, frozenset({("free_addon", "cohort", "new")}))
    plain, harmed = net_values(frame, params), net_values(frame, params, harm)
    j = ids.index("free_addon")
    assert np.isfinite(plain[:, j]).all()
    assert not np.isfinite(harmed[0, j]) and harmed[1, j] == plain[1, j]
    others = [k for k in range(len(ids)) if k != j]
    assert np.array_equal(harmed[:, others], plain[:, others])


def test_control_size_meets_the_minimum_where_the_offer_has_lines_for_it():
    params = OfferParams(holdout_rate=0.1, min_control_lines=30, max_control_share=0.5)
    assert control_size(1000, params) == 100  # the rate
    assert control_size(100, params) == 30  # raised to the minimum: 30 of 100 is within half
    assert control_size(60, params) == 30  # exactly half
    assert control_size(59, params) == 6  # too few lines: the rate, and the offer is underpowered
    assert control_size(5, params) == 1  # halves round up
    assert control_size(4, params) == 0


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
    # the strategy matrix: an offer serving other cells is not for this line
    cells = OfferParams(
        offers=(offer.model_copy(update={"eligibility": OfferEligibility(strategies=("x",))}),)
    )
    assert not np.isfinite(net_values(frame, cells)).any()
    assert np.isfinite(net_values(frame.assign(strategy="x"), cells)).all()
