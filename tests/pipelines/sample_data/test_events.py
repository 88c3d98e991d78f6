"""A month's rows drawn from planted states: the snapshot, billing, care contacts and CDRs of lines whose
plan, episode, payments and (de)activation the test sets itself."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from features.calendar import days_in_month, month_start
from pipelines.sample_data import events, usage
from pipelines.sample_data.catalogue import Competitor, Plan, Reason
from pipelines.sample_data.simulate import OperatorSimulation

MONTH = "2024-04"


@dataclass
class Month:
    """A simulation about to simulate ``MONTH``, and that month's first day and length."""

    sim: OperatorSimulation
    start: np.datetime64
    ndays: int

    def lines(self, k: int, offset: int = 0) -> np.ndarray:
        """``k`` active lines with no episode, no arrears and a tenure of a year or more (so no ramp-up)."""
        idx = np.flatnonzero(self.sim.active[: self.sim.n])[offset : offset + k]
        s = self.sim
        s.episode_start[idx] = s.episode_churn[idx] = s.bill_credit_until[idx] = -1
        s.false_alarm[idx] = s.payment_trouble[idx] = False
        s.overdue[idx], s.balance[idx] = 0, 0.0
        s.act_day[idx] = self.start - 400
        s.roamer[idx] = 0.0
        return idx


@pytest.fixture
def month() -> Month:
    sim = OperatorSimulation(2_000, 5, "2024-03")
    sim.step(emit=False)
    assert sim.month == MONTH
    return Month(sim, np.datetime64(month_start(MONTH), "D"), days_in_month(MONTH))


def test_the_snapshot_shows_each_planted_state(month: Month):
    sim = month.sim
    fraud, ported, suspended, active = idx = month.lines(4)
    sim.active[[fraud, ported]] = False
    sim.deact_day[fraud], sim.reason[fraud], sim.port_op[fraud] = (
        month.start + 9,
        Reason.FRAUD,
        Competitor.OP_C,
    )
    sim.deact_day[ported], sim.reason[ported], sim.port_op[ported] = (
        month.start + 4,
        Reason.PORT_OUT,
        Competitor.OP_D,
    )
    sim.overdue[suspended], sim.plan[suspended] = 60, Plan.PRE_M
    sim.overdue[active], sim.plan[active] = 59, Plan.POST_L
    rows = pd.DataFrame(events.snapshot(sim, idx, month.start + month.ndays)).astype(str)
    got = rows[["status", "deactivation_date", "deactivation_reason", "port_out_operator"]].values.tolist()
    assert got == [
        ["deactivated", "2024-04-10", "fraud", "None"],
        ["deactivated", "2024-04-05", "port_out", "OP_D"],
        ["suspended", "NaT", "None", "None"],
        ["active", "NaT", "None", "None"],
    ]
    assert rows[["plan_id", "plan_type", "monthly_fee"]].values.tolist()[2:] == [
        ["PRE_M", "prepaid", "10.0"],
        ["POST_L", "postpaid", "40.0"],
    ]
    assert set(rows["snapshot_date"]) == {"2024-04-30"}


def test_bills_add_up_from_the_planted_fee_charges_credit_and_arrears(month: Month):
    sim = month.sim
    idx = month.lines(400)
    prepaid, postpaid = idx[:200], idx[200:]
    credit, trouble = postpaid[:80], postpaid[80:140]
    sim.plan[prepaid], sim.plan[postpaid] = Plan.PRE_S, Plan.POST_M
    sim.bill_credit_until[credit] = sim.month_index + 1
    sim.payment_trouble[trouble] = True
    charges, roam = np.full(idx.size, 4.0), np.full(idx.size, 1.0)
    b = pd.DataFrame(events.billing(sim, idx, MONTH, month.start, charges, roam)).set_index("subscriber_id")
    pre, post = b.loc[prepaid], b.loc[postpaid]
    assert (pre[["invoice_amount", "recurring_charge", "usage_charge", "roaming_charge"]] == 0).all().all()
    assert (
        (pre["topup_amount"] / pre["topup_count"].where(pre["topup_count"] > 0))
        .dropna()
        .isin([5, 10, 20])
        .all()
    )
    assert (post["recurring_charge"] == 25.0).all() and (post["usage_charge"] == 4.0).all()
    assert (post["roaming_charge"] == 1.0).all()
    # a bill credit takes 30% of the fee (7.50); anyone may get a goodwill 2.00
    assert set(b.loc[credit, "discount_amount"]) <= {7.5, 9.5}
    assert set(b.loc[np.setdiff1d(postpaid, credit), "discount_amount"]) <= {0.0, 2.0}
    assert np.allclose(post["invoice_amount"], 25.0 + 4.0 + 1.0 - post["discount_amount"])
    late = b.loc[trouble]
    assert (
        (late["paid_amount"] == 0) | (late["paid_amount"] == (late["invoice_amount"] * 0.3).round(2))
    ).all()
    assert np.allclose(late["balance_due"], late["invoice_amount"] - late["paid_amount"])
    assert (late["overdue_days"] == 30).all()
    on_time = b.loc[np.setdiff1d(postpaid, trouble)]
    assert (on_time["paid_amount"] == on_time["invoice_amount"]).all()
    assert (on_time[["balance_due", "overdue_days"]] == 0).all().all()
    days = (pd.to_datetime(on_time["payment_date"]) - pd.Timestamp(month.start)).dt.days
    assert days.between(3, 24).all()


def test_port_outs_file_a_request_days_before_leaving_and_nobody_calls_after(month: Month):
    sim = month.sim
    leavers, stayers = month.lines(300), month.lines(300, offset=300)
    sim.active[leavers] = False
    sim.reason[leavers] = Reason.PORT_OUT
    sim.deact_day[leavers] = month.start + 14  # the 15th
    rows = pd.DataFrame(events.care(sim, np.concatenate([leavers, stayers]), month.start, month.ndays))
    ts = pd.to_datetime(rows["contact_ts"], unit="s")
    requests = rows[rows["category"] == "port_out_request"]
    assert set(requests["subscriber_id"]) <= set(leavers)
    assert requests["subscriber_id"].is_unique
    assert 0.4 < len(requests) / leavers.size < 0.6  # half the port-outs file one
    req_ts = ts[requests.index]
    assert req_ts.between(pd.Timestamp("2024-04-10 10:00"), pd.Timestamp("2024-04-15 10:00")).all()
    assert (ts[rows["subscriber_id"].isin(leavers)] < pd.Timestamp("2024-04-16")).all()
    # lines without an episode call care now and then (7% a month)
    assert 0.02 < rows["subscriber_id"].isin(stayers).sum() / stayers.size < 0.15


def test_cdrs_fall_inside_each_lines_active_days(month: Month):
    sim = month.sim
    silent, leaving, joining, ordinary = (month.lines(50, offset=50 * i) for i in range(4))
    sim.usage[silent] = 0.0
    sim.active[leaving], sim.deact_day[leaving] = False, month.start + 9  # the 10th
    sim.act_day[joining] = month.start + 19  # the 20th
    idx = np.concatenate([silent, leaving, joining, ordinary])
    ones = np.ones(idx.size)
    cdr, _, _ = usage.cdr(sim, idx, month.start, month.ndays, ones, ones, events_mean=40)
    sub = cdr["_subscriber"]
    day = (cdr["event_ts"] - month.start.astype("datetime64[s]").astype(np.int64)) // 86400 + 1
    assert not np.isin(silent, sub).any()
    assert day[np.isin(sub, leaving)].max() <= 10 and day[np.isin(sub, joining)].min() >= 20
    assert day[np.isin(sub, ordinary)].min() >= 1 and day[np.isin(sub, ordinary)].max() <= 30
    assert not cdr["roaming"].any()  # nobody travels
    codes, labels = cdr["event_type"]
    kind = labels[codes]
    other, direction = cdr["other_party"][0], cdr["direction"][1][cdr["direction"][0]]
    assert (other[kind == "data"] == -1).all() and (direction[kind == "data"] == "out").all()
    assert (cdr["duration_s"][kind == "sms"] == 0).all() and (cdr["volume_kb"][kind != "data"] == 0).all()
    assert (cdr["duration_s"][kind == "voice"] >= 1).all()


def test_usage_drops_in_an_episode(month: Month):
    sim = month.sim
    quiet, in_episode = month.lines(500), month.lines(500, offset=500)
    sim.episode_start[in_episode] = sim.month_index - 1  # the second month of signs
    sim.episode_churn[in_episode] = sim.month_index + 1
    mult, _ = usage.episode_effects(sim, np.concatenate([quiet, in_episode]))
    # 1 - 0.3 x 2 months x U(0.4, 1.4): about half the usage
    assert mult[500:].mean() / mult[:500].mean() < 0.65
