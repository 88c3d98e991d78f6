"""What the demo's outputs are and where (``jobs/demo_summary.py``; ``make demo`` ends with it)."""

from __future__ import annotations

from pipelines.core.config import load_config
from pipelines.core.runner import job_parser


def _show(con, title: str, sql: str) -> None:
    """Print a small query result under a title; a table the demo did not reach is skipped."""
    try:
        rows = con.execute(sql).fetchall()
    except Exception:  # the stage that writes the table has not run
        return
    print(f"\n{title}:")
    for row in rows:
        print("  ", *row)


def main(argv: list[str] | None = None) -> int:
    args = job_parser("demo summary", month=False).parse_args(argv)
    cfg = load_config(args.conf, args.set)
    from pipelines.core.sql import duckdb_connect

    con = duckdb_connect()
    print("\nLanding zone:", cfg.landing_root)
    print("Lake (Delta tables):", cfg.lake_root)
    for name in (
        "subscriptions",
        "cdr",
        "billing",
        "care",
        "campaign_outcomes",
        "quarantine",
        "data_quality",
        "features_monthly",
        "labels_monthly",
        "model_performance",
        "warning_list",
        "customer_risk",
        "score_monitoring",
        "offer_assignments",
        "pipeline_runs",
    ):
        path = cfg.table_path(name)
        try:
            rows = con.execute(f"SELECT count(*) FROM delta_scan('{path}')").fetchone()[0]
        except Exception:
            rows = "-"
        print(f"  {name:<18} {rows:>10}  {path}")
    dq, features, labels = (cfg.table_path(t) for t in ("data_quality", "features_monthly", "labels_monthly"))
    _show(
        con,
        "CDR data quality by month (read, loaded, quarantined, duplicates, publishable)",
        f"SELECT month, rows_read, rows_loaded, rows_quarantined, duplicates, publishable "
        f"FROM delta_scan('{dq}') WHERE source = 'cdr' ORDER BY month",
    )
    _show(
        con,
        "Features by month (subscribers, new / early / established cohort, hard warnings)",
        f"SELECT month, count(*), count_if(cohort = 'new'), count_if(cohort = 'early'), "
        f"count_if(cohort = 'established'), count_if(hard_warning) "
        f"FROM delta_scan('{features}') GROUP BY month ORDER BY month",
    )
    _show(
        con,
        "Labels by snapshot month (available, churners, labelled rows, churn rate)",
        f"SELECT month, bool_or(label_available), count_if(is_churn), count_if(is_churn IS NOT NULL), "
        f"round(avg(CASE WHEN is_churn THEN 1.0 WHEN NOT is_churn THEN 0.0 END), 4) "
        f"FROM delta_scan('{labels}') GROUP BY month ORDER BY month",
    )
    perf = cfg.table_path("model_performance")
    _show(
        con,
        "Latest training, test month (model, cohort, AUC, top-decile lift, calibration error, EMPC)",
        f"WITH p AS (SELECT * FROM delta_scan('{perf}') WHERE source = 'train' "
        f"AND month = (SELECT max(month) FROM delta_scan('{perf}') WHERE source = 'train')) "
        "SELECT model, cohort, round(max(value) FILTER (metric = 'roc_auc'), 4), "
        "round(max(value) FILTER (metric = 'top_decile_lift'), 2), "
        "round(max(value) FILTER (metric = 'ece'), 4), "
        "round(max(value) FILTER (metric = 'empc'), 3) FROM p GROUP BY model, cohort ORDER BY cohort, model",
    )
    warning, monitoring = cfg.table_path("warning_list"), cfg.table_path("score_monitoring")
    _show(
        con,
        "Warning list, latest month (risk band, value tier, lines, mean probability, with reasons)",
        f"WITH w AS (SELECT * FROM delta_scan('{warning}') "
        f"WHERE score_month = (SELECT max(score_month) FROM delta_scan('{warning}'))) "
        "SELECT score_month, risk_band, value_tier, count(*), round(avg(churn_probability), 4), "
        "count(reasons) FROM w GROUP BY ALL ORDER BY score_month, risk_band, value_tier",
    )
    _show(
        con,
        "Churn types of the latest warning list (lines with reasons)",
        f"SELECT churn_type, count(*) FROM delta_scan('{warning}') "
        f"WHERE score_month = (SELECT max(score_month) FROM delta_scan('{warning}')) "
        "AND churn_type IS NOT NULL GROUP BY churn_type ORDER BY 2 DESC",
    )
    _show(
        con,
        "Drift warnings (score month, monitored column, PSI)",
        f"SELECT score_month, name, round(value, 3) FROM delta_scan('{monitoring}') WHERE warning "
        "ORDER BY score_month, value DESC",
    )
    offers = cfg.table_path("offer_assignments")
    _show(
        con,
        "Offer assignments by month (status, reason or offer, lines, expected net value, cost)",
        f"SELECT score_month, status, coalesce(offer_id, exclusion_reason), count(*), "
        f"round(sum(expected_net_value), 1), round(sum(cost), 1) FROM delta_scan('{offers}') "
        "GROUP BY ALL ORDER BY 1, 2, 4 DESC",
    )
    print(
        f"\nMLflow: {cfg.mlflow_tracking_uri} (experiment {cfg.mlflow.experiment!r}, model "
        f"{cfg.train.registered_model!r})\n  browse: mlflow ui --backend-store-uri {cfg.mlflow_tracking_uri}"
    )
    status = 0
    try:
        repeated = con.execute(
            f"SELECT count(*) - count(DISTINCT record_id) FROM delta_scan('{cfg.table_path('cdr')}')"
        ).fetchone()[0]
    except Exception:  # no cdr table yet
        repeated = None
    if repeated is not None:
        verdict = "ok" if repeated == 0 else "ERROR: an event attributed to several subscribers"
        print(f"\nCDR records loaded more than once: {repeated} ({verdict})")
        status = 0 if repeated == 0 else 1
    print("\nQuery with SQL, no Spark needed:")
    quarantine = cfg.table_path("quarantine")
    print("  from pipelines.core.sql import duckdb_connect")
    print(f"  duckdb_connect().sql(\"SELECT * FROM delta_scan('{quarantine}') LIMIT 5\").show()")
    return status
