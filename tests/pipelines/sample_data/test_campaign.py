"""The simulated campaign system against its truth model: contacts in the gap month save gap-month churn
after the contact, offers work differently by driver and value, some contacts push lines out, and the
recorded individual truth (churn if treated and if not, from the same random draws) is what the realised
world and a treated-vs-control comparison of churn from the contact month show."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.calendar import add_months
from models.evaluation import campaign_effect
from pipelines.core.config import load_config
from pipelines.sample_data import simulate
from pipelines.sample_data.catalogue import (
    CATALOGUE_TRUTH,
    DRIVERS,
    NEGATIVE_SEGMENTS,
    Driver,
    OfferTruth,
    Plan,
    Reason,
)
from pipelines.sample_data.simulate import OperatorSimulation
from pipelines.sample_data.writer import GenerateOptions, SampleOperator, read_manifest

FIRST_MONTH = "2023-10"
WARM_UP_MONTHS = 5
FITTING = {  # a fitting catalogue offer per episode driver
    "usage_decline": "data_pack",
    "new_customer_fit": "free_addon",
    "competitor_pull": "family_plan",
    "contract_expiry": "renewal_device",
    "price_sensitivity": "bill_credit",
    "service_issue": "service_recovery",
}
OFFER_IDS = np.array(sorted(CATALOGUE_TRUTH), dtype=object)
CHANNELS = {o.id: o.channel for o in load_config().offers.offers}  # the default catalogue's channels
COUNTED = (Reason.PORT_OUT, Reason.VOLUNTARY)  # counted as churn by the churn contract
SEEDS = range(10)


@dataclass(frozen=True)
class Campaign:
    """The recorded truth of one campaign: ``offers`` per offer id and ``all``; ``lines`` per listed line,
    beside what the test saw of the line before the campaign (the landing snapshot, the hidden episode)
    and what happened to it after (realised churn from the contact month, the campaign outcomes)."""

    offers: pd.DataFrame
    lines: pd.DataFrame


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The churn no campaign touches switched off: silent churn, non-payment, other exits, new episodes."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(simulate, "SILENT_CHURN", {"prepaid": 0.0, "postpaid": 0.0})
        mp.setattr(simulate, "NON_PAYMENT_CHANCE", 0.0)
        mp.setattr(simulate, "OTHER_EXIT", 0.0)
        mp.setattr(simulate, "EPISODE_HAZARD", {"prepaid": 0.0, "postpaid": 0.0})
        yield


def _campaign(seed: int, *, listed: str = "mixed", offer: str | None = None, quiet: bool = False) -> Campaign:
    """Simulate a base, list lines for month M, give each a random catalogue offer (or ``offer``;
    ``fitting``: the one that fits its episode's driver), treat a random half, and step through M+1 and
    M+2. ``listed``: ``episode``, the lines in a risk episode (as a risk model would list them);
    ``mixed``: those and as many others; ``due``: the lines whose episode churns in M+1."""
    sim = OperatorSimulation(20_000, seed, FIRST_MONTH)
    for _ in range(WARM_UP_MONTHS):
        sim.step(emit=False)
    out = sim.step(emit=False, campaign=False)
    month, m = out.month, sim.month_index - 1
    rng = np.random.default_rng([seed, 99])  # the list's own stream, apart from the simulation's
    stay = sim.stayers
    in_episode = sim.episode_start[stay] >= 0
    due = in_episode & ~sim.false_alarm[stay] & (sim.episode_churn[stay] == m + 1)
    sub = {"due": stay[due], "episode": stay[in_episode]}.get(listed)
    if sub is None:
        others = rng.choice(stay[~in_episode], int(in_episode.sum()), replace=False)
        sub = np.concatenate([stay[in_episode], others])
    if offer == "fitting":
        offers = np.array([FITTING[d] for d in DRIVERS[sim.episode_driver[sub]]], dtype=object)
    else:
        offers = (
            np.full(sub.size, offer, object)
            if offer
            else OFFER_IDS[rng.integers(0, OFFER_IDS.size, sub.size)]
        )
    treated = rng.random(sub.size) < 0.5
    channel = np.array([CHANNELS.get(o, "sms") if t else None for o, t in zip(offers, treated, strict=True)])
    snapshot = pd.DataFrame(out.subscriptions).set_index("subscriber_id").loc[sub]
    seen = {
        "in_episode": sim.episode_start[sub] >= 0,
        "due": np.isin(sub, stay[due]),
        # the pipeline's contract_state = out_of_contract: a contract that ended by the end of M
        "out_of_contract": (snapshot["contract_end_date"] <= snapshot["snapshot_date"]).to_numpy(),
    }
    truth = sim.act_on(month, sub, offers, treated, channel.astype(object))
    outcomes = pd.DataFrame(sim.pending_campaign)
    with _quiet() if quiet else contextlib.nullcontext():
        for _ in range(2):
            sim.step(emit=False, campaign=False)
    deact = sim.deact_day[sub]
    counted = np.isin(sim.reason[sub], COUNTED)
    contact_month = np.datetime64(add_months(month, 1), "M")
    left = deact.astype("datetime64[M]")
    lines = pd.DataFrame(truth.lines).assign(
        **seen,
        churn=counted & (left >= contact_month) & (left <= contact_month + 1),
        gap_churn=counted & (left == contact_month),
        deact_day=deact,
        contacted=outcomes["contacted"].to_numpy(),
        contact_day=np.where(
            outcomes["contacted"],
            outcomes["contact_ts"].to_numpy().astype("datetime64[s]").astype("datetime64[D]"),
            np.datetime64("NaT"),
        ),
    )
    return Campaign(pd.DataFrame(truth.offers), lines)


@pytest.fixture(scope="module")
def campaigns() -> list[Campaign]:
    return [_campaign(seed) for seed in SEEDS]


def _arms(lines: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    return lines[lines["treated"]], lines[~lines["treated"]]


def _measured(lines: pd.DataFrame) -> dict[str, float]:
    """The evaluation's estimate: control churn rate - treated churn rate, with its Newcombe interval."""
    t, c = _arms(lines)
    return campaign_effect(len(t), int(t["churn"].sum()), len(c), int(c["churn"].sum()))


def test_a_contact_saves_a_gap_month_churn_only_when_it_comes_before_the_churn_day():
    """An offer every reached line accepts and that ends every episode, on lines due to churn in M+1."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(CATALOGUE_TRUTH, "sure_thing", OfferTruth(1.0, 1.0, tuple(DRIVERS), provocation=0.0))
        lines = pd.concat(
            [_campaign(seed, listed="due", offer="sure_thing", quiet=True).lines for seed in (1, 2)]
        )
    reached = lines["contacted"]
    assert len(lines) > 500 and reached.sum() > 200
    assert lines.loc[~reached, "gap_churn"].all()  # control and unreached lines all leave in M+1
    got = lines[reached]
    # a reached line left in M+1 exactly when its churn day was not after the contact day
    assert (got["gap_churn"] == (got["deact_day"] <= got["contact_day"])).all()
    saved = 1 - got["gap_churn"].mean()
    assert 0.5 < saved < 0.8, saved  # a day of a 30-day month after a day among the first 20: 65 %
    assert (got["churn_if_treated"] == got["gap_churn"]).all()


def test_saves_happen_in_the_gap_month_and_are_recorded(campaigns: list[Campaign]):
    saved = stayed = 0
    for campaign in campaigns:
        t, c = _arms(campaign.lines[campaign.lines["due"]])
        assert c["gap_churn"].all()  # left alone, an episode due in M+1 churns in M+1
        recorded = int(campaign.offers.loc[campaign.offers["offer_id"] == "all", "saves_in_gap"].iloc[0])
        kept = int((~t["gap_churn"]).sum())
        assert kept <= recorded  # a saved line may still leave for another reason
        saved, stayed = saved + recorded, stayed + kept
    assert stayed > 30 and stayed >= 0.9 * saved


def test_the_treated_vs_control_difference_from_the_contact_month_estimates_the_true_effect(
    campaigns: list[Campaign],
):
    covered = rows = 0
    errors, ses = [], []
    for campaign in campaigns:
        for row in campaign.offers.itertuples():
            part = (
                campaign.lines
                if row.offer_id == "all"
                else campaign.lines[campaign.lines["offer_id"] == row.offer_id]
            )
            e = _measured(part)
            rows += 1
            covered += e["effect_low"] <= row.true_effect_listed <= e["effect_high"]
            if row.offer_id == "all":
                errors.append(e["effect"] - row.true_effect_listed)
                ses.append((e["effect_high"] - e["effect_low"]) / (2 * 1.96))
    # 95 % intervals: at least 90 % of the offer-months cover the truth (fixed seeds)
    assert covered / rows >= 0.9, (covered, rows)
    # over seeds, the mean error is within one standard error of a campaign's estimate
    assert abs(np.mean(errors)) < np.mean(ses), (np.mean(errors), np.mean(ses))


def test_the_expected_churn_is_the_mean_of_the_drawn_churn(campaigns: list[Campaign]):
    """The treated world is drawn for every listed line: its churn averages to the recorded expectation,
    over all lines and over those due in the gap month (where the contact day decides)."""
    lines = pd.concat(c.lines for c in campaigns)
    for part in (lines, lines[lines["due"]]):
        p = part["p_churn_if_treated"]
        se = np.sqrt((p * (1 - p)).sum()) / len(part)
        assert abs(part["churn_if_treated"].mean() - p.mean()) < 3 * se, (
            part["churn_if_treated"].mean(),
            p.mean(),
        )
    assert (lines["p_churn_if_control"] == lines["churn_if_control"]).all()  # left alone, nothing is drawn
    assert np.allclose(lines["true_effect"], lines["p_churn_if_control"] - lines["p_churn_if_treated"])


@pytest.mark.parametrize("offer, segment", NEGATIVE_SEGMENTS)
def test_a_sales_offer_to_out_of_contract_lines_pushes_them_out(
    campaigns: list[Campaign], offer: str, segment: str
):
    """The segment is a column the test read from the landing snapshot (as the pipeline would)."""
    lines = pd.concat(c.lines for c in campaigns)
    risky = lines[(lines["offer_id"] == offer) & lines["in_episode"]]  # as a risk model would list them
    inside = risky.loc[risky[segment], "true_effect"]
    outside = risky.loc[~risky[segment], "true_effect"]
    assert len(inside) > 50
    assert inside.mean() < 0 < outside.mean(), (inside.mean(), outside.mean())


def test_the_harm_shows_in_the_realised_churn(campaigns: list[Campaign]):
    """Treated out-of-contract lines given a harmful offer leave more than their control."""
    lines = pd.concat(c.lines for c in campaigns)
    harmful = np.zeros(len(lines), bool)
    for offer, segment in NEGATIVE_SEGMENTS:
        harmful |= (lines["offer_id"] == offer).to_numpy() & lines[segment].to_numpy()
    e = _measured(lines[harmful])
    assert e["effect_high"] < 0, e


def test_the_realised_world_is_each_lines_own_arm():
    for seed in (3, 4):
        lines = _campaign(seed, quiet=True).lines
        arm = np.where(lines["treated"], lines["churn_if_treated"], lines["churn_if_control"])
        assert (lines["churn"] == arm).all()
        assert (lines["churn_if_treated"] != lines["churn_if_control"]).sum() > 30


def test_churn_no_offer_touches_is_the_only_gap_between_the_arm_and_the_realised_churn(
    campaigns: list[Campaign],
):
    lines = pd.concat(c.lines for c in campaigns)
    arm = np.where(lines["treated"], lines["churn_if_treated"], lines["churn_if_control"])
    assert (lines["churn"] != arm).mean() < 0.02


def test_premium_offers_work_better_on_high_value_lines_and_cheap_ones_on_low():
    """Planted episodes (all churning in the label window) on the cheapest and the dearest plan, each line
    given an offer that fits its driver: a cheap pack for a usage decline, a family plan for a pull."""
    sim = OperatorSimulation(8_000, 5, FIRST_MONTH)
    sim.step(emit=False, campaign=False)
    m = sim.month_index - 1
    sub = sim.stayers[:4000]
    rng = np.random.default_rng(5)
    high = rng.random(sub.size) < 0.5
    pull = rng.random(sub.size) < 0.5
    sim.plan[sub] = np.where(high, Plan.POST_XL, Plan.PRE_S)
    sim.episode_start[sub], sim.episode_churn[sub], sim.false_alarm[sub] = m, m + 2, False
    sim.episode_driver[sub] = np.where(pull, Driver.COMPETITOR_PULL, Driver.USAGE_DECLINE)
    offers = np.where(pull, "family_plan", "data_pack").astype(object)
    truth = sim.act_on(FIRST_MONTH, sub, offers, np.ones(sub.size, bool), np.full(sub.size, "sms", object))
    with _quiet():
        for _ in range(2):
            sim.step(emit=False, campaign=False)
    lines = pd.DataFrame(truth.lines).assign(high=high, churn=np.isin(sim.reason[sub], COUNTED))
    effect = lines.groupby(["offer_id", "high"])["true_effect"].mean()
    churn = lines.groupby(["offer_id", "high"])["churn"].mean()
    assert effect["family_plan", True] > 1.5 * effect["family_plan", False]
    assert effect["data_pack", False] > 1.5 * effect["data_pack", True]
    assert churn["family_plan", True] < churn["family_plan", False] - 0.03
    assert churn["data_pack", False] < churn["data_pack", True] - 0.03


def test_fitting_offers_work_better_than_misfits():
    fit, misfit = (
        _campaign(3, listed="episode", offer=offer).offers.set_index("offer_id").loc["all"]
        for offer in ("fitting", None)
    )
    assert fit["fit_share"] == 1.0
    assert misfit["fit_share"] < 0.35
    assert fit["true_effect"] > 0.02 and fit["true_effect"] > 2 * misfit["true_effect"]


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
    manifest = read_manifest(tmp_path)
    truth = manifest["campaign_truth"]
    assert [(r["offer_id"], r["treated"], r["holdout"]) for r in truth] == [
        ("all", 30, 10),
        ("bill_credit", 30, 10),
    ]
    assert {"true_effect", "true_effect_listed", "saves_in_window", "saves_in_gap", "provoked"} <= set(
        truth[0]
    )
    lines = pd.DataFrame(manifest["campaign_truth_lines"])
    assert list(lines["subscriber_id"]) == list(offers["subscriber_id"])
    assert list(lines["treated"]) == list(offers["status"] == "assigned")
    assert set(lines["campaign_month"]) == {"2024-01"} and set(lines["offer_id"]) == {"bill_credit"}
    assert lines[["churn_if_treated", "churn_if_control"]].map(lambda v: isinstance(v, bool)).all().all()
    assert np.allclose(
        lines["true_effect"], lines["p_churn_if_control"] - lines["p_churn_if_treated"], atol=2e-6
    )
    assert truth[0]["true_effect_listed"] == pytest.approx(lines["true_effect"].mean(), abs=1e-5)
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
