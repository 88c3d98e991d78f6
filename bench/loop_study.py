"""The targeting study (issue 30): four ways to spend a month's offer budget, valued by the simulator's truth.

The closed loop runs as ``make demo`` runs it (the demo overlay, the simulated operator, the whole monthly
pipeline), in a fresh temporary lake and landing zone. Each month, after ``match_offers`` and before the
operator carries the offer list out, the month's candidates are targeted OFFLINE by four policies, each
with the same solver (:func:`models.offers.solve_exact`), the same contact policy (one offer per line, the
offers' eligibility and capacities, the harm exclusions, the programme hold-out left alone) and the same
budget (``offers.budget``, the matcher's):

- ``uplift``: each pair valued by the uplift stage's latest fitted model (promoted or not: a refused
  candidate is refitted exactly as the stage fitted it; a skipped month keeps the previous model), the
  rule for the offers it does not cover;
- ``rule``: ``churn_probability x the offer's measured effect`` (the matcher without uplift);
- ``random``: random eligible (line, offer) pairs until nothing more fits the budget (mean of a few seeds);
- ``oracle``: the simulator's true expected effect of every pair
  (:func:`pipelines.sample_data.campaign.expected_effect`).

Every policy's picks are then valued by the truth: ``sum(true effect x value_of_save - cost)``, with the
expected saves (the sum of the true effects) beside. The offer list the pipeline really sent (exploration
included, its control group left out) is valued the same way (``pipeline``). Nothing offline reaches the
simulation: the loop's files, offers and outcomes are those ``make demo`` would produce.

After the loop: the programme hold-out's effect per score month and pooled (``programme_effect``), and the
uplift stage's Qini of the model against the rule per run month (``pipeline_runs.flags``).

python -m bench.loop_study --months 2024-01..2025-02 --subscribers 2500 --seed 7 --out bench/results/
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.offers import contract_state, net_values, policy_reasons, solve_exact, value_of_save
from models.params import OfferParams

log = logging.getLogger("bench.loop_study")

ROOT = Path(__file__).resolve().parent.parent
DEMO_CONF = ROOT / "conf" / "demo.yml"
POLICIES = ("uplift", "rule", "random", "oracle")
REPORTED = (*POLICIES, "pipeline")  # the pipeline's own offer list, valued the same way


# ------------------------------------------------------------------------------------- pure valuation
@dataclass(frozen=True)
class PolicyValue:
    """A policy's picks valued by the truth: lines offered, their cost, the expected saves (the sum of
    the true effects) and the net value (saves x value of a save - cost)."""

    lines: float
    cost: float
    saves: float
    net_value: float

    @property
    def net_per_cost(self) -> float | None:
        return self.net_value / self.cost if self.cost > 0 else None

    def to_dict(self) -> dict[str, float | None]:
        return {**asdict(self), "net_per_cost": self.net_per_cost}


def value_picks(
    offer: np.ndarray, truth: np.ndarray, save_value: np.ndarray, cost: np.ndarray
) -> PolicyValue:
    """``offer``: offer index per line (-1: none); ``truth``: lines x offers, the true expected effect;
    ``save_value``: per line; ``cost``: per offer."""
    rows = np.flatnonzero(offer >= 0)
    cols = offer[rows]
    effect = truth[rows, cols]
    spend = cost[cols]
    return PolicyValue(
        lines=float(rows.size),
        cost=float(spend.sum()),
        saves=float(effect.sum()),
        net_value=float((effect * save_value[rows] - spend).sum()),
    )


def random_picks(mask: np.ndarray, params: OfferParams, rng: np.random.Generator) -> np.ndarray:
    """Eligible (line, offer) pairs in random order, each taken while its line is free, its offer has
    room and it fits what is left of the budget: random targeting spending the budget."""
    rows, cols = np.nonzero(mask)
    cost = np.array([o.cost for o in params.offers], dtype=float)
    left = np.array([np.inf if o.capacity is None else o.capacity for o in params.offers], dtype=float)
    offer = np.full(mask.shape[0], -1)
    spent = 0.0
    for i in rng.permutation(rows.size):
        r, c = rows[i], cols[i]
        if offer[r] < 0 and left[c] >= 1 and spent + cost[c] <= params.budget + 1e-9:
            offer[r], spent = c, spent + cost[c]
            left[c] -= 1
    return offer


def oracle_values(truth: np.ndarray, save_value: np.ndarray, params: OfferParams) -> np.ndarray:
    """Lines x offers: the true expected net value (the truth in place of a model's estimate)."""
    cost = np.array([o.cost for o in params.offers], dtype=float)
    return truth * save_value[:, None] - cost[None, :]


def evaluate_policies(
    values: Mapping[str, np.ndarray],
    mask: np.ndarray,
    truth: np.ndarray,
    save_value: np.ndarray,
    params: OfferParams,
    *,
    random_seeds: Sequence[int] = (0, 1, 2, 3, 4),
) -> dict[str, PolicyValue]:
    """Each policy of ``values`` (lines x offers, its own expected net values) solved exactly within the
    budget and capacities on the pairs of ``mask``, and random targeting of the same pairs (the mean over
    ``random_seeds``); all valued by ``truth``."""
    cost = np.array([o.cost for o in params.offers], dtype=float)
    truth = np.where(mask, np.nan_to_num(truth), 0.0)
    out = {}
    for name, v in values.items():
        picks = solve_exact(np.where(mask, v, -np.inf), params).offer
        out[name] = value_picks(picks, truth, save_value, cost)
    draws = [
        value_picks(random_picks(mask, params, np.random.default_rng(s)), truth, save_value, cost)
        for s in random_seeds
    ]
    out["random"] = PolicyValue(
        *(float(np.mean([getattr(d, f) for d in draws])) for f in ("lines", "cost", "saves", "net_value"))
    )
    return out


def total_values(months: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Each policy summed over the months that targeted anything (net value per cost of the sums)."""
    out = {}
    for name in REPORTED:
        rows = [m["policies"][name] for m in months if m.get("policies") and name in m["policies"]]
        if rows:
            total = PolicyValue(*(sum(r[f] for r in rows) for f in ("lines", "cost", "saves", "net_value")))
            out[name] = total.to_dict()
    return out


# ------------------------------------------------------------------------------------- the loop (Spark)
@dataclass
class UpliftState:
    """The uplift stage's latest fitted model and where it came from."""

    model: Any = None  # models.uplift.UpliftModel
    source: str = "none"  # promoted vN as of M, refused as of M, ...


def _stage_flags(lake: Any, stage: str, month: str) -> dict[str, Any] | None:
    """The flags of the latest successful run of ``stage`` for ``month`` (None: it did not run)."""
    if not lake.exists("pipeline_runs"):
        return None
    runs = [
        r
        for r in lake.read_rows("pipeline_runs", columns=["stage", "month", "status", "started_at", "flags"])
        if r["stage"] == stage and r["month"] == month and r["status"] == "success"
    ]
    if not runs:
        return None
    latest = max(runs, key=lambda r: str(r["started_at"]))
    return json.loads(latest["flags"]) if latest["flags"] else {}


def latest_uplift(lake: Any, cfg: Any, month: str, state: UpliftState) -> UpliftState:
    """The model the uplift stage fitted as of ``month``: the registered champion when promoted, the
    candidate refitted on the stage's fitted months when refused (the fit is seeded and deterministic), the
    previous one when the stage skipped."""
    from models.uplift import fit_uplift
    from pipelines.core.experiment import experiment_lines
    from pipelines.core.tracking import CHAMPION, configure_mlflow, load_uplift

    flags = _stage_flags(lake, "uplift", month)
    status = (flags or {}).get("status")
    if status == "promoted":
        configure_mlflow(cfg)
        loaded = load_uplift(cfg.uplift.registered_model, CHAMPION)
        if loaded is not None:
            return UpliftState(loaded[0], f"promoted v{loaded[1]} as of {month}")
    if status == "refused":
        fit, held = flags["fit_months"], flags["holdout_months"]
        frame = experiment_lines(lake, [*fit, *held], cfg.uplift.features)
        model = fit_uplift(
            frame[frame["score_month"].isin(fit)], [o.id for o in cfg.offers.offers], cfg.uplift
        )
        return UpliftState(model, f"refused as of {month} (refitted)")
    return state


def study_month(
    lake: Any, cfg: Any, month: str, operator: Any, uplift: UpliftState, random_seeds: Sequence[int]
) -> dict[str, Any]:
    """The four policies on ``month``'s candidates (after matching, before the campaign)."""
    from pipelines.closed_loop import offer_list
    from pipelines.core.experiment import CONTRACT_STATE
    from pipelines.offer_candidates import VALUE_INPUTS, candidate_frame, offer_effects
    from pipelines.sample_data.campaign import expected_effect

    row: dict[str, Any] = {"month": month}
    if not lake.exists("warning_list") or (month,) not in lake.partition_values(
        "warning_list", "score_month"
    ):
        row["note"] = "no warning list (no champion yet): the operator's own campaign"
        return row
    params: OfferParams = cfg.offers
    offer_ids = [o.id for o in params.offers]
    features = [] if uplift.model is None else [c for c in uplift.model.features if c != CONTRACT_STATE]
    columns = list(dict.fromkeys([*VALUE_INPUTS, *features, "programme_holdout"]))
    frame = candidate_frame(lake, month, params, features).select(*columns).toPandas()
    frame = frame.assign(
        contract_state=contract_state(
            frame["has_contract"], frame["out_of_contract"], frame["months_to_contract_end"]
        )
    )
    effects = offer_effects(lake, month)
    rule = net_values(frame, params, effects)
    policy = policy_reasons(frame, params, rule)
    mask = policy.explorable & ~frame["programme_holdout"].fillna(False).to_numpy(dtype=bool)[:, None]
    predicted = None if uplift.model is None else uplift.model.predict_effect(frame, offer_ids)
    uplift_values = net_values(frame, params, effects, uplift=predicted)

    sim = operator.sim
    m = sim.month_index - 1
    sub = frame["subscriber_id"].astype(str).str.slice(1).astype(np.int64).to_numpy()
    truth = np.zeros(mask.shape)
    gap, window = cfg.churn.gap_months, cfg.churn.window_months
    for j, o in enumerate(params.offers):
        rows = np.flatnonzero(mask[:, j])
        truth[rows, j] = expected_effect(
            sim, month, m, sub[rows], np.full(rows.size, o.id, dtype=object), np.full(rows.size, o.channel),
            gap_months=gap, window_months=window,
        )  # fmt: skip
    save_value = value_of_save(frame["arpu_3m"], params)
    values = {
        "uplift": uplift_values,
        "rule": rule,
        "oracle": oracle_values(truth, save_value, params),
    }
    results = evaluate_policies(values, mask, truth, save_value, params, random_seeds=random_seeds)
    results["pipeline"] = _pipeline_value(
        offer_list(lake, month), frame, save_value, params, sim, month, m, cfg
    )
    covered = [] if uplift.model is None else uplift.model.covered(offer_ids)
    match_flags = _stage_flags(lake, "match_offers", month) or {}
    row |= {
        "lines": len(frame),
        "candidates": int(mask.any(axis=1).sum()),
        "eligible_pairs": int(mask.sum()),
        "budget": params.budget,
        "matcher_targeting": match_flags.get("targeting"),
        "uplift_model": uplift.source,
        "uplift_offers": covered,
        # the share of the eligible pairs the uplift model valued (the rule valued the rest)
        "uplift_predicted_share": (
            float(np.isfinite(predicted[mask]).mean()) if predicted is not None and mask.any() else 0.0
        ),
        "policies": {name: results[name].to_dict() for name in REPORTED},
    }
    return row


def _pipeline_value(
    offers: pd.DataFrame | None,
    frame: pd.DataFrame,
    save_value: np.ndarray,
    params: OfferParams,
    sim: Any,
    month: str,
    m: int,
    cfg: Any,
) -> PolicyValue:
    """The offer list the pipeline sent (its treated lines, exploration included) valued by the truth."""
    from pipelines.sample_data.campaign import expected_effect

    if offers is None:
        return PolicyValue(0.0, 0.0, 0.0, 0.0)
    sent = offers[offers["status"] == "assigned"]
    index = pd.Series(np.arange(len(frame)), index=frame["subscriber_id"].astype(str))
    rows = index.reindex(sent["subscriber_id"].astype(str)).to_numpy()
    cost_of = {o.id: o.cost for o in params.offers}
    channel_of = {o.id: o.channel for o in params.offers}
    offer = sent["intended_offer_id"].to_numpy(dtype=object)
    effect = expected_effect(
        sim, month, m, sent["subscriber_id"].astype(str).str.slice(1).astype(np.int64).to_numpy(), offer,
        np.array([channel_of[o] for o in offer], dtype=object),
        gap_months=cfg.churn.gap_months, window_months=cfg.churn.window_months,
    )  # fmt: skip
    cost = np.array([cost_of[o] for o in offer], dtype=float)
    value = np.array([save_value[int(r)] if not math.isnan(r) else 0.0 for r in rows])
    return PolicyValue(
        float(len(sent)), float(cost.sum()), float(effect.sum()), float((effect * value - cost).sum())
    )


def programme_summary(lake: Any, cfg: Any) -> dict[str, Any]:
    """The programme hold-out's effect (hold-out churn - outside churn; positive: the programme keeps
    lines) per score month, from the last evaluation, and pooled over the score months (Mantel-Haenszel).
    The hold-out is the same lines every month, so the pooled interval treats repeated lines as new ones:
    it is narrower than the evidence."""
    from pyspark.sql import functions as F

    from models.evaluation import pooled_effect

    if not lake.exists("programme_effect"):
        return {}
    table = lake.read("programme_effect")
    last = table.agg(F.max("month")).first()[0]
    rows = (
        table.where((F.col("month") == last) & (F.col("cohort") == "all") & (F.col("risk_band") == "all"))
        .orderBy("score_month")
        .toPandas()
    )
    per_month = [
        {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in r.items()
            if k not in ("cohort", "risk_band")
        }
        for r in rows.to_dict("records")
    ]
    strata = pd.DataFrame(
        {
            "treated": rows["outside"],
            "treated_churners": (rows["churn_rate_outside"] * rows["outside"]).round().fillna(0),
            "holdout": rows["holdout"],
            "holdout_churners": (rows["churn_rate_holdout"] * rows["holdout"]).round().fillna(0),
        }
    )
    pooled = pooled_effect(strata, cfg.evaluate.confidence)
    return {
        "evaluated_as_of": last,
        "confidence": cfg.evaluate.confidence,
        "per_score_month": per_month,
        "pooled": {k: (None if math.isnan(v) else v) for k, v in pooled.items()},
    }


def uplift_summary(lake: Any, months: Sequence[str]) -> list[dict[str, Any]]:
    """The uplift stage per run month: its status, the Qini of the model and of the rule on the held-out
    month(s), the gains' lower bounds, the offers compared."""
    out = []
    for month in months:
        flags = _stage_flags(lake, "uplift", month)
        if flags is None:
            continue
        qini = flags.get("qini") or {}
        net = flags.get("net_value") or {}
        out.append(
            {
                "month": month,
                "status": flags.get("status"),
                "holdout_months": flags.get("holdout_months"),
                "qini_uplift": qini.get("uplift"),
                "qini_rule": qini.get("rule"),
                "qini_gain_low": flags.get("qini_gain_low"),
                "net_value_uplift": net.get("uplift"),
                "net_value_rule": net.get("rule"),
                "value_gain_low": flags.get("value_gain_low"),
                "compared": flags.get("compared"),
                "reason": None if flags.get("status") != "skipped" else (flags.get("decision") or [None])[0],
            }
        )
    return out


def run_study(
    spark: Any, cfg: Any, months: Sequence[str], opts: Any, random_seeds: Sequence[int]
) -> dict[str, Any]:
    """The closed loop of ``months`` (``make demo``'s) with the offline policies each month, between the
    pipeline's run and the campaign; the study's result."""
    from pipelines.closed_loop import run_closed_loop
    from pipelines.core.lake import Lake

    lake = Lake(spark, cfg)
    state = UpliftState()
    rows = []
    t0 = time.perf_counter()

    def study(month: str, operator: Any) -> None:
        nonlocal state
        state = latest_uplift(lake, cfg, month, state)
        t1 = time.perf_counter()
        row = study_month(lake, cfg, month, operator, state, random_seeds)
        row["study_seconds"] = round(time.perf_counter() - t1, 1)
        rows.append(row)
        log.info("loop study %s (%.0fs): %s", month, time.perf_counter() - t0, _one_line(row))

    run_closed_loop(spark, cfg, months, opts, before_campaign=study)
    return {
        "months": rows,
        "total": total_values(rows),
        "programme_effect": programme_summary(lake, cfg),
        "uplift_stage": uplift_summary(lake, months),
        "loop_seconds": round(time.perf_counter() - t0, 1),
    }


def _one_line(row: Mapping[str, Any]) -> str:
    if not row.get("policies"):
        return row.get("note", "")
    return (
        ", ".join(f"{n} {p['net_value']:.0f} on {p['cost']:.0f}" for n, p in row["policies"].items())
        + f" ({row['uplift_model']})"
    )


# ------------------------------------------------------------------------------------- report
def _plain(value: Any) -> Any:
    """JSON for numpy scalars (their Python value) and anything else (its text)."""
    return value.item() if hasattr(value, "item") else str(value)


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def render_tables(result: Mapping[str, Any]) -> str:
    """The totals, the per-month net value per cost, the programme effect and the Qini, as Markdown."""
    lines = [
        "| policy | net value per unit of cost | net value | cost | lines offered | expected saves |",
        "|---|---|---|---|---|---|",
    ]
    for name, p in result["total"].items():
        lines.append(
            f"| {name} | {_fmt(p['net_per_cost'], 2)} | {_fmt(p['net_value'])} | {_fmt(p['cost'])} | "
            f"{_fmt(p['lines'])} | {_fmt(p['saves'], 1)} |"
        )
    lines += [
        "",
        "| month | uplift model | " + " | ".join(REPORTED) + " |",
        "|---|---|" + "---|" * len(REPORTED),
    ]
    for row in result["months"]:
        if not row.get("policies"):
            continue
        cells = [
            f"{_fmt(row['policies'][n]['net_per_cost'], 2)} ({_fmt(row['policies'][n]['net_value'])})"
            for n in REPORTED
        ]
        lines.append(f"| {row['month']} | {row['uplift_model']} | " + " | ".join(cells) + " |")
    pooled = result.get("programme_effect", {}).get("pooled")
    if pooled:
        lines += [
            "",
            f"programme hold-out effect (pooled): {pooled['effect']:.4f} "
            f"[{_fmt(pooled['effect_low'], 4)}, {_fmt(pooled['effect_high'], 4)}] "
            f"over {pooled['treated']:.0f} outside and {pooled['holdout']:.0f} hold-out line-months",
        ]
    lines += [
        "",
        "| run month | uplift stage | Qini uplift | Qini rule | gain's lower bound |",
        "|---|---|---|---|---|",
    ]
    for q in result.get("uplift_stage", []):
        lines.append(
            f"| {q['month']} | {q['status']} | {_fmt(q['qini_uplift'], 4)} | {_fmt(q['qini_rule'], 4)} | "
            f"{_fmt(q['qini_gain_low'], 4)} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from pipelines.core.config import load_config
    from pipelines.core.runner import configure_logging, month_range
    from pipelines.core.spark import get_spark
    from pipelines.generate_sample_data import sample_options

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--months", type=month_range, default=month_range("2024-01..2025-02"))
    parser.add_argument("--subscribers", type=int, default=2500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--bad-rows", type=float, default=0.002)
    parser.add_argument("--format", choices=["csv", "parquet", "mixed"], default="mixed")
    parser.add_argument("--random-seeds", type=int, default=5, help="random targeting: the mean of this many")
    parser.add_argument("--conf", action="append", default=[], help="overlay after conf/demo.yml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--keep", action="store_true", help="keep the temporary lake and landing zone")
    args = parser.parse_args(argv)
    configure_logging()
    work = Path(tempfile.mkdtemp(prefix="loop-study-"))
    conf = [str(DEMO_CONF), *args.conf]
    sets = [f"lake.root={work / 'lake'}", f"landing.root={work / 'landing'}", *args.set]
    cfg = load_config(conf, sets)
    opts = sample_options(
        cfg,
        args.months,
        subscribers=args.subscribers,
        seed=args.seed,
        bad_rows=args.bad_rows,
        fmt=args.format,
    )
    log.info("loop study: %s..%s, lake and landing in %s", args.months[0], args.months[-1], work)
    t0 = time.perf_counter()
    try:
        result = run_study(get_spark(cfg), cfg, args.months, opts, list(range(args.random_seeds)))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    stamp = time.strftime("%Y%m%d-%H%M")
    out = {
        "study": "loop",
        "created": stamp,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "run": {
            "months": [args.months[0], args.months[-1]],
            "n_months": len(args.months),
            "subscribers": args.subscribers,
            "seed": args.seed,
            "bad_rows": args.bad_rows,
            "format": args.format,
            "conf": [
                str(Path(c).resolve().relative_to(ROOT)) if ROOT in Path(c).resolve().parents else c
                for c in conf
            ],
            "set": args.set,
            "budget": cfg.offers.budget,
            "value_horizon_months": cfg.offers.value_horizon_months,
            "margin": cfg.offers.margin,
            "random_seeds": args.random_seeds,
            "config_hash": cfg.config_hash(),
        },
        **result,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"loop-study-{stamp}.json"
    path.write_text(json.dumps(out, indent=1, default=_plain) + "\n")
    print(render_tables(out))
    print(f"\nsaved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
