"""Schemas of tables written or read by more than one module (Spark DDL strings), in one home.

``model_performance`` holds the train job's test metrics (``source=train``), the backtest's
(``backtest``) and the evaluate job's realised metrics (``realised``); ``score_monitoring`` holds the
score job's distribution and drift rows (written by the score stage, read by the demo summary and
analysts). A stage imports a schema from here, never from another stage.
"""

from __future__ import annotations

PERFORMANCE_SCHEMA = (
    "month string, source string, test_month string, model string, cohort string, metric string, "
    "value double, model_version string, run_id string"
)
MONITORING_SCHEMA = (
    "score_month string, kind string, cohort string, name string, value double, threshold double, "
    "warning boolean, reference string, model_name string, model_version string"
)

# What each stage writes (its leases: pipelines.core.lease.hold_stage): tables it replaces for the run
# month, and tables it must hold whole because its reads span months (the cross-delivery
# de-duplication of CDRs reads earlier deliveries).
STAGE_OUTPUTS: dict[str, tuple[str, ...]] = {
    "ingest": ("subscriptions", "billing", "care", "campaign_outcomes", "quarantine", "data_quality"),
    "build_features": ("features_monthly", "labels_monthly"),
    "train": ("model_performance",),
    "score": ("warning_list", "customer_risk", "score_monitoring"),
    "evaluate": (
        "model_performance",
        "campaign_effect",
        "programme_effect",
        "offer_effects",
        "campaign_feedback",
    ),
    "uplift": (),
    "match_offers": ("offer_assignments",),
}
STAGE_OUTPUTS_WHOLE: dict[str, tuple[str, ...]] = {"ingest": ("cdr",)}
