"""The simulated campaign system: its recorded true effect is what a treated-vs-control comparison of the
churn labels estimates, so the closed loop can check the evaluation against a known truth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.calendar import add_months, month_start
from models.evaluation import campaign_effect
from pipelines.sample_data.catalogue import CATALOGUE_TRUTH, DRIVERS, Reason
from pipelines.sample_data.simulate import OperatorSimulation
from pipelines.sample_data.writer import GenerateOptions, SampleOperator, read_manifest

FITTING = {  # a fitting catalogue offer per episode driver
    "usage_decline": "data_pack",
    "new_customer_fit": "free_addon",
    "competitor_pull": "family_plan",
    "contract_expiry": "renewal_device",
    "price_sensitivity": "bill_credit",
    "service_issue": "service_recovery",
}
COUNTED = (Reason.PORT_OUT, Reason.VOLUNTARY)  # counted as churn by the churn contract
EXCLUDED = (Reason.FRAUD, Reason.DECEASED)  # no label


@dataclass(frozen=True)
class Campaign:
    """What the campaign system recorded as the truth (per offer and ``all``), and the labelled lines."""

    truth: list[dict]
    lines: pd.DataFrame


def _campaign(seed: int, *, fitting: bool = True) -> Campaign:
    """Treat half of this month's lines in a risk episode (the other half is the control group), step
    through the gap month and the window, and label the lines as the churn contract would."""
    sim = OperatorSimulation(20_000, seed, "2023-10")
    for _ in range(5):
        sim.step(emit=False)
    sim.step(emit=False, campaign=False)
    month = add_months("2023-10", 5)
    rng = np.random.default_rng(seed)
    stay = sim.stayers
    sub = stay[sim.episode_start[stay] >= 0]
    offers = (
        np.array([FITTING[d] for d in DRIVERS[sim.episode_driver[sub]]], dtype=object)
        if fitting
        else np.array(sorted(CATALOGUE_TRUTH), dtype=object)[rng.integers(0, len(CATALOGUE_TRUTH), sub.size)]
    )
    treated = rng.random(sub.size) < 0.5
    channel = np.array(["sms", "call", "app"], dtype=object)[rng.integers(0, 3, sub.size)]
    truth = sim.act_on(month, sub, offers, treated, channel)
    for _ in range(2):
        sim.step(emit=False, campaign=False)
    deact = sim.deact_day[sub].astype("datetime64[M]")
    gap = np.datetime64(month_start(add_months(month, 1)), "M")
    window = deact == gap + 1
    lines = pd.DataFrame(
        {
            "offer_id": offers,
            "treated": treated,
            "churn": window & np.isin(sim.reason[sub], COUNTED),
            "labelled": (deact != gap) & ~(window & np.isin(sim.reason[sub], EXCLUDED)),
        }
    )
    return Campaign(truth, lines[lines["labelled"]])


def _measured(lines: pd.DataFrame, offer: str) -> dict[str, float]:
    part = lines if offer == "all" else lines[lines["offer_id"] == offer]
    t, h = part[part["treated"]], part[~part["treated"]]
    return campaign_effect(len(t), int(t["churn"].sum()), len(h), int(h["churn"].sum()))


def test_confidence_intervals_cover_the_recorded_truth_and_the_estimate_is_unbiased():
    covered, rows, gaps = 0, 0, []
    for seed in range(8):
        campaign = _campaign(seed)
        for row in campaign.truth:
            e = _measured(campaign.lines, row["offer_id"])
            rows += 1
            covered += e["effect_low"] <= row["true_effect"] <= e["effect_high"]
            if row["offer_id"] == "all":
                gaps.append(e["effect"] - row["true_effect"])
                assert row["true_effect"] > 0.02  # fitting offers do work
    assert covered / rows >= 0.85, (covered, rows)
    # the mean gap between estimate and truth is within three standard errors of zero
    assert abs(np.mean(gaps)) < 3 * np.std(gaps, ddof=1) / np.sqrt(len(gaps)) + 1e-3


def test_fitting_offers_work_better_than_misfits():
    fit = _campaign(3).truth
    misfit = _campaign(3, fitting=False).truth
    assert fit[0]["offer_id"] == misfit[0]["offer_id"] == "all"
    assert fit[0]["fit_share"] == 1.0
    assert misfit[0]["fit_share"] < 0.35
    assert fit[0]["true_effect"] > 2 * misfit[0]["true_effect"]


def test_outcomes_follow_the_contract_and_acting_twice_is_refused():
    sim = OperatorSimulation(2_000, 1, "2024-01")
    sim.step(emit=False, campaign=False)
    sub = sim.stayers[:10]
    treated = np.arange(10) < 7
    sim.act_on("2024-01", sub, np.full(10, "data_pack", object), treated, np.full(10, "sms", object))
    out = sim.pending_campaign
    assert list(out["offer_id"][7:]) == ["holdout"] * 3
    assert not out["contacted"][7:].any() and not out["accepted"][7:].any()
    assert (out["accepted"] <= out["contacted"]).all()
    assert set(out["campaign_month"]) == {"2024-01"}
    with pytest.raises(ValueError, match="already has a campaign"):
        sim.own_campaign("2024-01")
    nxt = sim.step(emit=False, campaign=False)
    assert nxt.campaign_outcomes is out  # delivered with the next month
    with pytest.raises(ValueError, match="must follow the step of 2023-12"):
        sim.act_on("2023-12", sub, np.full(10, "data_pack", object), treated, np.full(10, "sms", object))
    with pytest.raises(ValueError, match="does not have"):
        sim.act_on("2024-02", np.array([10**8]), np.array(["data_pack"], object), [True], ["sms"])


def test_the_operator_writes_the_outcomes_and_the_truth(tmp_path: Path):
    opts = GenerateOptions(months=("2024-01", "2024-02"), subscribers=1_500, seed=4, events_per_subscriber=5)
    operator = SampleOperator(tmp_path, opts, "2024-01")
    operator.deliver("2024-01")
    offers = pd.DataFrame(
        {
            "subscriber_id": [f"S{i:09d}" for i in range(40)],
            "status": ["assigned"] * 30 + ["holdout"] * 10,
            "intended_offer_id": ["bill_credit"] * 40,
            "channel": ["call"] * 30 + [None] * 10,
        }
    )
    operator.respond("2024-01", offers)
    operator.deliver("2024-02")
    operator.respond("2024-02", None)  # no list: the operator's own campaign
    operator.close()
    folder = tmp_path / "campaign_outcomes" / "month=2024-02"
    got = pd.concat(pd.read_csv(p, dtype=str) for p in folder.glob("*.csv*"))
    assert sorted(got["subscriber_id"]) == sorted(offers["subscriber_id"])
    assert (got["offer_id"] == "holdout").sum() == 10
    truth = read_manifest(tmp_path)["campaign_truth"]
    assert [(r["offer_id"], r["treated"], r["holdout"]) for r in truth] == [
        ("all", 30, 10),
        ("bill_credit", 30, 10),
    ]
    with pytest.raises(ValueError, match="next month to deliver is 2024-03"):
        operator.deliver("2024-05")


def test_the_operators_own_list_respects_consent_and_applies_accepted_offers():
    sim = OperatorSimulation(5_000, 2, "2024-01")
    for _ in range(3):
        sim.step(emit=False, campaign=False)
    month, m = "2024-03", sim.month_index - 1
    no_consent = sim.stayers[~sim.consent[sim.stayers]]
    sim.own_campaign(month)
    out = pd.DataFrame(sim.pending_campaign)
    assert len(out) == int(sim.stayers.size * 0.04)  # 4% of the lines that stay
    assert not out["subscriber_id"].isin(no_consent).any()
    holdout = out["offer_id"] == "holdout"
    assert 0 < holdout.sum() < 0.2 * len(out)
    assert (
        not out.loc[holdout, ["contacted", "accepted"]].any().any()
        and out.loc[holdout, "channel"].isna().all()
    )
    assert (out["accepted"] <= out["contacted"]).all() and out["accepted"].any()
    contact = pd.to_datetime(out.loc[out["contacted"], "contact_ts"], unit="s")
    assert contact.between(pd.Timestamp("2024-04-01"), pd.Timestamp("2024-04-21")).all()
    credit = out.loc[out["accepted"] & (out["offer_id"] == "bill_credit"), "subscriber_id"]
    renewed = out.loc[out["accepted"] & (out["offer_id"] == "contract_renewal"), "subscriber_id"]
    assert len(credit) and len(renewed)
    assert (sim.bill_credit_until[credit] == m + 3).all()  # three months of credit
    assert (sim.contract_end[renewed] == np.datetime64("2026-04-01")).all()  # 24 months from next month
