"""The targeting study's offline valuation: the simulator's expected effect of any (line, offer) pair is the
truth the campaign system itself reports and what its realised worlds average to, asking for it changes
nothing in the simulation, and the policies are picked and valued as planted by hand. No Spark."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest

from bench.loop_study import PolicyValue, evaluate_policies, random_picks, total_values
from pipelines.sample_data.campaign import expected_effect
from pipelines.sample_data.catalogue import OFFERS
from pipelines.sample_data.simulate import OperatorSimulation
from tests.conftest import TEST_CONF

MONTH = "2024-05"  # the simulation starts 2024-01: four months of history before the campaign month
GAP, WINDOW = 1, 2
# each catalogue offer through a channel the campaign system knows (its contact rate differs by channel)
CHANNELS = ("sms", "app", "call", "call_center", "store", "email")


def _simulation(seed: int = 5) -> OperatorSimulation:
    """A small base stepped to ``MONTH`` with no campaign drawn for it (the state a campaign reads)."""
    sim = OperatorSimulation(800, seed, "2024-01")
    for _ in range(4):
        sim.step(emit=False)
    sim.step(emit=False, campaign=False)
    assert sim.month_index - 1 == 4
    return sim


def _offer_list(sim: OperatorSimulation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every active line with a catalogue offer and a channel (cycled, so each offer meets each driver)."""
    sub = np.flatnonzero(sim.active[: sim.n])
    offer = np.array([OFFERS[i % len(OFFERS)] for i in range(sub.size)], dtype=object)
    channel = np.array([CHANNELS[(i // len(OFFERS)) % len(CHANNELS)] for i in range(sub.size)], dtype=object)
    return sub, offer, channel


def test_expected_effect_is_the_truth_the_campaign_reports_for_treated_lines() -> None:
    sim = _simulation()
    sub, offer, channel = _offer_list(sim)
    expected = expected_effect(sim, MONTH, 4, sub, offer, channel, gap_months=GAP, window_months=WINDOW)
    truth = sim.act_on(
        MONTH, sub, offer, np.ones(sub.size, bool), channel, gap_months=GAP, window_months=WINDOW
    )
    np.testing.assert_array_equal(expected, truth.lines["true_effect"])
    # a planted truth with something to find: lines an offer saves, and sleeping dogs it pushes out
    assert (expected > 0.05).sum() >= 5
    assert (expected < 0).sum() >= 5


def test_expected_effect_is_what_the_realised_worlds_average_to() -> None:
    """Independent of the expectation's formula: the campaign carried out in many copies of the same
    state with fresh random numbers, each line's realised effect (churn if control - churn if treated,
    from the same draws) averaged over the copies."""
    sim = _simulation()
    sub, offer, channel = _offer_list(sim)
    expected = expected_effect(sim, MONTH, 4, sub, offer, channel, gap_months=GAP, window_months=WINDOW)
    copies = 300
    realised = np.zeros(sub.size)
    for k in range(copies):
        twin = copy.deepcopy(sim)
        twin.rng = np.random.default_rng(1000 + k)
        lines = twin.act_on(
            MONTH, sub, offer, np.ones(sub.size, bool), channel, gap_months=GAP, window_months=WINDOW
        ).lines
        realised += lines["churn_if_control"].astype(float) - lines["churn_if_treated"].astype(float)
    realised /= copies
    # per line: within 5 standard errors of a mean of 300 draws of a value in [-1, 1] (sd at most 0.5)
    assert np.abs(realised - expected).max() < 5 * 0.5 / np.sqrt(copies)
    # over the lines: the total saves agree to a small fraction
    assert realised.sum() == pytest.approx(expected.sum(), rel=0.05)


def test_expected_effect_leaves_the_simulation_as_it_was() -> None:
    asked, left_alone = _simulation(), _simulation()
    sub, offer, channel = _offer_list(asked)
    rng_state = copy.deepcopy(asked.rng.bit_generator.state)
    for _ in range(3):
        expected_effect(asked, MONTH, 4, sub, offer, channel, gap_months=GAP, window_months=WINDOW)
    assert asked.rng.bit_generator.state == rng_state
    for name, value in vars(left_alone).items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(getattr(asked, name), value, err_msg=name)
    # the same campaign and the next month come out identical
    treated = np.arange(sub.size) % 3 != 0
    for sim in (asked, left_alone):
        sim.act_on(MONTH, sub, offer, treated, channel, gap_months=GAP, window_months=WINDOW)
    a, b = asked.step(emit=True), left_alone.step(emit=True)
    for source in ("subscriptions", "billing", "care", "cdr", "campaign_outcomes"):
        for column, values in getattr(b, source).items():
            _assert_same(getattr(a, source)[column], values, f"{source}.{column}")


def _assert_same(a, b, what: str) -> None:
    """Equal columns: arrays, or tuples of arrays (the CDR's dictionary-encoded columns)."""
    if isinstance(b, tuple):
        assert isinstance(a, tuple) and len(a) == len(b), what
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=what)
    else:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=what)


# ------------------------------------------------------------------------ the policies on a planted set
SAVE_VALUE = np.full(6, 100.0)
# lines x offers (A costs 10, B 20): the true expected effect; line 2 is a sleeping dog, line 5 may only
# get A
TRUTH = np.array(
    [[0.5, 0.6], [0.3, 0.1], [-0.2, -0.1], [0.15, 0.5], [0.05, 0.05], [0.4, 0.0]],
)
MASK = np.ones((6, 2), bool)
MASK[5, 1] = False


@pytest.fixture(scope="module")
def params():
    from pipelines.core.config import load_config

    offers = load_config([TEST_CONF]).offers
    a, b = offers.offers[:2]
    return offers.model_copy(
        update={
            "offers": (
                a.model_copy(update={"id": "A", "cost": 10.0, "capacity": None}),
                b.model_copy(update={"id": "B", "cost": 20.0, "capacity": None}),
            ),
            "budget": 40.0,
        }
    )


def _brute_force_best(truth: np.ndarray, save_value: np.ndarray, budget: float) -> float:
    """The best true net value of any assignment (one offer per line, within the budget), by enumeration."""
    cost = np.array([10.0, 20.0])
    best = 0.0
    for choice in itertools.product([-1, 0, 1], repeat=truth.shape[0]):
        rows = [i for i, c in enumerate(choice) if c >= 0]
        if any(not MASK[i, choice[i]] for i in rows) or sum(cost[choice[i]] for i in rows) > budget:
            continue
        best = max(best, sum(truth[i, choice[i]] * save_value[i] - cost[choice[i]] for i in rows))
    return best


def test_each_policy_is_picked_by_its_values_and_valued_by_the_truth(params) -> None:
    oracle = TRUTH * SAVE_VALUE[:, None] - np.array([10.0, 20.0])
    # the rule believes the sleeping dog (line 2) and line 4 are the lines to keep: it picks 2A, 4A and 0A
    rule = np.full((6, 2), -1.0)
    rule[2] = [50.0, 30.0]
    rule[4, 0] = 45.0
    rule[0, 0] = 5.0
    # a model that orders the pairs as the truth does (a monotone transform of it) picks what the oracle does
    uplift = 2 * oracle + 3
    out = evaluate_policies(
        {"uplift": uplift, "rule": rule, "oracle": oracle}, MASK, TRUTH, SAVE_VALUE, params
    )

    best = _brute_force_best(TRUTH, SAVE_VALUE, 40.0)
    assert best == pytest.approx(100.0)  # 0A + 5A + 3B, by hand: 40 + 30 + 30 at a cost of 40
    assert out["oracle"] == PolicyValue(
        lines=3, cost=40.0, saves=pytest.approx(1.4), net_value=pytest.approx(100.0)
    )
    assert out["uplift"] == out["oracle"]
    # the rule's picks at their true value: -30 (the sleeping dog) - 5 + 40, for a cost of 30
    assert out["rule"] == PolicyValue(
        lines=3, cost=30.0, saves=pytest.approx(0.35), net_value=pytest.approx(5.0)
    )
    assert out["rule"].net_per_cost == pytest.approx(5.0 / 30.0)
    for name in ("uplift", "rule", "random"):
        assert out[name].net_value <= out["oracle"].net_value + 1e-9
    # random spends the whole budget (costs of 10 and 20 always add up to 40 before the lines run out)
    assert out["random"].cost == pytest.approx(40.0)
    assert out["random"].net_value < out["oracle"].net_value


def test_random_targeting_spends_the_budget_within_capacities_and_eligibility(params) -> None:
    capped = params.model_copy(
        update={"offers": (params.offers[0].model_copy(update={"capacity": 2}), params.offers[1])}
    )
    for seed in range(20):
        offer = random_picks(MASK, capped, np.random.default_rng(seed))
        picked = np.flatnonzero(offer >= 0)
        assert MASK[picked, offer[picked]].all()
        assert (offer == 0).sum() <= 2
        spend = 10.0 * (offer == 0).sum() + 20.0 * (offer == 1).sum()
        assert spend <= 40.0
        # nothing left fits: a free line's eligible offer with room would exceed the budget
        free = offer < 0
        room_a = (offer == 0).sum() < 2 and (free & MASK[:, 0]).any()
        assert not (room_a and spend + 10.0 <= 40.0)
        assert not ((free & MASK[:, 1]).any() and spend + 20.0 <= 40.0)


def test_totals_sum_the_months_that_targeted() -> None:
    month = {"uplift": {"lines": 2, "cost": 30.0, "saves": 1.0, "net_value": 70.0}}
    rows = [
        {"month": "2024-06", "policies": month},
        {
            "month": "2024-07",
            "policies": {"uplift": {"lines": 1, "cost": 10.0, "saves": 0.1, "net_value": -5.0}},
        },
        {"month": "2024-01", "note": "no warning list"},
    ]
    total = total_values(rows)
    assert total["uplift"] == {
        "lines": 3,
        "cost": 40.0,
        "saves": 1.1,
        "net_value": 65.0,
        "net_per_cost": 65.0 / 40.0,
    }


def test_the_docs_page_shows_the_committed_run() -> None:
    """docs/loop-study.md's totals are the committed JSON's (the page names the file it is from)."""
    import json
    import re

    from tests.conftest import ROOT

    page = (ROOT / "docs" / "loop-study.md").read_text()
    name = re.search(r"bench/results/(loop-study-\d{8}-\d{4}\.json)", page).group(1)
    result = json.loads((ROOT / "bench" / "results" / name).read_text())
    rows = {line.split("|")[1].strip(" *"): line for line in page.splitlines() if line.startswith("| ")}
    for policy, label in (("uplift", "uplift"), ("rule", "rule"), ("random", "random"), ("oracle", "oracle")):
        total = result["total"][policy]
        cells = [c.strip(" *") for c in rows[label].split("|")[2:6]]
        assert cells == [
            f"{total['net_per_cost']:.2f}",
            f"{total['net_value']:,.0f}",
            f"{total['cost']:,.0f}",
            f"{total['lines']:,.0f}",
        ]
