"""The daily warnings of a hand-built day: each trigger on its planted line and not on its near miss, the
roll-up to customer and household, the contact policy (consent, hold-out, campaign lines, budget), bad
daily rows quarantined as monthly ones are, and a rerun that replaces the day."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.core.config import load_config
from pipelines.core.lake import Lake
from pipelines.daily import daily_warnings_day
from pipelines.daily.evaluate import evaluate_daily
from pipelines.daily.history import care_contacts, out_events_by_day
from pipelines.daily.ingest import ingest_day
from tests.conftest import TEST_CONF, cfg_at

MONTH = "2024-05"
DAY = dt.date(2024, 6, 10)
OVERLAY = {
    "daily": {
        "silence": {"days": 3, "min_active_share": 0.6},
        "usage_drop": {"days": 3, "max_share": 0.3, "min_baseline_events": 30},
        "open_complaint": {"days": 3, "max_age_days": 7},
        "contract_end": {"days": 30, "usage_days": 3, "max_share": 0.8},
    },
    "offers": {
        "budget": 20.0,
        "programme_holdout_rate": 0.2,
        "value_horizon_months": 12,
        "offers": [{"id": "call", "channel": "call", "cost": 10.0, "effect": 0.5}],
    },
}
# events per line on the last three days (DAY-2, DAY-1, DAY); the baseline is 300 a month (30 in 3 days)
NORMAL = (10, 10, 10)
LINES: dict[str, dict[str, Any]] = {
    "p1": {"consent": False},  # a port-out request on the day
    "p2": {},  # near miss: a port-out request delivered the day before (and again, late, on the day)
    "p3": {"consent": False},  # a port-out request of the day before, first delivered on the day
    "q1": {"events": (0, 0, 0), "customer": "CA", "p": 0.4},  # silent since DAY-3 (silence and usage drop)
    "q2": {"events": (10, 0, 0)},  # near miss: silent for two days only
    "q3": {"events": (0, 0, 0), "active_days": 10, "baseline": 20},  # near miss: seldom active anyway
    "u1": {"events": (3, 3, 2), "customer": "CA"},  # 8 < 0.3 x 30: usage drop; in the month's campaign
    "u2": {"events": (3, 3, 3)},  # near miss: 9 is not below 9
    "c1": {"household": "H1", "p": 0.1},  # a complaint open for 3 days; its household's h1 contract ends
    "c2": {},  # near miss: open for 2 days
    "c3": {},  # near miss: resolved since
    "c4": {},  # a complaint open for exactly max_age_days (7): the oldest kept
    "e1": {"events": (7, 7, 6), "end": 20},  # contract ends in 20 days, 20 < 0.8 x 30 events
    "e2": {"events": (8, 8, 8), "end": 20},  # near miss: 24 is not below 24
    "h1": {"household": "H1", "end": 10},  # contract ending, usage normal: no trigger of its own
    "n1": {"scored": False},  # a port-out request, but not on the monthly list
}
EXPECTED = {
    "p1": ["port_out"],
    "p3": ["port_out"],
    "q1": ["silence", "usage_drop"],
    "u1": ["usage_drop"],
    "c1": ["household_contract_end", "open_complaint"],
    "c4": ["open_complaint"],
    "e1": ["contract_end"],
    "n1": ["port_out"],
}


def _frame(spark: SparkSession, rows: list[dict[str, Any]], ddl: str) -> DataFrame:
    names = [f.name for f in spark.createDataFrame([], ddl).schema.fields]
    return spark.createDataFrame([tuple(r.get(n) for n in names) for r in rows], ddl)


def _csv(folder: Path, name: str, header: list[str], rows: list[list[Any]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / name).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    (folder / "_SUCCESS").touch()


def _held_out(salt: str, s: str) -> bool:
    digest = hashlib.sha256(f"{salt}|{s}".encode()).hexdigest()
    return int(digest[:13], 16) / 16**13 < 0.2


def _salt() -> str:
    """A programme hold-out salt that holds out e1 alone among the triggered lines (hashes computed here)."""
    for i in range(10_000):
        salt = f"t{i}"
        if {s for s in EXPECTED if _held_out(salt, s)} == {"e1"}:
            return salt
    raise AssertionError("no salt found")


def _day_lake(spark: SparkSession, tmp_path: Path) -> Lake:
    overlay = tmp_path / "daily.yml"
    salt = _salt()
    overlay.write_text(
        yaml.safe_dump({**OVERLAY, "offers": {**OVERLAY["offers"], "programme_holdout_salt": salt}})
    )
    cfg = load_config(
        [TEST_CONF, overlay], [f"lake.root={tmp_path / 'lake'}", f"landing.root={tmp_path / 'landing'}"]
    )
    lake = Lake(spark, cfg)
    subs, warning, features = [], [], []
    for s, c in LINES.items():
        end = DAY + dt.timedelta(days=c["end"]) if "end" in c else dt.date(2026, 1, 1)
        subs.append(
            {
                "month": MONTH,
                "subscriber_id": s,
                "msisdn": f"4670{s}",
                "customer_id": c.get("customer", f"C{s}"),
                "household_id": c.get("household"),
                "status": "active",
                "activation_date": dt.date(2020, 1, 1),
                "contract_end_date": end,
            }
        )
        if c.get("scored", True):
            warning.append(
                {
                    "score_month": MONTH,
                    "subscriber_id": s,
                    "churn_probability": c.get("p", 0.2),
                    "risk_band": "high",
                    "value_tier": "high",
                    "arpu_3m": 50.0,
                    "cohort": "established",
                    "strategy": "strongest_retention",
                    "churn_type": "usage_decline",
                    "usage_segment": "voice",
                }
            )
        features.append(
            {
                "month": MONTH,
                "subscriber_id": s,
                "plan_type": "postpaid",
                "marketing_consent": c.get("consent", True),
                "has_contract": True,
                "out_of_contract": False,
                "months_to_contract_end": 12,
                "unresolved_complaints_3m": 0,
                "out_events_avg_3m": float(c.get("baseline", 300)),
                "out_active_days_avg_3m": float(c.get("active_days", 28)),
            }
        )
    lake.write(
        _frame(
            spark,
            subs,
            "month string, subscriber_id string, msisdn string, customer_id string, household_id string, "
            "status string, activation_date date, deactivation_date date, contract_end_date date",
        ),
        "subscriptions",
        partition_by=["month"],
    )
    lake.write(
        _frame(
            spark,
            warning,
            "score_month string, subscriber_id string, churn_probability double, risk_band string, "
            "value_tier string, arpu_3m double, cohort string, strategy string, churn_type string, "
            "usage_segment string",
        ),
        "warning_list",
        partition_by=["score_month"],
    )
    lake.write(
        _frame(
            spark,
            features,
            "month string, subscriber_id string, plan_type string, marketing_consent boolean, "
            "has_contract boolean, out_of_contract boolean, months_to_contract_end int, "
            "unresolved_complaints_3m long, out_events_avg_3m double, out_active_days_avg_3m double",
        ),
        "features_monthly",
        partition_by=["month"],
    )
    lake.write(
        _frame(
            spark,
            [
                {
                    "score_month": MONTH,
                    "subscriber_id": "u1",
                    "status": "assigned",
                    "intended_offer_id": "call",
                    "offer_id": "call",
                    "cost": 10.0,
                }
            ],
            "score_month string, subscriber_id string, status string, intended_offer_id string, "
            "offer_id string, cost double",
        ),
        "offer_assignments",
        partition_by=["score_month"],
    )
    _landing(Path(cfg.landing_root))
    assert ingest_day(lake, "port_requests", (DAY - dt.timedelta(days=1)).isoformat()) is not None
    return lake


def _ts(day: dt.date, hour: int, minute: int = 0) -> str:
    return f"{day.isoformat()} {hour:02d}:{minute:02d}:00"


def _landing(root: Path) -> None:
    """The day's three deliveries; the CDRs and contacts of the days before arrive in it as late records."""
    cdr = []
    for s, c in LINES.items():
        for back, n in zip((2, 1, 0), c.get("events", NORMAL), strict=True):
            day = DAY - dt.timedelta(days=back)
            cdr += [
                [f"r-{s}-{back}-{i}", f"4670{s}", _ts(day, 8, i), "voice", "out", 60, 0, "false", 0]
                for i in range(n)
            ]
    # q1 was last active three days before; q3 too (it seldom calls)
    cdr += [
        [f"r-{s}-3", f"4670{s}", _ts(DAY - dt.timedelta(days=3), 9), "sms", "out", 0, 0, "false", 0]
        for s in ("q1", "q3")
    ]
    cdr.append(["r-bad", "4670p2", _ts(DAY, 10), "fax", "out", 0, 0, "false", 0])  # not an event type
    cdr.append(["r-future", "4670p2", _ts(DAY + dt.timedelta(days=1), 10), "sms", "out", 0, 0, "false", 0])
    header = [
        "record_id",
        "msisdn",
        "event_ts",
        "event_type",
        "direction",
        "duration_s",
        "volume_kb",
        "roaming",
        "charge",
    ]
    header += ["other_party", "other_party_operator", "cell_id", "roaming_country"]
    _csv(root / "cdr" / f"day={DAY}", "cdr.csv", header, [[*r, "", "", "", ""] for r in cdr])
    care = [
        ["k1", "c1", _ts(DAY - dt.timedelta(days=3), 9), "call_center", "complaint", "false"],
        ["k2", "c2", _ts(DAY - dt.timedelta(days=2), 9), "call_center", "complaint", "false"],
        ["k3", "c3", _ts(DAY - dt.timedelta(days=5), 9), "call_center", "complaint", "false"],
        ["k4", "c3", _ts(DAY - dt.timedelta(days=1), 9), "call_center", "complaint", "true"],
        ["k5", "c4", _ts(DAY - dt.timedelta(days=7), 9), "call_center", "complaint", "false"],
    ]
    _csv(
        root / "care" / f"day={DAY}",
        "care.csv",
        ["contact_id", "subscriber_id", "contact_ts", "channel", "category", "resolved"],
        care,
    )
    request_header = [
        "request_id",
        "subscriber_id",
        "request_ts",
        "request_type",
        "plan_id",
        "contract_end_date",
        "port_out_operator",
    ]
    pr2 = ["pr2", "p2", _ts(DAY - dt.timedelta(days=1), 11), "port_out_request", "", "", "OP_B"]
    requests = [
        ["pr1", "p1", _ts(DAY, 11), "port_out_request", "", "", "OP_B"],
        pr2,
        ["pr3", "n1", _ts(DAY, 12), "port_out_request", "", "", ""],
        ["pr4", "p3", _ts(DAY - dt.timedelta(days=1), 20), "port_out_request", "", "", "OP_C"],
    ]
    _csv(root / "port_requests" / f"day={DAY}", "requests.csv", request_header, requests)
    before = DAY - dt.timedelta(days=1)
    _csv(root / "port_requests" / f"day={before}", "requests.csv", request_header, [pr2])


@pytest.fixture(scope="module")
def day_run(spark, tmp_path_factory):
    lake = _day_lake(spark, tmp_path_factory.mktemp("daily"))
    report = daily_warnings_day(spark, lake.cfg, DAY.isoformat())
    first = lake.read("daily_warnings").toPandas().sort_values("subscriber_id").reset_index(drop=True)
    again = daily_warnings_day(spark, lake.cfg, DAY.isoformat())
    return lake, report, again, first


def test_each_trigger_fires_on_its_planted_line_and_not_on_its_near_miss(day_run):
    _, _, _, got = day_run
    assert {r.subscriber_id: list(r.triggers) for r in got.itertuples()} == EXPECTED
    evidence = dict(zip(got["subscriber_id"], got["evidence"], strict=True))
    assert "port-out request on 2024-06-10 to OP_B" in evidence["p1"]
    assert "port-out request on 2024-06-09 to OP_C" in evidence["p3"]  # late, fires on its delivery
    assert "no outgoing activity for 3 days (last on 2024-06-07)" in evidence["q1"]
    # the baseline of May (300 events) over 3 of its 31 days
    assert "8 outgoing events in 3 days against 29.0 usual (28%)" in evidence["u1"]
    assert "complaint of 2024-06-07 unresolved for 3 days" in evidence["c1"]
    assert "complaint of 2024-06-03 unresolved for 7 days" in evidence["c4"]
    assert "household line h1 contract ends 2024-06-20" in evidence["c1"]
    assert "contract ends 2024-06-30" in evidence["e1"]


def test_lines_roll_up_to_customer_and_household(day_run):
    _, _, _, got = day_run
    by = got.set_index("subscriber_id")
    assert by.loc["q1", "customer_lines_triggered"] == by.loc["u1", "customer_lines_triggered"] == 2
    assert by.loc["p1", "customer_lines_triggered"] == 1
    assert by.loc["c1", "household_lines_triggered"] == 1 and by.loc["c1", "household_id"] == "H1"
    assert by.loc["q1", "customer_rank"] == by.loc["u1", "customer_rank"]
    # q1: 1 - 0.6 x 0.6 x 0.7 (silence 0.4, usage drop 0.3)
    assert by.loc["q1", "adjusted_probability"] == pytest.approx(1 - 0.6 * 0.6 * 0.7)
    assert list(got.sort_values("rank")["subscriber_id"].iloc[:2]) == ["p1", "p3"]  # 1 - 0.8 x 0.2 = 0.84


def test_contact_policy_hold_out_and_budget(day_run):
    _, report, _, got = day_run
    reasons = dict(
        zip(got["subscriber_id"], got["policy_reason"].where(got["policy_reason"].notna(), None), strict=True)
    )
    # budget 20, the month's campaign spent 10 on u1: one contact of 10 left, for q1 (ranked above c1)
    assert reasons == {
        "p1": "no_consent",
        "p3": "no_consent",
        "q1": None,
        "u1": "cooling_down",
        "c1": "budget",
        "c4": "budget",
        "e1": "programme_holdout",
        "n1": "not_scored",
    }
    assert dict(zip(got["subscriber_id"], got["contact_allowed"], strict=True))["q1"]
    assert report.contacts == 1 and report.budget_left == pytest.approx(10.0)
    assert set(got["campaign_month"]) == {MONTH} and set(got["score_month"]) == {MONTH}
    assert got.set_index("subscriber_id").loc["q1", "suggested_offer_id"] == "call"


def test_bad_daily_rows_are_quarantined_as_monthly_ones(day_run):
    lake, report, _, _ = day_run
    q = lake.read("quarantine").toPandas()
    planted = sum(sum(c.get("events", NORMAL)) for c in LINES.values()) + 2
    got = sorted(zip(q["source"], q["month"], q["file"], q["row_number"], q["reason"], strict=True))
    assert got == [
        ("cdr_daily_2024-06-10", "2024-06", "cdr.csv", planted + 1, "invalid_value:event_type"),
        ("cdr_daily_2024-06-10", "2024-06", "cdr.csv", planted + 2, "future_event"),
    ]
    dq = lake.read("data_quality").where(F.col("source") == "cdr_daily_2024-06-10").first()
    assert (dq.rows_read, dq.rows_quarantined, dq.rows_loaded) == (planted + 2, 2, planted)
    assert report.loaded == {"cdr": planted, "care": 5, "port_requests": 4}


def test_a_rerun_replaces_the_day(day_run):
    lake, report, again, first = day_run
    rows = lake.read("daily_warnings").toPandas().sort_values("subscriber_id").reset_index(drop=True)
    assert len(rows) == len(first) == len(EXPECTED)
    assert list(rows["policy_reason"].fillna("")) == list(first["policy_reason"].fillna(""))
    assert again.contacts == report.contacts and again.budget_left == report.budget_left
    assert lake.read("cdr_daily").count() == lake.read("cdr_daily").dropDuplicates(["record_id"]).count()


def test_the_days_own_month_never_comes_from_its_monthly_delivery(spark, tmp_path):
    """A backfill of D, after D's month was delivered: the earlier month from its delivery, D's own month
    only from the daily tables up to D (here none), never the delivery holding records known later, nor
    the earlier month's late records that travel in it."""
    lake = Lake(spark, cfg_at(tmp_path / "lake", tmp_path / "landing"))
    rows = [
        {
            "month": "2024-05",
            "contact_id": "m5",
            "subscriber_id": "s1",
            "contact_ts": dt.datetime(2024, 5, 31, 9),
        },
        {
            "month": "2024-06",
            "contact_id": "m6",
            "subscriber_id": "s1",
            "contact_ts": dt.datetime(2024, 6, 5, 9),
        },
        {  # May's, late: delivered with June
            "month": "2024-06",
            "contact_id": "late5",
            "subscriber_id": "s1",
            "contact_ts": dt.datetime(2024, 5, 30, 9),
        },
    ]
    lake.write(
        _frame(
            spark,
            [{**r, "category": "complaint", "resolved": False} for r in rows],
            "month string, contact_id string, subscriber_id string, contact_ts timestamp, category string, "
            "resolved boolean",
        ),
        "care",
        partition_by=["month"],
    )
    got = care_contacts(lake, dt.date(2024, 5, 28), DAY).toPandas()
    assert list(got["contact_ts"].dt.date) == [dt.date(2024, 5, 31)]
    assert got["delivered"].isna().all()
    cdr = [
        {"delivery_month": d, "record_id": r, "event_ts": ts}
        for d, r, ts in (
            ("2024-05", "c5", dt.datetime(2024, 5, 29, 9)),
            ("2024-06", "late5", dt.datetime(2024, 5, 30, 9)),
            ("2024-06", "c6", dt.datetime(2024, 6, 5, 9)),
        )
    ]
    lake.write(
        _frame(
            spark,
            [{**r, "event_month": r["event_ts"].strftime("%Y-%m"), "subscriber_id": "s1", "direction": "out"}
             for r in cdr],
            "delivery_month string, record_id string, event_ts timestamp, event_month string, "
            "subscriber_id string, direction string",
        ),
        "cdr",
        partition_by=["event_month", "delivery_month"],
    )  # fmt: skip
    days = out_events_by_day(lake, dt.date(2024, 5, 28), DAY).toPandas()
    assert list(days["event_date"]) == [dt.date(2024, 5, 29)]


def test_each_monthly_list_is_measured_from_the_first_day_that_used_it(spark):
    """Days of September use August's list, days of October September's: a line at risk only on
    September's list is measured from October's first evaluated day, so a departure on 20 November is within
    a 61-day horizon (it was not, measured from 1 September); a line on both lists counts once, from the
    first."""
    from pipelines.daily.evaluate import reference_lines, trigger_precision

    lists = _frame(
        spark,
        [
            {"score_month": "2024-08", "subscriber_id": "a", "value_tier": "high", "risk_band": "high"},
            {"score_month": "2024-08", "subscriber_id": "low", "value_tier": "high", "risk_band": "low"},
            {"score_month": "2024-08", "subscriber_id": "both", "value_tier": "high", "risk_band": "medium"},
            {"score_month": "2024-09", "subscriber_id": "both", "value_tier": "high", "risk_band": "high"},
            {"score_month": "2024-09", "subscriber_id": "x", "value_tier": "high", "risk_band": "high"},
            {"score_month": "2024-07", "subscriber_id": "old", "value_tier": "high", "risk_band": "high"},
        ],
        "score_month string, subscriber_id string, value_tier string, risk_band string",
    )
    starts = {"2024-08": "2024-09-03", "2024-09": "2024-10-02"}
    reference = reference_lines(lists, starts, ["medium", "high"])
    got = sorted((r.subscriber_id, r.start) for r in reference.collect())
    sept, octo = dt.date(2024, 9, 3), dt.date(2024, 10, 2)
    assert got == [("a", sept), ("both", sept), ("x", octo)]
    days = _frame(
        spark,
        [
            {"day": "2024-09-03", "score_month": "2024-08", "subscriber_id": "a", "triggers": ["silence"],
             "value_tier": "high", "contact_allowed": True},
            {"day": "2024-10-02", "score_month": "2024-09", "subscriber_id": "x", "triggers": ["silence"],
             "value_tier": "high", "contact_allowed": True},
        ],
        "day string, score_month string, subscriber_id string, triggers array<string>, value_tier string, "
        "contact_allowed boolean",
    )  # fmt: skip
    gone = _frame(
        spark,
        [{"subscriber_id": "x", "deactivation_date": dt.date(2024, 11, 20)}],
        "subscriber_id string, deactivation_date date",
    )
    table = trigger_precision(days, gone, reference, horizon_days=61)
    row = table.where(F.col("value_tier") == "all").first()
    assert (row.lines, row.hits, row.reference_precision) == (2, 1, pytest.approx(1 / 3))


def test_evaluation_measures_each_trigger_against_the_lists_lines(spark, day_run, tmp_path):
    """p1 (port-out warned) and q2 (on the list, not warned) port out within the horizon: port_out's
    precision is 1 of its 3 lines, the reference 2 of the list's 15 lines."""
    import shutil

    root = tmp_path / "lake"
    shutil.copytree(day_run[0].cfg.lake_root, root)
    cfg = cfg_at(root, tmp_path / "landing")
    lake = Lake(spark, cfg)
    gone = [
        {"month": "2024-08", "subscriber_id": s, "status": "deactivated", "deactivation_date": d,
         "deactivation_reason": "port_out"}
        for s, d in (("p1", dt.date(2024, 7, 1)), ("q2", dt.date(2024, 7, 15)))
    ]  # fmt: skip
    lake.write(
        _frame(
            spark,
            gone,
            "month string, subscriber_id string, msisdn string, customer_id string, household_id string, "
            "status string, activation_date date, deactivation_date date, contract_end_date date, "
            "deactivation_reason string",
        ),
        "subscriptions",
        mode="append",
        merge_schema=True,
    )
    rows = evaluate_daily(spark, cfg, [DAY.isoformat()])
    port_out = next(r for r in rows if (r["trigger"], r["value_tier"]) == ("port_out", "all"))
    assert (port_out["lines"], port_out["hits"], port_out["median_lead_days"]) == (3, 1, 21.0)
    assert port_out["reference_precision"] == pytest.approx(2 / 15)
    assert port_out["lift"] == pytest.approx((1 / 3) / (2 / 15))


def test_a_day_folder_without_files_is_a_quiet_day_except_for_cdrs(spark, tmp_path):
    from pipelines.ingest import UnreadableFileError

    lake = Lake(spark, cfg_at(tmp_path / "lake", tmp_path / "landing"))
    day = DAY.isoformat()
    for source in ("care", "port_requests", "cdr"):
        folder = tmp_path / "landing" / source / f"day={day}"
        folder.mkdir(parents=True)
        (folder / "_SUCCESS").touch()
    for source in ("care", "port_requests"):
        report = ingest_day(lake, source, day)
        assert report is not None
        assert (report.files, report.rows_read, report.rows_loaded, report.daily_counts) == (
            0,
            0,
            0,
            {day: 0},
        )
        assert lake.read(f"{source}_daily").count() == 0
    with pytest.raises(UnreadableFileError, match=rf"cdr/day={day}: no data files"):
        ingest_day(lake, "cdr", day)


def test_evaluating_no_day_is_a_clear_error(spark, tmp_path):
    with pytest.raises(ValueError, match="no day given"):
        evaluate_daily(spark, cfg_at(tmp_path / "lake", tmp_path / "landing"), [])


def test_a_day_where_no_trigger_fires_replaces_the_day_with_none(spark, day_run):
    """Last in the module: it empties the fixture's day."""
    lake = day_run[0]
    daily = lake.cfg.daily
    names = ("port_out", "silence", "usage_drop", "open_complaint", "contract_end", "household_contract_end")
    off = {n: getattr(daily, n).model_copy(update={"enabled": False}) for n in names}
    cfg = lake.cfg.model_copy(update={"daily": daily.model_copy(update=off)})
    report = daily_warnings_day(spark, cfg, DAY.isoformat())
    assert (report.warnings, report.contacts, report.by_trigger) == (0, 0, {})
    assert lake.read("daily_warnings").where(F.col("day") == DAY.isoformat()).count() == 0
