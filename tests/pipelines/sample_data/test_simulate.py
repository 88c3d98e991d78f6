"""The simulated month: who leaves and why (planted states, and rates read back from the landing files),
number recycling, and a churn signal that is real but not trivial."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.calendar import add_months
from pipelines.sample_data.catalogue import NO_REASON, Plan, Reason
from pipelines.sample_data.simulate import OperatorSimulation
from tests.conftest import GEN_MONTHS
from tests.pipelines.sample_data.landing_files import read_source, tenure_months


def _simulation() -> OperatorSimulation:
    sim = OperatorSimulation(3_000, 21, "2024-01")
    sim.step(emit=False)
    return sim


def test_planted_episodes_churn_in_their_month_and_false_alarms_do_not():
    sim = _simulation()
    m = sim.month_index
    active = np.flatnonzero(sim.active[: sim.n])
    churning, false_alarm, overdue = active[:200], active[200:400], active[400:600]
    sim.episode_start[churning] = sim.episode_start[false_alarm] = m - 1
    sim.episode_churn[churning] = sim.episode_churn[false_alarm] = m
    sim.false_alarm[churning] = False
    sim.false_alarm[false_alarm] = True
    sim.overdue[overdue] = 90
    sim.episode_start[overdue] = -1
    sim.episode_churn[overdue] = -1
    sim.plan[overdue] = Plan.POST_M
    sim.step(emit=False)
    assert not sim.active[churning].any()
    assert set(sim.reason[churning]) == {Reason.PORT_OUT, Reason.VOLUNTARY}
    assert 0.5 < (sim.reason[churning] == Reason.PORT_OUT).mean() < 0.75  # 62% port out
    assert sim.active[false_alarm].mean() > 0.95  # only the silent churn of a month (under 1%)
    assert (sim.reason[false_alarm[sim.active[false_alarm]]] == NO_REASON).all()
    gone = overdue[~sim.active[overdue]]
    assert 0.45 < gone.size / overdue.size < 0.75  # 60% disconnected
    assert (sim.reason[gone] == Reason.NON_PAYMENT).mean() > 0.95


def test_churn_rates_by_plan_type_and_cohort(landing: Path):
    rows = []
    for month in GEN_MONTHS[1:]:
        subs = read_source(landing, "subscriptions", month)
        prev = set(read_source(landing, "subscriptions", add_months(month, -1))["subscriber_id"])
        base = subs[subs.subscriber_id.isin(prev)].copy()  # active at the start of the month
        base["churn"] = base.status == "deactivated"
        base["tenure"] = tenure_months(base, month)
        rows.append(base)
    base = pd.concat(rows)
    rates = base.groupby("plan_type")["churn"].mean()
    assert 0.03 <= rates["prepaid"] <= 0.055, rates
    assert 0.01 <= rates["postpaid"] <= 0.022, rates
    by_cohort = base.groupby(
        pd.cut(base.tenure, [-1, 5, 11, 10_000], labels=["new", "early", "est"]), observed=True
    )
    cohort = by_cohort["churn"].mean()
    assert cohort["new"] > cohort["est"] * 1.5, cohort
    shares = base[base.churn].deactivation_reason.value_counts(normalize=True)
    assert shares["port_out"] > shares["voluntary"] > shares["non_payment"] > 0
    assert shares.get("fraud", 0) + shares.get("deceased", 0) < 0.1


def test_msisdn_recycling(landing: Path):
    subs = pd.concat(read_source(landing, "subscriptions", m) for m in GEN_MONTHS)
    owners = subs.groupby("msisdn")["subscriber_id"].nunique()
    recycled = owners[owners > 1].index
    assert len(recycled) > 0
    for number in recycled[:20]:
        lines = subs[subs.msisdn == number].sort_values("snapshot_date")
        first_owner = lines.iloc[0].subscriber_id
        ended = lines[(lines.subscriber_id == first_owner) & lines.deactivation_date.notna()]
        later = lines[lines.subscriber_id != first_owner].iloc[0]
        # the new owner got the number only after the old line was deactivated and the quarantine passed
        assert len(ended) == 1
        gap = pd.Timestamp(later.activation_date) - pd.Timestamp(ended.iloc[0].deactivation_date)
        assert gap > pd.Timedelta(days=60)


def _monthly_aggregates(root: Path, month: str) -> pd.DataFrame:
    subs = read_source(root, "subscriptions", month)
    subs = subs[subs.status != "deactivated"]
    cdr = read_source(root, "cdr", month)
    cdr = cdr[pd.to_datetime(cdr.event_ts, errors="coerce").dt.strftime("%Y-%m") == month]
    cdr = cdr.drop_duplicates("record_id")
    cdr["day"] = cdr.event_ts.str[:10]
    usage = cdr.groupby("msisdn").agg(events=("record_id", "size"), days=("day", "nunique"))
    out = subs.merge(usage, left_on="msisdn", right_index=True, how="left").fillna({"events": 0, "days": 0})
    care = read_source(root, "care", month)
    care = care[care.category != "port_out_request"]
    out["care"] = out.subscriber_id.map(care.groupby("subscriber_id").size()).fillna(0)
    bills = read_source(root, "billing", month).set_index("subscriber_id")
    out["overdue"] = pd.to_numeric(out.subscriber_id.map(bills["overdue_days"]), errors="coerce").fillna(0)
    out["prepaid"] = (out.plan_type == "prepaid").astype(int)
    out["tenure"] = tenure_months(out, month)
    end = pd.to_datetime(out.contract_end_date, errors="coerce")
    out["to_end"] = ((end - pd.Timestamp(month + "-01")).dt.days).fillna(9999)
    return out.set_index("subscriber_id")


def test_signal_is_real_but_not_trivial(landing: Path):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    def dataset(month: str) -> tuple[pd.DataFrame, np.ndarray]:
        now = _monthly_aggregates(landing, month)
        prev = _monthly_aggregates(landing, add_months(month, -1))
        x = now[["events", "days", "care", "overdue", "prepaid", "tenure", "to_end"]].copy()
        x["trend"] = now["events"] / (prev["events"].reindex(now.index).fillna(now["events"]) + 1)
        window = read_source(landing, "subscriptions", add_months(month, 2))
        churned = window[
            (window.status == "deactivated") & window.deactivation_reason.isin(["port_out", "voluntary"])
        ].subscriber_id
        return x, x.index.isin(set(churned))

    x_train, y_train = zip(*(dataset(m) for m in ("2024-02", "2024-03")), strict=True)
    model = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.05, random_state=0)
    model.fit(pd.concat(x_train), np.concatenate(y_train))
    x_test, y_test = dataset("2024-05")
    auc = roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])
    assert 0.66 <= auc <= 0.93, auc
