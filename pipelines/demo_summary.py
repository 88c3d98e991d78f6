"""What the demo's outputs are and where (``jobs/demo_summary.py``; ``make demo`` ends with it)."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.core.config import Config, load_config
from pipelines.core.runner import job_parser
from pipelines.sql import duckdb_views, existing_tables

# (title, query over the table views); a query over a table the run did not reach is skipped
SECTIONS = (
    (
        "Stages run (stage: runs, skipped, failed, seconds)",
        "SELECT stage, count_if(status = 'success'), count_if(status = 'skipped'), count_if(status = "
        "'failed'), "
        "round(sum(duration_s)) FROM pipeline_runs GROUP BY stage ORDER BY min(started_at)",
    ),
    (
        "CDR data quality by month (read, loaded, quarantined, duplicates, publishable)",
        "SELECT month, rows_read, rows_loaded, rows_quarantined, duplicates, publishable FROM data_quality "
        "WHERE source = 'cdr' ORDER BY month",
    ),
    (
        "Labels by snapshot month (churners, labelled lines, churn rate)",
        "SELECT month, count_if(is_churn), count_if(is_churn IS NOT NULL), "
        "round(avg(CASE WHEN is_churn THEN 1.0 WHEN NOT is_churn THEN 0.0 END), 4) FROM labels_monthly "
        "WHERE label_available GROUP BY month ORDER BY month",
    ),
    (
        "Latest training, on its test month (cohort, model, AUC, top-decile lift, calibration error, EMPC)",
        "WITH p AS (SELECT * FROM model_performance WHERE source = 'train' "
        "AND month = (SELECT max(month) FROM model_performance WHERE source = 'train')) "
        "SELECT cohort, model, round(max(value) FILTER (metric = 'roc_auc'), 4), "
        "round(max(value) FILTER (metric = 'top_decile_lift'), 2), round(max(value) FILTER (metric = "
        "'ece'), 4), "
        "round(max(value) FILTER (metric = 'empc'), 3) FROM p GROUP BY ALL ORDER BY cohort, model",
    ),
    (
        "Realised performance of the warning lists once labels matured (score month, AUC, lift, ECE)",
        "SELECT score_month, round(max(value) FILTER (metric = 'roc_auc'), 4), "
        "round(max(value) FILTER (metric = 'top_decile_lift'), 2), round(max(value) FILTER (metric = "
        "'ece'), 4) "
        "FROM model_performance WHERE source = 'realised' AND cohort = 'all' "
        "AND month = (SELECT max(month) FROM model_performance WHERE source = 'realised') GROUP BY ALL "
        "ORDER BY 1",
    ),
    (
        "Warning list, latest month (risk band, value tier, lines, mean probability, lines with reasons)",
        "WITH w AS (SELECT * FROM warning_list WHERE score_month = (SELECT max(score_month) FROM "
        "warning_list)) "
        "SELECT risk_band, value_tier, count(*), round(avg(churn_probability), 4), count(reasons) FROM w "
        "GROUP BY ALL ORDER BY risk_band, value_tier",
    ),
    (
        "Head of the latest warning list (subscriber, cohort, probability, tier, churn type, top drivers)",
        "SELECT subscriber_id, cohort, round(churn_probability, 3), value_tier, churn_type, "
        "array_to_string(list_transform(reasons, r -> r.feature), ', ') FROM warning_list "
        "WHERE score_month = (SELECT max(score_month) FROM warning_list) AND reasons IS NOT NULL "
        "ORDER BY churn_probability DESC LIMIT 8",
    ),
    (
        "Churn types of the latest warning list (lines with reasons)",
        "SELECT churn_type, count(*) FROM warning_list WHERE score_month = (SELECT max(score_month) FROM "
        "warning_list) "
        "AND churn_type IS NOT NULL GROUP BY churn_type ORDER BY 2 DESC",
    ),
    (
        "Drift warnings (score month, monitored column, PSI)",
        "SELECT score_month, name, round(value, 3) FROM score_monitoring WHERE warning ORDER BY "
        "score_month, value DESC",
    ),
    (
        "Offers by month (assigned, held out, excluded, spend, expected net value)",
        "SELECT score_month, count_if(status = 'assigned'), count_if(status = 'holdout'), "
        "count_if(status = 'excluded'), round(sum(cost) FILTER (status = 'assigned')), "
        "round(sum(expected_net_value) FILTER (status = 'assigned')) FROM offer_assignments GROUP BY 1 "
        "ORDER BY 1",
    ),
    (
        "Exclusion reasons, latest month",
        "SELECT exclusion_reason, count(*) FROM offer_assignments WHERE status = 'excluded' "
        "AND score_month = (SELECT max(score_month) FROM offer_assignments) GROUP BY 1 ORDER BY 2 DESC",
    ),
    (
        "Measured campaign effects, latest evaluation (score month, offer, treated, control, churn treated / "
        "control, effect [95% interval])",
        "SELECT score_month, offer_id, treated, holdout, round(churn_rate_treated, 3), "
        "round(churn_rate_holdout, 3), "
        "round(effect, 3) || ' [' || round(effect_low, 3) || ', ' || round(effect_high, 3) || ']' "
        "FROM campaign_effect WHERE month = (SELECT max(month) FROM campaign_effect) AND cohort = 'all' "
        "AND risk_band = 'all' ORDER BY score_month, offer_id = 'all' DESC, offer_id",
    ),
    (
        "Offer effects the matcher uses now (offer, effect used, measured [95% interval], prior, treated, "
        "control, net value after cost, underpowered)",
        "SELECT offer_id, round(effect, 3), round(measured, 3) || ' [' || round(measured_low, 3) || ', ' || "
        "round(measured_high, 3) || ']', prior, treated, holdout, round(net_value), underpowered "
        "FROM offer_effects WHERE month = (SELECT max(month) FROM offer_effects) AND dimension = 'all' "
        "ORDER BY offer_id",
    ),
    (
        "The whole programme, latest evaluation (score month, lines outside / in the programme hold-out, "
        "churn outside / in it, effect [95% interval])",
        "SELECT score_month, outside, holdout, round(churn_rate_outside, 3), round(churn_rate_holdout, 3), "
        "round(effect, 3) || ' [' || round(effect_low, 3) || ', ' || round(effect_high, 3) || ']' "
        "FROM programme_effect WHERE month = (SELECT max(month) FROM programme_effect) AND cohort = 'all' "
        "AND risk_band = 'all' ORDER BY score_month",
    ),
    (
        "Daily warnings (day, trigger, lines warned, contacts allowed within the campaign's budget)",
        "SELECT day, t, count(*), count_if(contact_allowed) FROM daily_warnings, unnest(triggers) AS u(t) "
        "GROUP BY ALL ORDER BY ALL",
    ),
    (
        "Top daily warnings of the last day (rank, line, customer lines warned, value tier, risk, action, "
        "contact or why not, evidence)",
        "SELECT rank, subscriber_id, customer_lines_triggered, value_tier, round(adjusted_probability, 2), "
        "suggested_offer_id, CASE WHEN contact_allowed THEN 'contact' ELSE policy_reason END, evidence "
        "FROM daily_warnings WHERE day = (SELECT max(day) FROM daily_warnings) ORDER BY rank LIMIT 5",
    ),
)


def _show(con, title: str, sql: str) -> None:
    """Print a small query result under a title; a table the demo did not reach is skipped."""
    try:
        rows = con.execute(sql).fetchall()
    except Exception:  # the stage that writes the table has not run
        return
    print(f"\n{title}:")
    for row in rows:
        print("  ", *row)
    if not rows:
        print("   (none yet)")


def _truth(cfg: Config) -> None:
    """The simulated campaign system's true effects (closed-loop demo), beside what was measured."""
    path = Path(cfg.landing_root) / "_sample_manifest" / "manifest.json"
    try:
        truth = [r for r in json.loads(path.read_text()).get("campaign_truth", []) if r["offer_id"] == "all"]
    except (OSError, ValueError):
        return
    if truth:
        print(
            "\nTrue effect of each campaign on its treated lines' churn from the contact month"
            " (known to the simulation only):"
        )
        for r in truth:
            print(
                f"   {r['campaign_month']}  treated {r['treated']}, control {r['holdout']}: "
                f"{r['true_effect']:.4f}"
            )


def main(argv: list[str] | None = None) -> int:
    args = job_parser("demo summary", month=False).parse_args(argv)
    cfg = load_config(args.conf, args.set)
    con = duckdb_views(cfg)
    tables = existing_tables(cfg)
    print("\nLanding zone:", cfg.landing_root)
    print("Lake (Delta tables):", cfg.lake_root)
    for name in cfg.lake.tables:
        rows = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0] if name in tables else "-"
        print(f"  {name:<18} {rows:>10}  {cfg.table_path(name)}")
    for title, sql in SECTIONS:
        _show(con, title, sql)
    _truth(cfg)
    status = 0
    if "cdr" in tables:
        repeated = con.execute("SELECT count(*) - count(DISTINCT record_id) FROM cdr").fetchone()[0]
        verdict = "ok" if repeated == 0 else "ERROR: an event attributed to several subscribers"
        print(f"\nCDR records loaded more than once: {repeated} ({verdict})")
        status = 0 if repeated == 0 else 1
    print(
        f"\nMLflow: {cfg.mlflow_tracking_uri} (experiment {cfg.mlflow.experiment!r}, model "
        f"{cfg.train.registered_model!r}); charts (gains, calibration, importance, scores) are the runs' "
        f"artifacts under {cfg.mlflow_artifact_root}"
    )
    print(f"Logs of every job (with the effective config): {Path(cfg.lake_root) / '_logs'}")
    print("\nNext:")
    print('  make sql Q="SELECT risk_band, value_tier, count(*) FROM warning_list GROUP BY ALL ORDER BY ALL"')
    print("  make mlflow-ui                      # the tracking UI on the lake's store")
    print("  notebooks/0*.ipynb                  # in Jupyter: features, training, warning list and offers")
    print("  make monthly MONTH=2024-12          # a rerun of a month skips what did not change")
    return status
