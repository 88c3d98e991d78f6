"""Daily warnings: one day at N subscribers (default 100,000) through ``daily_warnings_day`` against the same
triggers as one DuckDB query over the same files.

The lake holds what the job reads from the monthly run (the snapshot, the features' baselines, the warning
list), synthesised: a month of monthly stages is not what is measured here. The day's delivery holds the
CDRs of the last seven days (the day's own and late records: the lookback the triggers need, so the daily
tables of the earlier days are not needed), its care contacts and port-out requests. Ours: the whole job
(ingest of the three deliveries with validation, number ownership, quarantine and ``data_quality``; the
triggers; the roll-up; the offer and contact policy; the write). The reference: DuckDB reading the same CSV
files and Delta tables and computing the same five triggers and the roll-up counts in one query (no
validation, quarantine, policy or write). Writes ``daily-<subscribers>-<date>-<time>.json`` under ``--out``.

python -m bench.daily_bench [--subscribers 100000] [--out bench/results]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bench.harness import Machine, timed
from pipelines.core.config import load_config
from pipelines.core.lake import Lake
from pipelines.core.spark import get_spark
from pipelines.core.sql import duckdb_connect, sql_string
from pipelines.daily import daily_warnings_day

MONTH = "2024-05"
DAY = dt.date(2024, 6, 10)
LOOKBACK = 7


def synthesise(lake: Lake, landing: Path, n: int, seed: int) -> int:
    """The monthly view and the day's deliveries for ``n`` lines; returns the CDR rows delivered."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"S{i:09d}" for i in range(n)])
    msisdn = np.array([f"46{i:09d}" for i in range(n)])
    household = np.where(rng.random(n) < 0.3, np.char.add("H", (np.arange(n) // 3).astype(str)), None)
    end_days = rng.integers(-200, 400, n)
    contract_end = [DAY + dt.timedelta(days=int(d)) if d > -100 else None for d in end_days]
    subs = pd.DataFrame(
        {
            "month": MONTH,
            "subscriber_id": ids,
            "msisdn": msisdn,
            "customer_id": np.char.add("C", (np.arange(n) // 2).astype(str)),
            "household_id": household,
            "status": "active",
            "activation_date": dt.date(2020, 1, 1),
            "deactivation_date": None,
            "contract_end_date": contract_end,
        }
    )
    spark = lake.spark
    ddl = (
        "month string, subscriber_id string, msisdn string, customer_id string, household_id string, "
        "status string, activation_date date, deactivation_date date, contract_end_date date"
    )
    lake.write(spark.createDataFrame(subs, ddl), "subscriptions", partition_by=["month"])
    daily_rate = rng.gamma(2.0, 1.5, n)  # outgoing events a day
    features = pd.DataFrame(
        {
            "month": MONTH,
            "subscriber_id": ids,
            "plan_type": np.where(rng.random(n) < 0.6, "postpaid", "prepaid"),
            "marketing_consent": rng.random(n) < 0.8,
            "has_contract": True,
            "out_of_contract": False,
            "months_to_contract_end": (end_days // 30).astype(int),
            "unresolved_complaints_3m": rng.poisson(0.05, n),
            "out_events_avg_3m": daily_rate * 30,
            "out_active_days_avg_3m": np.minimum(30.0, 30 * (1 - np.exp(-daily_rate))),
        }
    )
    lake.write(
        spark.createDataFrame(
            features,
            "month string, subscriber_id string, plan_type string, marketing_consent boolean, "
            "has_contract boolean, out_of_contract boolean, months_to_contract_end int, "
            "unresolved_complaints_3m long, "
            "out_events_avg_3m double, out_active_days_avg_3m double",
        ),
        "features_monthly",
        partition_by=["month"],
    )
    p = rng.beta(1.0, 12.0, n)
    warning = pd.DataFrame(
        {
            "score_month": MONTH,
            "subscriber_id": ids,
            "churn_probability": p,
            "risk_band": np.select([p >= 0.15, p >= 0.05], ["high", "medium"], "low"),
            "value_tier": rng.choice(["high", "medium", "low", "unprofitable"], n, p=[0.2, 0.4, 0.3, 0.1]),
            "arpu_3m": rng.gamma(3.0, 10.0, n),
            "cohort": "established",
            "strategy": "retention_offer",
            "churn_type": rng.choice(["usage_decline", "service_issue", "price_sensitivity"], n),
            "usage_segment": "voice",
        }
    )
    lake.write(
        spark.createDataFrame(
            warning,
            "score_month string, subscriber_id string, churn_probability double, risk_band string, "
            "value_tier string, arpu_3m double, cohort string, strategy string, churn_type string, "
            "usage_segment string",
        ),
        "warning_list",
        partition_by=["score_month"],
    )
    # a line goes quiet (5%), or its usage drops (5%), over the last days
    quiet = rng.random(n) < 0.05
    drop = rng.random(n) < 0.05
    folder = landing / "cdr" / f"day={DAY}"
    folder.mkdir(parents=True)
    rows = 0
    with (folder / "cdr.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["record_id", "msisdn", "event_ts", "event_type", "direction", "duration_s",
                    "volume_kb", "other_party", "other_party_operator", "cell_id", "roaming",
                    "roaming_country", "charge"])  # fmt: skip
        for back in range(LOOKBACK):
            day = DAY - dt.timedelta(days=back)
            rate = daily_rate * np.where(drop & (back < 5), 0.1, 1.0) * np.where(quiet & (back < 6), 0.0, 1.0)
            counts = rng.poisson(rate * 1.3)  # a third of them incoming
            lines = np.repeat(np.arange(n), counts)
            seconds = rng.integers(0, 86400, len(lines))
            direction = np.where(rng.random(len(lines)) < 0.77, "out", "in")
            for k, (i, s, d) in enumerate(zip(lines, seconds, direction, strict=True)):
                ts = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=int(s))
                w.writerow([f"r{back}-{k}", msisdn[i], ts.strftime("%Y-%m-%d %H:%M:%S"), "voice", d, 60, 0,
                            "", "own", "", "false", "", "0"])  # fmt: skip
            rows += len(lines)
    (folder / "_SUCCESS").touch()
    folder = landing / "care" / f"day={DAY}"
    folder.mkdir(parents=True)
    who = rng.choice(n, max(1, n // 100), replace=False)
    with (folder / "care.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["contact_id", "subscriber_id", "contact_ts", "channel", "category", "resolved"])
        for k, i in enumerate(who):
            ts = dt.datetime.combine(DAY - dt.timedelta(days=int(rng.integers(0, LOOKBACK))), dt.time(10))
            w.writerow(
                [f"k{k}", ids[i], ts.strftime("%Y-%m-%d %H:%M:%S"), "call_center", "complaint", "false"]
            )
    (folder / "_SUCCESS").touch()
    folder = landing / "port_requests" / f"day={DAY}"
    folder.mkdir(parents=True)
    with (folder / "requests.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["request_id", "subscriber_id", "request_ts", "request_type", "plan_id",
                    "contract_end_date", "port_out_operator"])  # fmt: skip
        for k, i in enumerate(rng.choice(n, max(1, n // 1000), replace=False)):
            w.writerow([f"pr{k}", ids[i], f"{DAY} 11:00:00", "port_out_request", "", "", "OP_B"])
    (folder / "_SUCCESS").touch()
    return rows


def duckdb_triggers(lake: Lake, landing: Path) -> dict[str, int]:
    """The same triggers (default settings) as one DuckDB query over the day's files: lines per trigger."""
    cfg = lake.cfg.daily
    day = f"DATE '{DAY}'"
    path = {t: sql_string(lake.path(t)) for t in ("subscriptions", "features_monthly")}
    files = {
        s: sql_string(str(landing / s / f"day={DAY}" / "*.csv")) for s in ("cdr", "care", "port_requests")
    }
    sql = f"""
    WITH subs AS (SELECT subscriber_id, msisdn, household_id, contract_end_date
                  FROM delta_scan({path["subscriptions"]})
                  WHERE month = '{MONTH}' AND status <> 'deactivated'),
    lines AS (SELECT s.*, f.out_events_avg_3m AS baseline, f.out_active_days_avg_3m / 31.0 AS active_share
              FROM subs s JOIN delta_scan({path["features_monthly"]}) f USING (subscriber_id)
              WHERE f.month = '{MONTH}'),
    cdr AS (SELECT DISTINCT ON (record_id) *
            FROM read_csv({files["cdr"]}, header = true, all_varchar = true)),
    usage AS (SELECT subscriber_id, CAST(event_ts AS DATE) AS d, count(*) AS n
              FROM cdr JOIN subs USING (msisdn)
              WHERE direction = 'out' AND CAST(event_ts AS TIMESTAMP) < {day} + 1 GROUP BY ALL),
    per_line AS (SELECT l.subscriber_id, l.household_id, l.contract_end_date, l.baseline, l.active_share,
                   max(u.d) AS last_active,
                   coalesce(sum(u.n) FILTER (WHERE u.d > {day} - {cfg.usage_drop.days}), 0) AS drop_n,
                   coalesce(sum(u.n) FILTER (WHERE u.d > {day} - {cfg.contract_end.usage_days}), 0) AS end_n
                 FROM lines l LEFT JOIN usage u USING (subscriber_id) GROUP BY ALL),
    care AS (SELECT * FROM read_csv({files["care"]}, header = true, all_varchar = true)),
    requests AS (SELECT * FROM read_csv({files["port_requests"]}, header = true, all_varchar = true)),
    fired AS (
      SELECT subscriber_id, 'silence' AS t FROM per_line
       WHERE coalesce({day} - last_active, {lake.cfg.daily.lookback_days}) >= {cfg.silence.days}
         AND active_share >= {cfg.silence.min_active_share}
      UNION ALL SELECT subscriber_id, 'usage_drop' FROM per_line
       WHERE baseline >= {cfg.usage_drop.min_baseline_events}
         AND drop_n < baseline * {cfg.usage_drop.days} / 30.0 * {cfg.usage_drop.max_share}
      UNION ALL SELECT subscriber_id, 'contract_end' FROM per_line
       WHERE contract_end_date BETWEEN {day} AND {day} + {cfg.contract_end.days} AND baseline > 0
         AND end_n < baseline * {cfg.contract_end.usage_days} / 30.0 * {cfg.contract_end.max_share}
      UNION ALL SELECT DISTINCT subscriber_id, 'port_out' FROM requests
       WHERE request_type = 'port_out_request' AND CAST(request_ts AS DATE) = {day}
      UNION ALL SELECT DISTINCT c.subscriber_id, 'open_complaint' FROM care c
       WHERE category = 'complaint' AND resolved = 'false'
         AND {day} - CAST(contact_ts AS DATE)
             BETWEEN {cfg.open_complaint.days} AND {cfg.open_complaint.max_age_days}
         AND NOT EXISTS (SELECT 1 FROM care r WHERE r.subscriber_id = c.subscriber_id AND r.resolved = 'true'
                         AND r.contact_ts > c.contact_ts)
    ),
    live AS (SELECT f.* FROM fired f JOIN subs USING (subscriber_id)),
    households AS (SELECT l.subscriber_id FROM (SELECT DISTINCT subscriber_id FROM live) l
                   JOIN subs a USING (subscriber_id)
                   JOIN subs b ON a.household_id = b.household_id AND a.subscriber_id <> b.subscriber_id
                   WHERE b.contract_end_date BETWEEN {day} AND {day} + {cfg.contract_end.days} GROUP BY ALL)
    SELECT t, count(DISTINCT subscriber_id) FROM live GROUP BY t
    UNION ALL SELECT 'household_contract_end', count(*) FROM households
    """
    con = duckdb_connect()
    return {t: int(n) for t, n in con.execute(sql).fetchall()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", type=Path, default=Path("bench/cache/daily"))
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    shutil.rmtree(args.work, ignore_errors=True)
    landing, root = args.work / "landing", args.work / "lake"
    cfg = load_config([], [f"lake.root={root}", f"landing.root={landing}"])
    spark = get_spark(cfg)
    lake = Lake(spark, cfg)
    rows = synthesise(lake, landing, args.subscribers, args.seed)
    ours = timed(lambda: daily_warnings_day(spark, cfg, DAY.isoformat()))
    reference = timed(lambda: duckdb_triggers(lake, landing))
    again = timed(lambda: duckdb_triggers(lake, landing))
    ref_s = min(reference.seconds, again.seconds)
    result = {
        "machine": Machine.current().to_dict(),
        "subscribers": args.subscribers,
        "cdr_rows": rows,
        "ours_s": round(ours.seconds, 2),
        "duckdb_s": round(ref_s, 2),
        "ratio": round(ours.seconds / ref_s, 2),
        "peak_mb": ours.peak_mb,
        "ours_by_trigger": ours.value.by_trigger,
        "duckdb_by_trigger": reference.value,
        "warnings": ours.value.warnings,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"daily-{args.subscribers}-{dt.datetime.now():%Y%m%d-%H%M}.json"
    path.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
