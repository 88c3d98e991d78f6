"""What each new feature family is worth (issue 32): AUC with and without it, on the richer sample data.

The sample data is generated with the demo overlay (``conf/demo.yml``: the slow churn drivers on), then
ingested and built month by month in order (the long windows read earlier ``features_monthly`` rows), in
a temporary lake. A plain LightGBM (fixed parameters, the cohort a feature) is trained on the matured
months ``--train`` and tested on the later matured months ``--test``:

- ``base``: the columns the feature build had before the long windows (every family below left out);
- ``+family``: base and one family; ``all``: every column; ``all-family``: every column but one family.

Each comparison's AUC gain has a paired bootstrap interval (the same resampled test rows for both
models). Writes ``bench/results/feature-gain-<stamp>.json``; ``--lake`` keeps (or reuses) the built lake.

python -m bench.feature_gain --months 2024-01..2025-04 --subscribers 2500 --out bench/results/
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.calendar import months_between
from features.columns import (
    BASELINE_MEASURES,
    CARE_CATEGORIES,
    NO_CARE_CONTACT_IN_LOOKBACK,
    avg_col,
    ratio_avg_col,
)
from features.usage import TREND_MEASURES as USAGE_TREND_MEASURES

log = logging.getLogger("bench.feature_gain")

ROOT = Path(__file__).resolve().parent.parent
DEMO_CONF = ROOT / "conf" / "demo.yml"
NOT_FEATURES = {
    "subscriber_id",
    "month",
    "hard_warning",
    "port_out_request_date",
    "customer_id",
    "household_id",
    "activation_date",
    "contract_end_date",
    "status",
    "plan_id",
}
CATEGORICAL = ("cohort", "lifecycle_stage", "segment", "plan_type", "acquisition_channel", "region")
LGB_PARAMS = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "verbose": -1,
    "seed": 7,
    "num_threads": 1,
    "deterministic": True,
}
ROUNDS = 200
BOOTSTRAP = 500
STATS = r"(avg|slope|max|ratio_avg|ratio_max)_([0-9]+)m"


def _family_of(col: str) -> str | None:
    """The new family a column belongs to (None: a base column)."""
    usage = [m for m in BASELINE_MEASURES if m not in ("arpu", "invoice_amount")]
    if re.fullmatch(r"history_months_[0-9]+m", col):
        return "history_months"
    if col.endswith("_plan_fit_m0"):
        return "plan_fit"
    if col == NO_CARE_CONTACT_IN_LOOKBACK:
        return "recency_flag"
    if any(re.fullmatch(rf"care_{c}_[0-9]+m", col) for c in CARE_CATEGORIES):
        return "care_by_category"
    for family, measures in (
        ("usage_baseline", usage),
        ("spend_baseline", ["arpu", "invoice_amount"]),
        ("competitor_trend", ["competitor_out_share"]),
        ("circle_trend", ["distinct_contacts", "frequent_contacts", "churned_contact_share"]),
        ("care_trend", ["care_contacts"]),
    ):
        for m in measures:
            hit = re.fullmatch(rf"{m}_{STATS}", col)
            # the usage family's own trend_months columns (avg_3m, ratio_avg_3m) are base columns
            if hit and not (
                hit[1] in ("avg", "ratio_avg") and hit[2] == "3" and f"{m}_{hit[1]}_3m" in BASE_3M
            ):
                return family
            if col == f"{m}_decline_months":
                return family
    return None


# the usage and billing families' own trend_months means and ratios (3 months) are base columns
BASE_3M = {
    *[avg_col(m, 3) for m in (*USAGE_TREND_MEASURES, "arpu")],
    *[ratio_avg_col(m, 3) for m in USAGE_TREND_MEASURES],
}


def build_lake(months: Sequence[str], subscribers: int, seed: int, root: Path) -> Any:
    """Generate, ingest and build every month in order under ``root``; returns the config."""
    from pipelines.build_features import build_features_month
    from pipelines.core.config import load_config
    from pipelines.core.spark import get_spark
    from pipelines.generate_sample_data import sample_options
    from pipelines.ingest import ingest_month
    from pipelines.sample_data.writer import generate

    cfg = load_config([DEMO_CONF], [f"lake.root={root / 'lake'}", f"landing.root={root / 'landing'}"])
    generate(root / "landing", sample_options(cfg, months, subscribers=subscribers, seed=seed))
    spark = get_spark(cfg)
    for month in months:
        t0 = time.perf_counter()
        ingest_month(spark, cfg, month)
        build_features_month(spark, cfg, month)
        log.info("%s built in %.0f s", month, time.perf_counter() - t0)
    return cfg


def read_rows(root: Path) -> pd.DataFrame:
    """Feature rows with a settled label (``is_churn`` true or false)."""
    from deltalake import DeltaTable

    features = DeltaTable(str(root / "lake" / "features_monthly")).to_pandas()
    labels = DeltaTable(str(root / "lake" / "labels_monthly")).to_pandas()
    labels = labels[labels["is_churn"].notna()][["subscriber_id", "month", "is_churn"]]
    return features.merge(labels, on=["subscriber_id", "month"])


def _matrix(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    x = frame[list(columns)].copy()
    for c in x.columns:
        if c in CATEGORICAL:
            x[c] = x[c].astype("category")
        elif x[c].dtype == object or str(x[c].dtype) == "boolean":
            x[c] = pd.to_numeric(x[c].astype("float"), errors="coerce")
    return x


def fit_predict(train: pd.DataFrame, test: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    import lightgbm as lgb

    data = lgb.Dataset(_matrix(train, columns), label=train["is_churn"].astype(int))
    booster = lgb.train(LGB_PARAMS, data, num_boost_round=ROUNDS)
    log.info("fitted on %d columns", len(columns))
    return np.asarray(booster.predict(_matrix(test, columns)))


def paired_gain(y: np.ndarray, base: np.ndarray, other: np.ndarray, seed: int) -> dict[str, float]:
    """AUC(other) - AUC(base) and its 95% paired bootstrap interval (test rows resampled)."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(BOOTSTRAP):
        i = rng.integers(0, y.size, y.size)
        if y[i].min() == y[i].max():
            continue
        gains.append(roc_auc_score(y[i], other[i]) - roc_auc_score(y[i], base[i]))
    low, high = np.quantile(gains, [0.025, 0.975])
    gain = roc_auc_score(y, other) - roc_auc_score(y, base)
    return {"gain": round(float(gain), 4), "low": round(float(low), 4), "high": round(float(high), 4)}


def measure(rows: pd.DataFrame, train_months: Sequence[str], test_months: Sequence[str]) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    features = [c for c in rows.columns if c not in NOT_FEATURES and c != "is_churn"]
    families: dict[str, list[str]] = {}
    for c in features:
        fam = _family_of(c)
        if fam:
            families.setdefault(fam, []).append(c)
    base_cols = [c for c in features if _family_of(c) is None]
    train = rows[rows["month"].isin(train_months)]
    test = rows[rows["month"].isin(test_months)]
    y = test["is_churn"].astype(int).to_numpy()
    base = fit_predict(train, test, base_cols)
    every = fit_predict(train, test, features)
    out: dict[str, Any] = {
        "train_rows": len(train),
        "test_rows": len(test),
        "test_churners": int(y.sum()),
        "base_columns": len(base_cols),
        "all_columns": len(features),
        "auc_base": round(float(roc_auc_score(y, base)), 4),
        "auc_all": round(float(roc_auc_score(y, every)), 4),
        "all_vs_base": paired_gain(y, base, every, 1),
        "families": {},
    }
    for i, (fam, cols) in enumerate(sorted(families.items())):
        added = fit_predict(train, test, [*base_cols, *cols])
        dropped = fit_predict(train, test, [c for c in features if c not in cols])
        out["families"][fam] = {
            "columns": len(cols),
            "added_to_base": paired_gain(y, base, added, 10 + i),
            "dropped_from_all": paired_gain(y, every, dropped, 100 + i),
        }
        log.info("%s: %s", fam, out["families"][fam])
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| family | columns | AUC gain added to base [95%] | AUC change dropped from all [95%] |",
        "|---|---|---|---|",
    ]
    for fam, r in result["families"].items():
        a, d = r["added_to_base"], r["dropped_from_all"]
        lines.append(
            f"| {fam} | {r['columns']} | {a['gain']:+.3f} [{a['low']:+.3f}, {a['high']:+.3f}] "
            f"| {d['gain']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--months", default="2024-01..2025-04")
    p.add_argument("--subscribers", type=int, default=2500)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--train", default="2024-04..2024-12", help="snapshot months trained on")
    p.add_argument("--test", default="2025-01..2025-02", help="snapshot months tested on (later, matured)")
    p.add_argument("--lake", type=Path, help="keep the built lake here (reused when it holds features)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    months = months_between(*args.months.split(".."))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.lake or Path(tmp)
        if not (root / "lake" / "features_monthly").exists():
            build_lake(months, args.subscribers, args.seed, root)
        built_s = time.perf_counter() - t0
        rows = read_rows(root)
    result = {
        "benchmark": "feature_gain",
        "stamp": time.strftime("%Y%m%d-%H%M", time.gmtime()),
        "machine": {"python": platform.python_version(), "cpus": 2, "shared_with_other_jobs": True},
        "sample_data": {
            "conf": "conf/demo.yml (drivers on)",
            "months": args.months,
            "subscribers": args.subscribers,
            "seed": args.seed,
        },
        "train_months": args.train,
        "test_months": args.test,
        "model": {"lightgbm": LGB_PARAMS, "rounds": ROUNDS, "bootstrap": BOOTSTRAP},
        "build_seconds": round(built_s, 1),
        **measure(rows, months_between(*args.train.split("..")), months_between(*args.test.split(".."))),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"feature-gain-{result['stamp']}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))
    print(f"base AUC {result['auc_base']}, all {result['auc_all']}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
