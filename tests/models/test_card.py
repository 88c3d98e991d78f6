"""The model card and its fairness view (pure)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models import ModelParams, ModelSpec, fit_family
from models.card import fairness_view, render_card
from models.family import evaluate_family


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    region = rng.choice(["north", "south"], n)
    return pd.DataFrame(
        {
            "subscriber_id": [f"s{seed}-{i}" for i in range(n)],
            "tenure_months": rng.integers(0, 60, n),
            "x": x,
            "region": region,
            "plan_type": rng.choice(["prepaid", "postpaid", None], n),
            "is_churn": rng.random(n) < 1 / (1 + np.exp(-(-2.5 + 1.5 * x + 0.5 * (region == "north")))),
        }
    )


def test_fairness_view_counts_each_group_s_rows_churn_and_contacts():
    frame = pd.DataFrame({"region": ["a", "a", "b", "b", "b"], "segment": ["x", "y", "x", "x", None]})
    y = np.array([1, 0, 0, 1, 0])
    p = np.array([0.9, 0.1, 0.2, 0.6, 0.04])
    view = fairness_view(frame, y, p, contact_threshold=0.2).set_index(["group", "value"])
    assert list(view.index) == [("region", "a"), ("region", "b"), ("segment", "(unknown)"), ("segment", "x"),
                                ("segment", "y")]  # fmt: skip
    assert view.loc[("region", "b"), "rows"] == 3
    assert view.loc[("region", "b"), "churn_rate"] == pytest.approx(1 / 3)
    assert view.loc[("region", "b"), "contact_rate"] == pytest.approx(2 / 3)
    assert view.loc[("region", "a"), "roc_auc"] == 1.0
    assert np.isnan(view.loc[("segment", "y"), "roc_auc"])  # one class


def test_the_card_holds_window_features_metrics_against_baselines_and_fairness():
    spec = ModelSpec(id_columns=["subscriber_id"], params=ModelParams(num_boost_round=50, num_threads=1))
    family = fit_family(_frame(4000, 1), spec=spec, valid=_frame(2000, 2))
    test = _frame(2000, 3)
    metrics = evaluate_family(family, test)
    p = family.predict_proba(test)
    card = render_card(
        family,
        name="churn_family",
        version="7",
        window={
            "run_month": "2024-05",
            "fit_months": ("2024-01",),
            "valid_month": "2024-02",
            "test_month": "2024-03",
        },
        test_metrics=metrics,
        fairness=fairness_view(test, test["is_churn"].to_numpy(float), p, contact_threshold=0.05),
        contact_threshold=0.05,
        limits=["a limit"],
    )
    assert card.startswith("# Model card: churn_family version 7\n")
    assert "fitted on 2024-01, validated on 2024-02, tested on 2024-03" in card
    assert "`x`" in card and "`region`" in card
    auc = metrics["logistic"]["all"]["roc_auc"]
    assert "| all | logistic (calibrated) | 2,000 |" in card and f"{auc:.4f}" in card
    north = (test["region"] == "north").sum()
    assert f"| region | north | {north:,} |" in card and "| plan_type | (unknown) |" in card
    assert "- a limit" in card
