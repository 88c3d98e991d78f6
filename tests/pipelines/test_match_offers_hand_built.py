"""Match offers on hand-built inputs: a month with every exclusion reason and a non-default complaint
window; the Spark price path against brute force; the repair's capacity and budget cut; the control group
against hashes computed here. The stage on a generated, scored lake is in ``test_match_offers.py``."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from models.offers import solve_exact
from models.params import Offer, OfferParams
from pipelines.core.config import load_config
from pipelines.core.lake import Lake
from pipelines.match_offers import (
    control_sizes,
    drawn_underpowered,
    explore,
    match_offers_month,
    remaining,
    repair_picks,
    solve_in_spark,
    with_holdout,
)
from tests.conftest import TEST_CONF
from tests.models.test_offers import brute_force_optimum, random_case

MONTH = "2024-05"


def _frame(spark: SparkSession, rows: list[dict[str, Any]], ddl: str) -> DataFrame:
    """Rows by column name (a missing key is null) in the schema ``ddl``."""
    names = [f.name for f in spark.createDataFrame([], ddl).schema.fields]
    return spark.createDataFrame([tuple(r.get(n) for n in names) for r in rows], ddl)


# --- a hand-built month --------------------------------------------------------------------------------

WARNING_DDL = (
    "score_month string, subscriber_id string, churn_probability double, arpu_3m double, churn_type string, "
    "value_tier string, strategy string, cohort string, risk_band string, usage_segment string, "
    "model_version string, run_id string"
)
FEATURES_DDL = (
    "month string, subscriber_id string, plan_type string, marketing_consent boolean, has_contract boolean, "
    "out_of_contract boolean, months_to_contract_end int, unresolved_complaints_3m long, "
    "unresolved_complaints_4m long"
)
# one sales-like offer (suppressed while a complaint is open), worth 0.5 x p x 12 x arpu - 10; the budget
# pays for two
HAND_OFFERS = {
    "offers": {
        "budget": 20.0,
        "holdout_rate": 0.0,
        "programme_holdout_rate": 0.0,
        "exploration_rate": 0.0,
        "min_band": "low",
        "value_horizon_months": 12,
        "offers": [{"id": "pack", "channel": "sms", "cost": 10.0, "effect": 0.5, "sales_like": True}],
    }
}


def _hand_lake(spark: SparkSession, tmp_path) -> Lake:
    """A lake holding the hand-built month (its config: ``.cfg``)."""
    overlay = tmp_path / "offers.yml"
    overlay.write_text(yaml.safe_dump(HAND_OFFERS))
    cfg = load_config(
        [TEST_CONF, overlay],
        [f"lake.root={tmp_path / 'lake'}", f"landing.root={tmp_path / 'landing'}", "features.trend_months=4"],
    )
    lake = Lake(spark, cfg)
    line = {
        "score_month": MONTH,
        "month": MONTH,
        "churn_type": "service_issue",
        "value_tier": "high",
        "strategy": "care",
        "cohort": "established",
        "risk_band": "high",
        "usage_segment": "voice-heavy",
        "model_version": "1",
        "run_id": "r",
        "plan_type": "postpaid",
        "marketing_consent": True,
        "has_contract": True,
        "out_of_contract": False,
        "months_to_contract_end": 10,
        "unresolved_complaints_3m": 0,
        "unresolved_complaints_4m": 0,
    }
    lines = {
        "s1": {"churn_probability": 0.5, "arpu_3m": 10.0},  # 0.5 x 0.5 x 120 - 10 = 20
        "s2": {"churn_probability": 0.5, "arpu_3m": 10.0, "marketing_consent": False},
        "s3": {"churn_probability": 0.5, "arpu_3m": 10.0, "unresolved_complaints_4m": 1},
        # a complaint before the 4-month window only: no open complaint; 0.4 x 0.5 x 240 - 10 = 38
        "s4": {"churn_probability": 0.4, "arpu_3m": 20.0, "unresolved_complaints_3m": 2},
        "s5": {"churn_probability": 0.5, "arpu_3m": 10.0},  # contacted in 2024-04
        "s6": {"churn_probability": 0.05, "arpu_3m": 10.0},  # 3 - 10: worth less than it costs
        "s7": {"churn_probability": 0.5, "arpu_3m": 10.0},  # assigned an offer in 2024-03
        # assigned in 2024-01, before the 3 cooldown months; 0.3 x 0.5 x 120 - 10 = 8: left out for budget
        "s8": {"churn_probability": 0.3, "arpu_3m": 10.0},
        "s9": {"churn_probability": 0.5, "arpu_3m": 10.0},  # in 2024-03's control group: untouched
        # in 2024-04's programme hold-out: never contacted, so nothing to cool down from
        "s10": {"churn_probability": 0.05, "arpu_3m": 10.0},
    }
    rows = [{**line, "subscriber_id": s, **c} for s, c in lines.items()]
    lake.write(_frame(spark, rows, WARNING_DDL), "warning_list", partition_by=["score_month"])
    lake.write(_frame(spark, rows, FEATURES_DDL), "features_monthly", partition_by=["month"])
    subscriptions = [{"month": MONTH, "subscriber_id": s, "msisdn": f"m{s}"} for s in lines]
    lake.write(
        _frame(spark, subscriptions, "month string, subscriber_id string, msisdn string"), "subscriptions"
    )
    lake.write(
        _frame(
            spark,
            [{"campaign_month": "2024-04", "subscriber_id": "s5", "contacted": True}],
            "campaign_month string, subscriber_id string, contacted boolean",
        ),
        "campaign_outcomes",
    )
    earlier = [
        {"score_month": "2024-03", "subscriber_id": "s7", "status": "assigned"},
        {"score_month": "2024-01", "subscriber_id": "s8", "status": "assigned"},
        {"score_month": "2024-03", "subscriber_id": "s9", "status": "holdout", "intended_offer_id": "pack"},
        {"score_month": "2024-04", "subscriber_id": "s10", "status": "holdout"},
    ]
    lake.write(
        _frame(
            spark,
            earlier,
            "score_month string, subscriber_id string, status string, intended_offer_id string",
        ),
        "offer_assignments",
        partition_by=["score_month"],
    )
    return lake


def test_a_hand_built_month_gets_every_reason_with_a_four_month_complaint_window(spark, tmp_path):
    lake = _hand_lake(spark, tmp_path)
    report = match_offers_month(spark, lake.cfg, MONTH)
    got = (
        lake.read("offer_assignments")
        .where(F.col("score_month") == MONTH)
        .select(
            "subscriber_id", "status", "exclusion_reason", "offer_id", "expected_net_value", "cost", "msisdn"
        )
        .toPandas()
        .sort_values("subscriber_id")
        .set_index("subscriber_id")
    )
    assigned, excluded = ("assigned", None, "pack"), ("excluded",)
    want = {
        "s1": (*assigned, 20.0, 10.0, "ms1"),
        "s2": (*excluded, "no_consent", None, None, None, None),
        "s3": (*excluded, "open_complaint", None, None, None, None),
        "s4": (*assigned, 38.0, 10.0, "ms4"),
        "s5": (*excluded, "cooling_down", None, None, None, None),
        "s6": (*excluded, "below_value", None, None, None, None),
        "s7": (*excluded, "cooling_down", None, None, None, None),
        "s8": (*excluded, "budget", None, 8.0, None, None),
        "s9": (*excluded, "cooling_down", None, None, None, None),
        "s10": (*excluded, "below_value", None, None, None, None),
    }
    assert list(got.index) == sorted(want)
    for s, (status, reason, offer, value, cost, msisdn) in want.items():
        row = got.loc[s].map(lambda v: None if pd.isna(v) else v)
        assert (row["status"], row["exclusion_reason"], row["offer_id"], row["msisdn"], row["cost"]) == (
            status,
            reason,
            offer,
            msisdn,
            cost,
        ), s
        assert row["expected_net_value"] == (None if value is None else pytest.approx(value)), s
    assert (report.method, report.candidates, report.assigned, report.holdout) == ("exact", 3, 2, 0)
    assert report.spend == 20.0 and report.total_value == pytest.approx(58.0)


# --- the Spark price path, its repair, the control group ---------------------------------------------------


def _candidates(spark: SparkSession, values: np.ndarray) -> DataFrame:
    rows = [
        (f"s{i}", [None if not np.isfinite(v) else float(v) for v in row]) for i, row in enumerate(values)
    ]
    return spark.createDataFrame(rows, "subscriber_id string, offer_values array<double>")


def _check_feasible(picked: pd.DataFrame, values: np.ndarray, params: OfferParams) -> float:
    """The total value of ``picked`` counted from ``values``, after checking it keeps every constraint."""
    rows = picked["subscriber_id"].str[1:].astype(int).to_numpy()
    offers = picked["offer_index"].to_numpy()
    assert len(set(rows)) == len(rows)  # one offer per line
    assert sum(params.offers[o].cost for o in offers) <= params.budget + 1e-9
    for j, o in enumerate(params.offers):
        assert o.capacity is None or (offers == j).sum() <= o.capacity
    chosen = values[rows, offers]
    assert np.isfinite(chosen).all()  # only offers the line may get
    assert picked["expected_net_value"].to_numpy() == pytest.approx(chosen)
    return float(chosen.sum())


def test_the_price_path_in_spark_is_feasible_below_the_optimum_and_its_bound_above(spark):
    rng = np.random.default_rng(5)
    for _ in range(3):
        values, params = random_case(rng)
        params = params.model_copy(update={"lagrangian_iterations": 12})
        picked, assignment = solve_in_spark(_candidates(spark, values), params)
        total = _check_feasible(picked.toPandas(), values, params)
        optimum = brute_force_optimum(values, params)
        assert assignment.total == pytest.approx(total)
        assert total <= optimum + 1e-9 <= assignment.bound + 2e-9


def test_the_price_path_in_spark_is_near_the_optimum_on_a_larger_case(spark):
    params = OfferParams(budget=800)
    rng = np.random.default_rng(1)
    values = rng.normal(-2, 6, (2000, len(params.offers)))
    values[rng.random(values.shape) < 0.5] = -np.inf
    picked, assignment = solve_in_spark(_candidates(spark, values), params)
    exact = solve_exact(values, params)
    total = _check_feasible(picked.toPandas(), values, params)
    assert total <= exact.total <= assignment.bound + 1e-6
    assert total >= 0.97 * exact.total


def test_repair_cuts_each_offer_to_capacity_then_keeps_the_best_prefix_within_the_budget(spark):
    params = OfferParams(
        offers=(
            Offer(id="call", channel="call", cost=5.0, capacity=2, effect=0.1),
            Offer(id="sms", channel="sms", cost=1.0, effect=0.1),
        ),
        budget=8.0,
    )
    picks = spark.createDataFrame(
        [("s0", 1, 10.0), ("s1", 0, 10.0), ("s2", 0, 9.0), ("s3", 0, 9.5), ("s4", 1, 7.0), ("s5", 1, 6.0)],
        "subscriber_id string, offer_index int, expected_net_value double",
    )
    kept = sorted(r.subscriber_id for r in repair_picks(picks, params).collect())
    # capacity: the call keeps s1 (10) and s3 (9.5), not s2 (9); then by value (ties by id): s0 (spend 1),
    # s1 (6), s3 (11 > 8) ends the prefix, so s4 and s5 are out though each would still fit
    assert kept == ["s0", "s1"]


VALUES_DDL = (
    "subscriber_id string, reason string, offer_values array<double>, unit string, "
    "programme_holdout boolean, cohort string, risk_band string"
)
PICKS_DDL = "subscriber_id string, offer_index int, expected_net_value double, arm string"


def _uniform(*parts: str) -> float:
    """``uniform_hash`` computed here: the first 13 hex digits of the SHA-256 of the parts joined by |."""
    return int(hashlib.sha256("|".join(parts).encode()).hexdigest()[:13], 16) / 16**13


def _systematic(
    lines: list[tuple[str, str, str, str]], c: int, salt: str, month: str, offer: int
) -> set[str]:
    """The control lines of one offer computed here: (subscriber, arm, cohort, band) ordered by arm, cohort,
    band and hash; every (n / c)-th from the offer's drawn start."""
    ordered = sorted(lines, key=lambda x: (x[1], x[2], x[3], _uniform(salt, month, x[0]), x[0]))
    n = len(ordered)
    start = int(_uniform(salt, month, f"offer:{offer}") * n)
    return {x[0] for p, x in enumerate(ordered) if ((p + 1) * c + start) // n > (p * c + start) // n}


def test_each_offers_control_group_is_a_systematic_draw_over_its_strata_with_halves_rounded_up(spark):
    params = OfferParams(holdout_rate=0.5, holdout_salt="pepper", min_control_lines=0)
    offers = {0: 5, 1: 4}  # picked lines per offer index
    values, picked, strata, i = [], [], {}, 0
    for offer, n in offers.items():
        for _ in range(n):
            cohort, band = ("new", "early")[i % 2], ("high", "medium")[i % 3 == 0]
            values.append((f"s{i}", None, [1.0 + i, 1.0 + i], f"s{i}", False, cohort, band))
            arm = "explore" if i == 0 else "optimised"
            picked.append((f"s{i}", offer, 1.0 + i, arm))
            strata.setdefault(offer, []).append((f"s{i}", arm, cohort, band))
            i += 1
    values += [
        ("x_consent", "no_consent", None, "x_consent", False, "new", "low"),
        ("x_unpicked", None, [1.0, 3.0], "x_unpicked", False, "new", "high"),
        ("x_programme", "programme_holdout", [2.0, 1.0], "x_programme", True, "early", "high"),
    ]
    picks = spark.createDataFrame(picked, PICKS_DDL)
    sizes, under = control_sizes(picks, params)
    assert sizes == {0: 3, 1: 2} and under == []
    out = with_holdout(spark.createDataFrame(values, VALUES_DDL), picks, MONTH, params, sizes).toPandas()
    got = out.set_index("subscriber_id")
    held = set().union(*(_systematic(strata[o], k, "pepper", MONTH, o) for o, k in sizes.items()))
    assert len(held) == 5
    assert set(got.index[got["status"] == "holdout"]) == held | {"x_programme"}
    assert set(got.index[got["status"] == "assigned"]) == {s for s, *_ in picked} - held
    assert (got.loc[list(held), "exclusion_reason"] == "holdout").all()
    assert got.loc["s0", "arm"] == "explore"
    assert (got.loc[[f"s{k}" for k in range(1, 9)], "arm"] == "optimised").all()
    assert tuple(got.loc["x_programme", ["status", "exclusion_reason"]]) == ("holdout", "programme_holdout")
    assert bool(got.loc["x_programme", "programme_holdout"]) and pd.isna(
        got.loc["x_programme", "offer_index"]
    )
    assert tuple(got.loc["x_consent", ["status", "exclusion_reason"]]) == ("excluded", "no_consent")
    unpicked = got.loc["x_unpicked"]
    assert (unpicked["status"], unpicked["exclusion_reason"], unpicked["expected_net_value"]) == (
        "excluded",
        "unassigned",
        3.0,
    )
    assert unpicked["_best_index"] == 1


def test_the_control_group_takes_each_stratum_s_share_and_gives_every_line_the_same_chance(spark):
    """One offer's 40 lines in three strata (by cohort and band: 20, 12 and 8 lines), 30% held out, over
    24 months: every month 12 controls, each stratum's share to within one line (6, 3.6, 2.4), and no line
    always or never held out (a fixed start would hold out the same positions every month)."""
    params = OfferParams(holdout_rate=0.3, holdout_salt="salt", min_control_lines=0)
    layout = [("new", "high")] * 20 + [("new", "medium")] * 12 + [("early", "high")] * 8
    values = [(f"s{i:02d}", None, [1.0], f"s{i:02d}", False, c, b) for i, (c, b) in enumerate(layout)]
    lines = [(v[0], "optimised", v[5], v[6]) for v in values]
    picks = spark.createDataFrame([(v[0], 0, 1.0, "optimised") for v in values], PICKS_DDL)
    frame = spark.createDataFrame(values, VALUES_DDL)
    times_held = dict.fromkeys((v[0] for v in values), 0)
    for m in range(24):
        month = f"{2024 + m // 12}-{m % 12 + 1:02d}"
        out = with_holdout(frame, picks, month, params, {0: 12}).toPandas()
        held = list(out.loc[out["status"] == "holdout", "subscriber_id"])
        assert len(held) == 12 and set(held) == _systematic(lines, 12, "salt", month, 0)
        for stratum in sorted(set(layout)):
            share = 0.3 * layout.count(stratum)
            got = sum(layout[int(s[1:])] == stratum for s in held)
            assert math.floor(share) <= got <= math.ceil(share), (month, stratum, got)
        for s in held:
            times_held[s] += 1
    assert min(times_held.values()) > 0 and max(times_held.values()) < 24


def test_by_household_the_lines_of_a_household_share_their_arm(spark):
    offers = (
        Offer(id="a", channel="sms", cost=1.0, effect=0.1),
        Offer(id="b", channel="sms", cost=1.0, effect=0.1),
    )
    params = OfferParams(offers=offers, holdout_rate=0.5, randomise_by="household", min_control_lines=25)
    values, picked = [], []
    for h in range(40):
        for line in range(3):
            s = f"h{h}-{line}"
            values.append((s, None, [1.0, 1.0], f"h:{h}", False, "new", "high"))
            picked.append((s, line % 2, 1.0, "optimised"))
    drawn = with_holdout(
        spark.createDataFrame(values, VALUES_DDL), spark.createDataFrame(picked, PICKS_DDL), MONTH, params, {}
    )
    out = drawn.toPandas()
    # the control sizes as they fell (offer a has two lines per household, b one): under 25 is underpowered
    held = out[out["status"] == "holdout"].groupby("offer_index").size()
    want = sorted(
        f"{o.id} ({held.get(i, 0)} of {(out['offer_index'] == i).sum()})"
        for i, o in enumerate(offers)
        if held.get(i, 0) < 25
    )
    assert drawn_underpowered(drawn, params) == want and len(want) >= 1
    arms = out.assign(household=out["subscriber_id"].str.split("-").str[0]).groupby("household")["status"]
    assert (arms.nunique() == 1).all()  # one draw per household, across its offers
    held = (arms.first() == "holdout").sum()
    assert 10 <= held <= 30  # about half of the 40 households


def test_exploration_gives_each_drawn_line_a_random_eligible_offer_within_capacity_and_budget(spark):
    offers = (
        Offer(id="a", channel="sms", cost=1.0, effect=0.1),
        Offer(id="b", channel="call", cost=4.0, capacity=5, effect=0.1),
        Offer(id="c", channel="sms", cost=2.0, effect=0.0),  # worth nothing: still explored
    )
    params = OfferParams(offers=offers, budget=1000.0, exploration_rate=0.5, exploration_max_budget_share=0.1)
    rows = [
        (f"s{i}", None if i % 3 else "below_value", [1.0, 2.0, -3.0], [0, 1, 2] if i % 2 else [2], f"s{i}")
        for i in range(400)
    ]
    rows.append(("x", "no_consent", None, None, "x"))
    values = spark.createDataFrame(
        rows,
        "subscriber_id string, reason string, offer_values array<double>, explore_offers array<int>, "
        "unit string",
    )
    got = explore(values, MONTH, params).toPandas().set_index("subscriber_id")
    eligible = {s: e for s, _, _, e, _ in rows}
    assert "x" not in got.index
    assert all(o in eligible[s] for s, o in got["offer_index"].items())
    assert (got["offer_index"] == 1).sum() <= 5
    ample = explore(values, MONTH, params.model_copy(update={"exploration_max_budget_share": 1.0}))
    wide = ample.toPandas()
    assert (wide["offer_index"] == 1).sum() == 5  # capacity
    assert 150 < len(wide) < 250  # about half the 400 explorable lines
    spend = got["offer_index"].map({0: 1.0, 1: 4.0, 2: 2.0}).sum()
    assert 100.0 - 4.0 < spend <= 100.0  # a tenth of the budget, the lowest draws first
    assert set(got["offer_index"]) == {0, 1, 2} and (got["arm"] == "explore").all()
    assert got.loc[got["offer_index"] == 2, "expected_net_value"].eq(-3.0).all()
    again = explore(values, MONTH, params).toPandas().set_index("subscriber_id")
    assert again.sort_index().equals(got.sort_index())  # reproducible
    left = remaining(params, explore(values, MONTH, params))
    assert left.budget == pytest.approx(1000.0 - spend)
    assert left.offers[1].capacity == 5 - (got["offer_index"] == 1).sum() and left.offers[0].capacity is None
