"""Stage: the daily warnings of one day, and what the daily contacts use of the month's campaign.

``daily_warnings_day(spark, cfg, D)``:

1. ingests the day's deliveries of ``cdr``, ``care`` and ``port_requests`` (:mod:`.ingest`);
2. evaluates the configured triggers on what was known at the end of D (:mod:`.history`, :mod:`.triggers`)
   and rolls them up to the line, its customer and its household;
3. values each triggered line's offers as matching does (``models.offers``: eligibility and the contact
   policy), with the line's monthly churn probability raised by its triggers' strength
   (``p' = 1 - (1 - p)(1 - strength)``), and ranks the lines by ``p' x`` the value tier's weight;
4. allows a contact down the ranking while the month's campaign budget and each offer's capacity last:
   the campaign of score month M is carried out during M+1, so a contact on a day of M+1 counts against
   it, after what ``offer_assignments`` of M spent and the earlier days' daily contacts;
5. replaces the ``day = D`` partition of ``daily_warnings``.

Why a line may not be contacted (``policy_reason``), in order: ``not_scored`` (not on the monthly list),
``programme_holdout``, ``cooling_down`` (in the month's campaign, its control group included, in an
earlier campaign within the cool-down, or contacted by an earlier daily warning within it), then the
monthly policy's reasons (``no_consent``, ``unprofitable``, ``not_eligible``, ``open_complaint``,
``below_value``), then ``capacity`` and ``budget``.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from features import contract as C
from features.calendar import add_months, month_start
from models.offers import contract_state, net_values, policy_reasons
from pipelines.core.config import Config
from pipelines.core.experiment import is_experiment_line
from pipelines.core.lake import Lake, decimals_as_double
from pipelines.core.manifest import recorded_run
from pipelines.daily.history import (
    care_contacts,
    live_lines,
    monthly_month,
    out_events_by_day,
    status_requests,
)
from pipelines.daily.ingest import ingest_day
from pipelines.daily.triggers import care_since, evaluate_triggers, roll_up, window_start, with_household
from pipelines.offer_candidates import VALUE_INPUTS, candidate_frame

log = logging.getLogger(__name__)

WARNINGS_SCHEMA = (
    "day string, subscriber_id string, customer_id string, household_id string, triggers array<string>, "
    "evidence string, trigger_strength double, customer_lines_triggered int, household_lines_triggered int, "
    "score_month string, churn_probability double, risk_band string, value_tier string, "
    "adjusted_probability double, priority double, rank int, customer_rank int, suggested_offer_id string, "
    "suggested_channel string, suggested_cost double, contact_allowed boolean, policy_reason string, "
    "campaign_month string"
)
POLICY_INPUTS = (*VALUE_INPUTS, "programme_holdout")


@dataclass
class DailyReport:
    day: str
    score_month: str
    loaded: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    warnings: int = 0
    by_trigger: dict[str, int] = field(default_factory=dict)
    contacts: int = 0
    spend: float = 0.0
    budget_left: float = 0.0


def campaign_use(lake: Lake, campaign_month: str, day: str) -> tuple[float, dict[str, int]]:
    """What the campaign of ``campaign_month`` used before ``day``: spend and contacts per offer, of its
    monthly assignments and of the daily warnings allowed on earlier days of the month it runs in."""
    spend, used = 0.0, {}
    if lake.exists("offer_assignments"):
        for r in (
            lake.read("offer_assignments")
            .where((F.col("score_month") == campaign_month) & (F.col("status") == "assigned"))
            .groupBy("offer_id")
            .agg(F.count("*").alias("n"), F.sum("cost").alias("cost"))
            .collect()
        ):
            spend += float(r.cost or 0.0)
            used[r.offer_id] = used.get(r.offer_id, 0) + int(r.n)
    if lake.exists("daily_warnings"):
        for r in (
            lake.read("daily_warnings")
            .where(
                (F.col("campaign_month") == campaign_month) & (F.col("day") < day) & F.col("contact_allowed")
            )
            .groupBy("suggested_offer_id")
            .agg(F.count("*").alias("n"), F.sum("suggested_cost").alias("cost"))
            .collect()
        ):
            spend += float(r.cost or 0.0)
            used[r.suggested_offer_id] = used.get(r.suggested_offer_id, 0) + int(r.n)
    return spend, used


def contacted_lines(lake: Lake, campaign_month: str, day: dt.date, cooldown_months: int) -> DataFrame:
    """Lines of the month's campaign (treated or control) and lines a daily warning allowed to contact
    within the cool-down before ``day``."""
    parts = [lake.spark.createDataFrame([], "subscriber_id string")]
    if lake.exists("offer_assignments"):
        parts.append(
            lake.read("offer_assignments")
            .where((F.col("score_month") == campaign_month) & is_experiment_line())
            .select("subscriber_id")
        )
    if lake.exists("daily_warnings"):
        since = month_start(add_months(day.strftime("%Y-%m"), -cooldown_months)).isoformat()
        parts.append(
            lake.read("daily_warnings")
            .where((F.col("day") >= since) & (F.col("day") < day.isoformat()) & F.col("contact_allowed"))
            .select("subscriber_id")
        )
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out.distinct().withColumn("_contacted", F.lit(True))


def decide(frame: pd.DataFrame, cfg: Config, *, budget_left: float, used: dict[str, int]) -> pd.DataFrame:
    """Suggested offer, priority, ranks and the contact decision of a day's triggered lines (pure)."""
    params = cfg.offers.model_copy(
        update={"min_band": "low"}
    )  # the trigger, not the band, makes the candidate
    out = frame.copy()
    p = out["churn_probability"].astype(float).fillna(0.0).to_numpy()
    strength = out["trigger_strength"].astype(float).to_numpy()
    out["adjusted_probability"] = 1 - (1 - p) * (1 - strength)
    weights = out["value_tier"].map(cfg.daily.tier_weights).astype(float).fillna(0.0).to_numpy()
    out["priority"] = out["adjusted_probability"] * weights
    out = out.sort_values(["priority", "subscriber_id"], ascending=[False, True], kind="stable").reset_index(
        drop=True
    )
    out["rank"] = np.arange(1, len(out) + 1, dtype=np.int32)
    first = out.groupby("customer_id", sort=False)["rank"].transform("min")
    out["customer_rank"] = first.rank(method="dense").astype(np.int32)
    offers = out.assign(
        churn_probability=out["adjusted_probability"],
        contract_state=contract_state(
            out["has_contract"], out["out_of_contract"], out["months_to_contract_end"]
        ),
        open_complaint=out["open_complaint"].eq(True)
        | out["triggers"].map(lambda t: "open_complaint" in list(t)),
        risk_band=out["risk_band"].fillna("low"),
    )
    values = net_values(offers, params) if len(out) else np.zeros((0, len(params.offers)))
    policy = policy_reasons(offers, params, values)
    usable_any = np.isfinite(policy.usable).any(axis=1)
    best = np.where(
        usable_any, np.argmax(np.where(np.isfinite(policy.usable), policy.usable, -1e300), axis=1), -1
    )
    fallback = np.isfinite(values).any(axis=1)
    best = np.where(
        best < 0,
        np.where(fallback, np.argmax(np.where(np.isfinite(values), values, -1e300), axis=1), -1),
        best,
    )
    reason = policy.reason.copy()
    before = [
        (out["churn_probability"].isna().to_numpy(), "not_scored"),
        (out["programme_holdout"].eq(True).to_numpy(), "programme_holdout"),
        (
            (out["cooling_down"].eq(True) | out["_contacted"].eq(True)).to_numpy(),
            "cooling_down",
        ),
    ]
    first_reason = np.full(len(out), None, dtype=object)
    for rows, why in before:
        first_reason[(first_reason == None) & rows] = why  # noqa: E711 (elementwise)
    reason = np.where(first_reason != None, first_reason, reason)  # noqa: E711
    ids = [o.id for o in params.offers]
    capacity = {o.id: (None if o.capacity is None else o.capacity - used.get(o.id, 0)) for o in params.offers}
    left = budget_left
    allowed = np.zeros(len(out), dtype=bool)
    for i in range(len(out)):  # down the ranking
        if reason[i] is not None:
            continue
        offer = params.offers[int(best[i])]
        if capacity[offer.id] is not None and capacity[offer.id] <= 0:
            reason[i] = "capacity"
        elif offer.cost > left:
            reason[i] = "budget"
        else:
            allowed[i] = True
            left -= offer.cost
            if capacity[offer.id] is not None:
                capacity[offer.id] -= 1
    out["suggested_offer_id"] = [ids[int(b)] if b >= 0 else None for b in best]
    by_id = {o.id: o for o in params.offers}
    out["suggested_channel"] = [by_id[o].channel if o else None for o in out["suggested_offer_id"]]
    out["suggested_cost"] = [float(by_id[o].cost) if o else None for o in out["suggested_offer_id"]]
    out["contact_allowed"] = allowed
    out["policy_reason"] = reason
    return out


def daily_warnings_day(
    spark: SparkSession, cfg: Config, day: str, *, allow_incomplete: bool = False
) -> DailyReport:
    """Ingest ``day``'s deliveries, evaluate its triggers and replace its ``daily_warnings`` partition."""
    lake = Lake(spark, cfg)
    d = dt.date.fromisoformat(day)
    with recorded_run(lake, "daily_warnings", day[:7], scope=day) as run:
        ingested = {s: ingest_day(lake, s, day, allow_incomplete=allow_incomplete) for s in C.DAILY_SOURCES}
        month = monthly_month(lake, d)
        campaign_month = add_months(day[:7], -1)
        report = DailyReport(day, month)
        report.loaded = {s: r.rows_loaded for s, r in ingested.items() if r is not None}
        report.quarantined = {s: r.rows_quarantined for s, r in ingested.items() if r is not None}
        first = window_start(d, cfg.daily.lookback_days)
        requests = status_requests(lake, d).cache()
        lines = live_lines(lake, month, requests).cache()
        usage = out_events_by_day(lake, first, d).cache()
        care = care_contacts(lake, care_since(d, cfg.daily), d).cache()
        # cached between the steps that read them more than once (the plans would repeat every scan)
        fired = evaluate_triggers(
            lines, usage, care, requests, day=d, params=cfg.daily, late_days=cfg.ingest.late_days
        ).cache()
        fired_all = with_household(lines, fired, day=d, params=cfg.daily).cache()
        rolled = roll_up(fired_all, lines)
        candidates = decimals_as_double(candidate_frame(lake, month, cfg.offers).select(*POLICY_INPUTS))
        contacted = contacted_lines(lake, campaign_month, d, cfg.offers.policy.cooldown_months)
        # the day's triggered lines (a few in a hundred of the base): ranking and budget need them whole
        frame = (
            rolled.join(candidates, "subscriber_id", "left")
            .join(contacted, "subscriber_id", "left")
            .toPandas()
        )
        for df in (fired_all, fired, care, usage, lines, requests):
            df.unpersist()
        spend, used = campaign_use(lake, campaign_month, day)
        report.budget_left = cfg.offers.budget - spend
        decided = decide(frame, cfg, budget_left=report.budget_left, used=used)
        decided["day"], decided["score_month"], decided["campaign_month"] = day, month, campaign_month
        rows = write_day(lake, decided, day)
        report.warnings = rows
        report.contacts = int(decided["contact_allowed"].sum())
        report.spend = float(decided.loc[decided["contact_allowed"], "suggested_cost"].sum())
        report.by_trigger = {t: int(n) for t, n in decided["triggers"].explode().value_counts().items()}
        run.row_counts = {"warnings": report.warnings, "contacts": report.contacts, **report.loaded}
        run.flags = {"by_trigger": report.by_trigger, "score_month": month}
        run.output_versions = lake.versions(["daily_warnings", "quarantine", "data_quality"])
    log.info(
        "daily warnings %s: %d lines (%s), %d contacts allowed for %.0f (campaign %s: %.0f of budget left)",
        day,
        report.warnings,
        ", ".join(f"{t} {n}" for t, n in sorted(report.by_trigger.items())) or "none",
        report.contacts,
        report.spend,
        campaign_month,
        report.budget_left,
    )
    return report


def write_day(lake: Lake, decided: pd.DataFrame, day: str) -> int:
    """Replace the ``day`` partition of ``daily_warnings`` (a rerun of the day replaces it whole)."""
    names = [f.split(" ")[0] for f in WARNINGS_SCHEMA.split(", ")]

    def value(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            return [str(x) for x in v]
        if isinstance(v, float) and np.isnan(v):
            return None
        if isinstance(v, np.generic):
            return v.item()
        return v

    rows = [tuple(value(v) for v in r) for r in decided.reindex(columns=names).itertuples(index=False)]
    lake.replace_rows(rows, WARNINGS_SCHEMA, "daily_warnings", {"day": [day]})  # none fired: emptied
    return len(rows)
