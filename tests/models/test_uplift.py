"""Uplift models on synthetic randomised experiments whose truth is known: a ``pack`` offer (sales-like)
that pushes out sleeping dogs (out of contract and low usage, riskier than the rest, so the rule targets
them) and keeps the others in proportion to their risk, and a ``care`` offer whose effect is
proportional to the risk everywhere (the rule's assumption). The Qini is checked on hand-computed curves
and against scikit-uplift."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklift.metrics import qini_auc_score

from models.offers import net_values, solve_exact, value_of_save
from models.params import Offer, OfferParams, UpliftParams
from models.uplift import (
    compare_rankings,
    fit_uplift,
    qini_coefficient,
    qini_curve,
    realised_value,
    resolve_features,
    uplift_decision,
)

OFFERS = ("pack", "care")
PARAMS = UpliftParams()
COST = {"pack": 3.0, "care": 5.0}
HORIZON = 12  # value of a save: arpu_3m x 12 months (margin 1)


def synthetic_lines(n: int, seed: int, *, heterogeneous: bool = True) -> pd.DataFrame:
    """Candidate lines with their true effect of each offer (absolute churn reduction).

    Half the lines are out of contract (riskier), half have low usage; out of contract with low usage
    is a sleeping dog: ``pack`` raises its churn by 0.3 and lowers everyone else's by 0.6 x risk.
    ``care`` lowers churn by 0.3 x risk everywhere. ``heterogeneous=False``: ``pack`` too.
    """
    rng = np.random.default_rng(seed)
    out_of_contract = rng.random(n) < 0.5
    low_usage = rng.random(n) < 0.5
    p = np.clip(rng.beta(2, 8, n) + 0.15 * out_of_contract, 0.01, 0.9)
    sleeping = out_of_contract & low_usage
    return pd.DataFrame(
        {
            "subscriber_id": [f"s{seed}-{i}" for i in range(n)],
            "churn_probability": p,
            "arpu_3m": rng.uniform(10, 60, n),
            "contract_state": np.where(out_of_contract, "out_of_contract", "in_contract").astype(object),
            "out_events_avg_3m": np.where(low_usage, rng.uniform(5, 40, n), rng.uniform(60, 300, n)),
            "churn_type": rng.choice(np.array(["usage_decline", "price_sensitivity"], dtype=object), n),
            "sleeping_dog": sleeping,
            "effect_pack": np.where(sleeping, -0.3, 0.6 * p) if heterogeneous else 0.3 * p,
            "effect_care": 0.3 * p,
        }
    )


def synthetic_experiment(
    n: int, seed: int, *, heterogeneous: bool = True, control_share: float = 0.25
) -> pd.DataFrame:
    """The lines randomised: an intended offer each, a control group, and the churn each arm realises."""
    lines = synthetic_lines(n, seed, heterogeneous=heterogeneous)
    rng = np.random.default_rng(seed + 10_000)
    offer = rng.choice(np.array(OFFERS, dtype=object), n)
    treated = rng.random(n) >= control_share
    effect = np.where(offer == "pack", lines["effect_pack"], lines["effect_care"])
    churned = rng.random(n) < np.clip(lines["churn_probability"] - treated * effect, 0, 1)
    return lines.assign(offer_id=offer, treated=treated, churned=churned)


def own_offer(effects: np.ndarray, frame: pd.DataFrame) -> np.ndarray:
    """Each line's predicted effect of its intended offer (columns in ``OFFERS`` order)."""
    return effects[np.arange(len(frame)), frame["offer_id"].map(OFFERS.index).to_numpy()]


@pytest.fixture(scope="module")
def fitted():
    return fit_uplift(synthetic_experiment(8000, 1), OFFERS, PARAMS)


# --- the Qini --------------------------------------------------------------------------------------------

# four lines: treated and retained, control and not retained, treated and not retained, control and retained
HAND = {"retained": [1, 0, 0, 1], "treated": [1, 0, 1, 0]}


def test_the_qini_curve_and_coefficient_of_hand_computed_rankings():
    y, t = np.array(HAND["retained"]), np.array(HAND["treated"])
    best = np.array([0.9, 0.8, 0.7, 0.6])
    x, q = qini_curve(y, best, t)
    # retained treated minus retained controls scaled to the treated count, after each line
    assert x.tolist() == [0, 1, 2, 3, 4] and q.tolist() == [0, 1, 1, 1, 0]
    assert qini_coefficient(y, best, t) == pytest.approx(1.0)  # area 3 of the perfect ranking's 3
    x, q = qini_curve(y, best[::-1].copy(), t)
    assert q.tolist() == [0, 0, -1, -0.5, 0]
    assert qini_coefficient(y, best[::-1].copy(), t) == pytest.approx(-1.5 / 3)
    assert math.isnan(qini_coefficient(y, best, np.ones(4)))  # no control arm


def test_the_qini_coefficient_equals_scikit_uplifts_with_ties():
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(20, 200))
        y, t = rng.integers(0, 2, n), rng.integers(0, 2, n)
        score = np.round(rng.random(n), 1)  # ties
        assert qini_coefficient(y, score, t) == pytest.approx(qini_auc_score(y, score, t), abs=1e-12)


def test_the_realised_value_compares_the_arms_within_each_month():
    # month a: controls lose 100 and 50 (mean 75), the treated lose 100 and 0 (mean 50): 4 lines x 25;
    # month b has no control line and adds nothing
    value, counted = realised_value(
        churned=np.array([1, 0, 1, 1, 1]),
        treated=np.array([True, True, False, False, True]),
        value=np.array([100.0, 50.0, 100.0, 50.0, 80.0]),
        strata=np.array(["a", "a", "a", "a", "b"]),
    )
    assert (value, counted) == (pytest.approx(100.0), 4)


# --- the model -------------------------------------------------------------------------------------------


def test_features_are_the_patterns_found_and_never_the_outcome():
    columns = ["churned", "offer_id", "out_events_avg_3m", "arpu_3m", "data_mb_avg_3m", "region"]
    assert resolve_features(columns, ["arpu_3m", "*_avg_*m", "churned"]) == [
        "arpu_3m",
        "out_events_avg_3m",
        "data_mb_avg_3m",
    ]


def test_the_effect_is_negative_on_sleeping_dogs_and_positive_on_the_others(fitted):
    lines = synthetic_lines(4000, 2)
    effect = fitted.predict_effect(lines)
    dogs = lines["sleeping_dog"].to_numpy()
    pack, care = effect[:, OFFERS.index("pack")], effect[:, OFFERS.index("care")]
    assert np.mean(pack[dogs]) < -0.05 and np.mean(pack[dogs] < 0) > 0.8
    assert np.mean(pack[~dogs]) > 0.05 and np.mean(pack[~dogs] > 0) > 0.8
    assert np.mean(care[dogs]) > 0 and np.mean(care[~dogs]) > 0  # care keeps everyone a little
    # the ranking within the persuadables follows the true effect
    assert np.corrcoef(pack[~dogs], lines["effect_pack"][~dogs])[0, 1] > 0.5


def test_a_fit_is_reproducible_and_keeps_the_offers_order(fitted):
    lines = synthetic_lines(500, 4)
    again = fit_uplift(synthetic_experiment(8000, 1), OFFERS, PARAMS)
    np.testing.assert_array_equal(fitted.predict_effect(lines), again.predict_effect(lines))
    swapped = fitted.predict_effect(lines, ["care", "unknown", "pack"])
    np.testing.assert_array_equal(swapped[:, [0, 2]], fitted.predict_effect(lines)[:, [1, 0]])
    assert np.isnan(swapped[:, 1]).all()  # an offer the model has never seen: the rule


def test_an_offer_with_too_few_lines_in_an_arm_gets_no_model_and_the_rule():
    frame = synthetic_experiment(4000, 5)
    few = (frame["offer_id"] == "care") & ~frame["treated"]
    frame = frame[~few | (np.cumsum(few) <= PARAMS.min_lines_per_arm - 1)]  # one control line too few
    model = fit_uplift(frame, OFFERS, PARAMS)
    assert model.covered() == ["pack"]
    assert model.report["offers"]["care"]["control_lines"] == PARAMS.min_lines_per_arm - 1
    lines = synthetic_lines(50, 6)
    effect = model.predict_effect(lines)
    assert np.isnan(effect[:, 1]).all() and not np.isnan(effect[:, 0]).any()
    # the matcher values the uncovered offer by the rule: churn_probability x effect
    params = OfferParams(
        offers=tuple(Offer(id=o, channel="sms", cost=COST[o], effect=0.3) for o in OFFERS), budget=1e6
    )
    frame = _candidates(lines)
    values = net_values(frame, params, uplift=effect)
    save = value_of_save(frame["arpu_3m"], params)
    np.testing.assert_allclose(values[:, 1], frame["churn_probability"] * 0.3 * save - COST["care"])
    np.testing.assert_allclose(values[:, 0], effect[:, 0] * save - COST["pack"])


@pytest.mark.parametrize("learner", ["x", "t"])
def test_both_learners_find_the_sleeping_dogs(learner):
    model = fit_uplift(synthetic_experiment(6000, 7), OFFERS, PARAMS.model_copy(update={"learner": learner}))
    lines = synthetic_lines(2000, 8)
    pack = model.predict_effect(lines)[:, 0]
    dogs = lines["sleeping_dog"].to_numpy()
    assert np.mean(pack[dogs]) < 0 < np.mean(pack[~dogs])


# --- against the rule ------------------------------------------------------------------------------------


def _compare(model, held: pd.DataFrame):
    return compare_rankings(
        held,
        {
            "uplift": own_offer(model.predict_effect(held), held),
            "rule": held["churn_probability"].to_numpy(),
        },
        held["arpu_3m"].to_numpy() * HORIZON,
        COST,
        target_share=PARAMS.target_share,
        min_lines_per_arm=PARAMS.min_lines_per_arm,
        resamples=100,
    )


def test_the_uplift_models_qini_and_value_beat_the_rules_on_held_out_lines(fitted):
    held = synthetic_experiment(8000, 9)
    comparison = _compare(fitted, held)
    pack = comparison.table.set_index("offer_id").loc["pack"]
    assert pack["qini_uplift"] > pack["qini_rule"] + 0.05
    assert pack["value_uplift"] > pack["value_rule"]
    # the truth: the realised value of the top half by each ranking, from the true effects
    value = held["arpu_3m"].to_numpy() * HORIZON
    truth = np.where(held["offer_id"] == "pack", held["effect_pack"], held["effect_care"])
    scores = {"uplift": own_offer(fitted.predict_effect(held), held), "rule": held["churn_probability"]}
    rows = (held["offer_id"] == "pack").to_numpy()
    true_value = {}
    for name, score in scores.items():
        s = np.asarray(score)[rows] * value[rows]
        top = np.argsort(-s, kind="stable")[: math.ceil(rows.sum() / 2)]
        true_value[name] = float(np.sum(truth[rows][top] * value[rows][top]))
    assert true_value["uplift"] > true_value["rule"]
    ok, reasons = uplift_decision(comparison)
    assert ok, reasons
    assert comparison.qini_gain_low > 0 and comparison.value_gain_low > 0


def test_without_heterogeneous_effects_the_rule_stays():
    """Where every line responds in proportion to its risk, the rule's ranking is the true one: the model
    cannot beat it beyond the noise, and is refused."""
    model = fit_uplift(synthetic_experiment(8000, 11, heterogeneous=False), OFFERS, PARAMS)
    comparison = _compare(model, synthetic_experiment(8000, 12, heterogeneous=False))
    ok, reasons = uplift_decision(comparison)
    assert not ok
    assert reasons[-1].startswith("not promoted")


def test_the_decision_needs_offers_to_compare():
    held = synthetic_experiment(400, 13)
    comparison = compare_rankings(
        held,
        {"uplift": np.zeros(len(held)), "rule": held["churn_probability"].to_numpy()},
        held["arpu_3m"].to_numpy(),
        COST,
        target_share=0.5,
        min_lines_per_arm=1000,
    )
    assert comparison.compared == []
    assert uplift_decision(comparison) == (
        False,
        ["no offer has enough held-out lines in both arms to compare: the rule stays"],
    )


# --- the matcher fed the predictions ---------------------------------------------------------------------


def _candidates(lines: pd.DataFrame) -> pd.DataFrame:
    """The lines as the matcher's candidates: every policy input permissive."""
    return lines.assign(
        risk_band="high",
        cohort="established",
        value_tier="medium",
        strategy="retention_offer",
        usage_segment="any",
        plan_type="postpaid",
        marketing_consent=True,
        cooling_down=False,
        open_complaint=False,
    )


def test_the_matcher_fed_the_uplift_contacts_fewer_sleeping_dogs_and_keeps_more_value(fitted):
    lines = _candidates(synthetic_lines(600, 14))
    params = OfferParams(
        offers=(
            Offer(id="pack", channel="sms", cost=COST["pack"], effect=0.3, sales_like=True),
            Offer(id="care", channel="call", cost=COST["care"], effect=0.3, capacity=100),
        ),
        budget=800.0,
        value_horizon_months=HORIZON,
        margin=1.0,
    )
    truth = lines[["effect_pack", "effect_care"]].to_numpy()
    save = value_of_save(lines["arpu_3m"], params)
    outcome = {}
    for rule, uplift in (("rule", None), ("uplift", fitted.predict_effect(lines, ["pack", "care"]))):
        assignment = solve_exact(net_values(lines, params, uplift=uplift), params)
        chosen = np.flatnonzero(assignment.offer >= 0)
        offer = assignment.offer[chosen]
        realised = truth[chosen, offer] * save[chosen] - np.array([COST["pack"], COST["care"]])[offer]
        outcome[rule] = {
            "dogs": int(lines["sleeping_dog"].to_numpy()[chosen][offer == 0].sum()),
            "value": float(realised.sum()),
            "lines": len(chosen),
        }
    assert outcome["rule"]["dogs"] > 20  # the rule sends the pack to risky sleeping dogs
    assert outcome["uplift"]["dogs"] < outcome["rule"]["dogs"] / 4
    assert outcome["uplift"]["value"] > outcome["rule"]["value"] * 1.1, outcome
