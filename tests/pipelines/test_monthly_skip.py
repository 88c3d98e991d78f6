"""When the monthly run skips a stage: the fingerprint rules on literal run records (no Spark)."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

from pipelines.monthly import unchanged_since

T0 = dt.datetime(2024, 7, 1, 10, 0)


def run(stage, status, minute, tables, *, attempt="a1", outputs=None, config="c1", run_id=None, length=1):
    fp = {"config": config, "code": "v1", "tables": tables, "attempt": attempt}
    return SimpleNamespace(
        stage=stage,
        status=status,
        run_id=run_id or f"{stage}-{minute}",
        started_at=T0 + dt.timedelta(minutes=minute),
        ended_at=T0 + dt.timedelta(minutes=minute + length),
        fingerprint=json.dumps(fp),
        output_versions=json.dumps(outputs or {}),
    )


def now(tables, config="c1"):
    return {"config": config, "code": "v1", "tables": tables}


def test_same_inputs_skip_and_any_change_runs():
    runs = [run("score", "success", 0, {"features_monthly": 4}, outputs={"warning_list": 7})]
    assert unchanged_since(runs, "score", now({"features_monthly": 4})).startswith(
        "same inputs as run score-0"
    )
    assert unchanged_since(runs, "score", now({"features_monthly": 5})) is None
    assert unchanged_since(runs, "score", now({"features_monthly": 4}, config="c2")) is None
    assert unchanged_since([], "score", now({"features_monthly": 4})) is None


def test_a_later_stage_of_the_month_may_rewrite_an_input_but_an_earlier_one_may_not():
    runs = [
        run("evaluate", "success", 0, {"offer_assignments": 3}),
        run("match_offers", "success", 2, {"offer_assignments": 3}, outputs={"offer_assignments": 4}),
        run("ingest", "success", 5, {}, attempt="a9", outputs={"cdr": 12}),
        run("build_features", "success", 0, {"cdr": 11}),
    ]
    # matching (after evaluation) wrote v4 of what the evaluation read: still the same inputs
    assert unchanged_since(runs, "evaluate", now({"offer_assignments": 4}))
    # a re-ingest (before build_features) wrote a new cdr version: the features are built again
    assert unchanged_since(runs, "build_features", now({"cdr": 12})) is None


def test_a_failed_part_of_the_last_attempt_means_run_again():
    ok = run("ingest", "success", 0, {}, attempt="a2", run_id="cdr", length=5)
    failed = run("ingest", "failed", 0, {}, attempt="a2", run_id="billing", length=1)
    assert unchanged_since([ok, failed], "ingest", now({})) is None
    # an earlier failed attempt, then a complete one: skip
    old = run("ingest", "failed", -30, {}, attempt="a1")
    assert unchanged_since([old, ok], "ingest", now({}))
    # a success, then a failed attempt: run again
    later = run("ingest", "failed", 20, {}, attempt="a3")
    assert unchanged_since([ok, later], "ingest", now({})) is None


def test_an_interrupted_part_of_the_last_attempt_means_run_again():
    earlier = run("ingest", "success", -30, {}, attempt="a1", run_id="all")
    # a forced rerun stopped by SIGTERM: one source replaced, the next one interrupted
    done = run("ingest", "success", 0, {}, attempt="a2", run_id="subscriptions", length=5)
    stopped = run("ingest", "interrupted", 0, {}, attempt="a2", run_id="cdr", length=1)
    assert unchanged_since([earlier, done], "ingest", now({}))  # without the record it would skip
    assert unchanged_since([earlier, done, stopped], "ingest", now({})) is None


def test_the_uplift_stage_runs_between_evaluation_and_matching_and_keeps_the_exit_statuses():
    from pipelines.monthly import EXIT_STATUS, STAGES

    assert STAGES.index("evaluate") < STAGES.index("uplift") < STAGES.index("match_offers")
    # a scheduler's mapping of the earlier stages stays (README: 15 match_offers)
    assert [EXIT_STATUS[s] for s in ("ingest", "evaluate", "match_offers", "uplift")] == [10, 14, 15, 16]
    runs = [
        run("uplift", "success", 0, {"offer_assignments": 3}),
        run("match_offers", "success", 2, {"offer_assignments": 3}, outputs={"offer_assignments": 4}),
    ]
    # matching (after the uplift stage) rewrote the assignments the uplift stage read: same inputs
    assert unchanged_since(runs, "uplift", now({"offer_assignments": 4}))
    assert unchanged_since(runs, "uplift", now({"offer_assignments": 5})) is None
