"""Stage: train the cohort family as of a run month, track it in MLflow, register it, gate its promotion.

Time: the run month M is the month whose data just landed. Only snapshot months whose churn window closed
by the end of M are used, whatever later labels the table holds: the latest is the **test** month (used
for nothing but evaluation and the promotion gates), the one before it **validates** (early stopping,
calibration, the pooled-or-cohort choice, each on its own slice of its rows) and ``train.fit_months``
before that are **fitted**. Never a random split across months.

Once the gates pass, the family that serves is refitted on every month of the window (the validation and
test months too) with the iterations the gates saw (``models.fit.refit_family``): the gated version stays
registered as the evidence, the refit becomes ``champion`` (tagged ``refit_of`` and ``evidence``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from features.errors import MissingColumnsError
from models import ModelSpec, TrainingDataError, evaluate_family, fit_family
from models.family import ModelFamily, labelled_rows, model_scores
from models.fit import drift_reference, refit_family
from models.segments import fit_segments
from pipelines.core import delta
from pipelines.core.config import Config
from pipelines.core.errors import InputNotReadyError
from pipelines.core.faults import fault_point
from pipelines.core.lake import Lake, decimals_as_double
from pipelines.core.manifest import recorded_run
from pipelines.core.maturity import TrainingWindow, labelled_months, training_window
from pipelines.core.tables import PERFORMANCE_SCHEMA
from pipelines.core.treatment import treated_in_window
from pipelines.train.gates import gate_evidence, promotion_decision
from pipelines.train.mlflow_run import log_model_card, log_training_run, metrics_table, performance_rows

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)


def model_spec(cfg: Config) -> ModelSpec:
    """What the family learns from the feature table: ``is_churn`` by cohort of ``tenure_months``."""
    return ModelSpec(
        label="is_churn",
        tenure="tenure_months",
        id_columns=("subscriber_id", "month"),
        cohorts=cfg.cohorts,
        params=cfg.model,
        profit=cfg.train.profit,
    )


def read_training_frame(lake: Lake, months: Sequence[str], spec: ModelSpec) -> pd.DataFrame:
    """Features of ``months`` joined with their (non-null) labels, as pandas; rows contacted inside their
    label window are left out (the model learns the risk if left alone: :mod:`pipelines.core.treatment`).

    Read in the driver with pyarrow (the driver needs the rows whole to fit on them; a Spark job would
    only add the JVM's row-to-Arrow conversion), Spark where only the native Delta connector can read.
    """
    keys = ["subscriber_id", "month"]
    columns = delta.spark_schema_of(lake.path("features_monthly")).fieldNames()
    need = [spec.tenure, *spec.id_columns]
    missing = [c for c in need if c not in columns]
    if missing:
        raise MissingColumnsError(missing, "features_monthly (the model spec needs them)")
    try:
        features = lake.read_arrow("features_monthly", partitions={"month": months})
        labels = lake.read_arrow(
            "labels_monthly", columns=[*keys, "label_available", "is_churn"], partitions={"month": months}
        )
        known = pc.and_(pc.fill_null(labels["label_available"], False), pc.is_valid(labels["is_churn"]))
        labels = labels.filter(known)
        labels = pa.table(
            {
                **{k: labels[k].cast(features.schema.field(k).type) for k in keys},
                spec.label: pc.cast(labels["is_churn"], pa.int32()),
            }
        )
        # joined and sorted in Arrow (multi-threaded), one conversion to pandas: a pandas merge would copy
        # every column block, most of the read's time
        joined = features.join(labels, keys, join_type="inner")
        treated = treated_in_window(lake, months).toArrow()
        if treated.num_rows:
            treated = pa.table({k: treated[k].cast(features.schema.field(k).type) for k in keys})
            joined = joined.join(treated, keys, join_type="left anti")
        # Spark's join order (keys first) and the same rows in the same order, however the files were split
        joined = joined.select([*keys, *[c for c in joined.column_names if c not in keys]])
        return joined.sort_by([("month", "ascending"), ("subscriber_id", "ascending")]).to_pandas()
    except delta.UnsupportedTableError:
        frame = _spark_training_frame(lake, months, spec)
    frame = frame[[*keys, *[c for c in frame.columns if c not in keys]]]
    return frame.sort_values(["month", "subscriber_id"], kind="stable", ignore_index=True)


def run_month_features(lake: Lake, month: str) -> pd.DataFrame:
    """Every feature row of ``month`` as pandas (the drift reference's rows), read as training reads."""
    try:
        return lake.read_arrow("features_monthly", partitions={"month": [month]}).to_pandas()
    except delta.UnsupportedTableError:
        features = lake.read("features_monthly").where(F.col("month") == month)
        return decimals_as_double(features).toPandas()


def _spark_training_frame(lake: Lake, months: Sequence[str], spec: ModelSpec) -> pd.DataFrame:
    features = lake.read("features_monthly").where(F.col("month").isin(*months))
    labels = (
        lake.read("labels_monthly")
        .where(F.col("month").isin(*months) & F.col("label_available") & F.col("is_churn").isNotNull())
        .select("subscriber_id", "month", F.col("is_churn").cast("int").alias(spec.label))
    )
    treated = treated_in_window(lake, months)
    joined = features.join(labels, ["subscriber_id", "month"], "inner").join(
        treated, ["subscriber_id", "month"], "left_anti"
    )
    return decimals_as_double(joined).toPandas()


def _check_cohorts(frame: pd.DataFrame, spec: ModelSpec, window: TrainingWindow) -> None:
    used = frame[frame["month"] != window.test_month]
    cohort = spec.cohort_of(used[spec.tenure])
    for name in spec.cohorts.names:
        rows = cohort == name
        if rows.any() and used.loc[rows, spec.label].sum() == 0:
            raise TrainingDataError(
                f"train as of {window.run_month}: cohort {name} has {int(rows.sum())} labelled rows in "
                f"{window.fit_months[0]}..{window.valid_month} and no churner at all: nothing to learn from "
                "(check the labels, or change cohorts.boundaries)"
            )


@dataclass
class TrainResult:
    window: TrainingWindow
    family: ModelFamily
    test_metrics: dict[str, dict[str, dict[str, float]]]
    rows: dict[str, int]
    steps: dict[str, float]  # seconds of each step of the job: read, fit, test (then mlflow, gates)
    test_frame: pd.DataFrame  # the labelled rows of the test month (evaluation, charts, gates)
    test_scores: dict[str, np.ndarray]  # model_scores of the test rows: family, pooled, logistic
    frame: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)  # every labelled row of the window
    version: str | None = None
    served: ModelFamily | None = None  # the family refitted on the whole window (once promoted)
    served_version: str | None = None  # its registered version, the champion
    # backtest: the served family's metrics on the run month itself (the horizon it is used at)
    horizon_metrics: dict[str, dict[str, dict[str, float]]] | None = None
    run_id: str | None = None
    promoted: bool = False
    decision: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """Seconds fitting the family and its segments."""
        return self.steps["fit"]

    @property
    def reported_metrics(self) -> dict[str, dict[str, dict[str, float]]]:
        """What a run reports: the metrics at the horizon when a backtest measured them, else the test
        month's."""
        return self.test_metrics if self.horizon_metrics is None else self.horizon_metrics


def fit_as_of(lake: Lake, run_month: str) -> TrainResult:
    """Fit and evaluate the family as of ``run_month`` (no tracking, no registration)."""
    cfg = lake.cfg
    spec = model_spec(cfg)
    window = training_window(run_month, labelled_months(lake, run_month), cfg)
    log.info(
        "train as of %s: fit %s, validate %s, test %s",
        run_month,
        ", ".join(window.fit_months),
        window.valid_month,
        window.test_month,
    )
    t_read = time.perf_counter()
    frame = read_training_frame(lake, window.months, spec)
    t_read = time.perf_counter() - t_read
    _check_cohorts(frame, spec, window)
    parts = {m: frame[frame["month"] == m] for m in (window.valid_month, window.test_month)}
    fit = frame[frame["month"].isin(window.fit_months)]
    rows = {"fit": len(fit), "valid": len(parts[window.valid_month]), "test": len(parts[window.test_month])}
    if not all(rows.values()):
        raise InputNotReadyError(f"train as of {run_month}: no labelled rows for some months: {rows}")
    t0 = time.perf_counter()
    family = fit_family(fit, spec=spec, valid=parts[window.valid_month])
    family.segments = fit_segments(
        fit, trend_months=cfg.features.trend_months, k=cfg.score.segments, seed=cfg.model.seed
    )
    seconds = time.perf_counter() - t0
    log.info("train as of %s: fitted %d rows in %.1f s", run_month, rows["fit"], seconds)
    t_test = time.perf_counter()
    scores = model_scores(family, parts[window.test_month])
    test = evaluate_family(family, parts[window.test_month], scores)
    # the drift reference: the test month, which no part of the family was fitted or chosen on
    family.drift = drift_reference(family, parts[window.test_month], scores["family"])
    steps = {"read": t_read, "fit": seconds, "test": time.perf_counter() - t_test}
    return TrainResult(window, family, test, rows, steps, parts[window.test_month], scores, frame)


def refit_as_of(lake: Lake, result: TrainResult) -> ModelFamily:
    """The gated family refitted on every labelled row of its window (fit, validation and test months):
    what serves, trained on the freshest matured months (the baselines that serve no cohort stay the gated
    family's: no line is scored with them; the backtest refits them)."""
    family = refit_family(result.family, result.frame, baselines=False)
    # The drift reference is the refit's own scores (it ranks and spreads them differently from the gated
    # family: a reference of the gated scores made every month drift, PSI ~0.75) of rows it was not fitted
    # on: the run month's subscribers, unlabelled, the first month it serves. The test month, which the
    # refit learnt from, only when the run month has no features yet.
    reference = run_month_features(lake, result.window.run_month)
    described = f"run month {result.window.run_month} (unlabelled, not fitted on)"
    if reference.empty:
        log.warning(
            "train as of %s: no features of the run month; the refit's drift reference is its test month",
            result.window.run_month,
        )
        reference = result.test_frame
        described = f"test month {result.window.test_month} (fitted on by the refit)"
    family.drift = drift_reference(family, reference, family.predict_proba(reference))
    family.report["refit"]["drift_reference"] = described  # named in score_monitoring.reference
    log.info(
        "train as of %s: refitted on %s (%d rows)",
        result.window.run_month,
        ", ".join(family.report["refit"]["months"]),
        family.report["refit"]["rows"],
    )
    return family


# tags of a refitted (served) version: the version whose test metrics are its evidence, and the months
# it was refitted on (written by log_refit, read by comparable_champion)
REFIT_OF_TAG = "refit_of"
REFIT_MONTHS_TAG = "refit_months"


def comparable_champion(
    name: str, champion: tuple[ModelFamily, str], test_month: str
) -> tuple[ModelFamily, str | None]:
    """The family the gates compare a new one with, and a decision line when the comparison is not the
    plain one.

    The champion is a refit on every matured month of its window. Rerun as of the month that promoted it,
    the test month is that window's last, and a model scored on labels it was fitted on looks better than
    it is: the comparison goes through the version it refitted (``refit_of``), whose test month it was.
    Run as of an earlier month, both saw the test month (the version it refitted fitted or validated on
    it): the champion stays, and a line says the comparison favours it."""
    from mlflow.tracking import MlflowClient

    from pipelines.core.tracking import load_family

    family, version = champion
    tags = MlflowClient().get_model_version(name, version).tags
    months = [m for m in tags.get(REFIT_MONTHS_TAG, "").split(",") if m]
    if test_month not in months:
        return family, None
    seen = f"champion: version {version} was fitted on the test month {test_month}"
    repeated = tags.get(REFIT_OF_TAG) if months[-1] == test_month else None
    fitted = load_family(name, repeated) if repeated else None
    if fitted is None:
        return family, f"{seen}: compared with it all the same, the comparison favours it"
    return fitted[0], (
        f"{seen} (its refit); compared through version {fitted[1]}, the fit it repeated, for which "
        "that month was the test month"
    )


def log_refit(lake: Lake, result: TrainResult, name: str) -> str:
    """Register the refitted family in the active run, tagged with the version and run that are its
    evidence: its new version."""
    from mlflow.tracking import MlflowClient

    from pipelines.core.tracking import log_family

    assert result.served is not None and result.version is not None
    version = log_family(result.served, result.test_frame, name)
    log_model_card(
        lake,
        result.served,
        version,
        window=result.window,
        test_metrics=result.test_metrics,
        test_frame=result.test_frame,
        probability=result.test_scores["family"],
        evidence=f"version {result.version}",
    )
    client = MlflowClient()
    tags = {
        REFIT_OF_TAG: result.version,
        "evidence": f"version {result.version}, run {result.run_id}: test month {result.window.test_month}",
        REFIT_MONTHS_TAG: ",".join(result.window.months),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    return version


def write_performance(lake: Lake, results: Sequence[TrainResult], source: str) -> None:
    """Replace the (month, source) partitions of ``model_performance`` with these results (a backtest's:
    the metrics on the run month itself, ``test_month`` = the run month)."""
    rows = [
        row
        for r in results
        for row in performance_rows(
            r.reported_metrics,
            r.window,
            source,
            r.version,
            r.run_id,
            evaluated=None if r.horizon_metrics is None else r.window.run_month,
        )
    ]
    months = sorted({r.window.run_month for r in results})
    lake.replace_rows(rows, PERFORMANCE_SCHEMA, "model_performance", {"month": months, "source": [source]})


def train_month(
    spark: SparkSession, cfg: Config, month: str, *, promote: bool | None = None, reason: str = ""
) -> TrainResult:
    """Train as of ``month``, log to MLflow, register as ``challenger`` and gate ``champion``.

    ``promote``: None applies the gates; True / False override them (logged with ``reason``).
    """
    from pipelines.core.tracking import (
        CHALLENGER,
        CHAMPION,
        AliasMovedError,
        configure_mlflow,
        load_family,
        move_alias,
        set_alias,
    )

    lake = Lake(spark, cfg)
    with recorded_run(lake, "train", month) as run:
        result = fit_as_of(lake, month)
        run.input_versions = lake.versions(["features_monthly", "labels_monthly"])
        run.row_counts = dict(result.rows)
        t_step = time.perf_counter()
        configure_mlflow(cfg)
        test = result.test_frame  # already read with the window: no second Spark read
        result.run_id, result.version = log_training_run(
            lake,
            window=result.window,
            family=result.family,
            rows=result.rows,
            test_metrics=result.test_metrics,
            test_frame=test,
            test_scores=result.test_scores,
            fit_seconds=result.seconds,
        )
        result.steps["mlflow"] = time.perf_counter() - t_step
        t_step = time.perf_counter()
        name = cfg.train.registered_model
        fault_point("registered", name)
        assert result.version is not None
        set_alias(name, CHALLENGER, result.version)
        champion = load_family(name, CHAMPION)
        # the champion's family scores the same test rows (its baselines are not compared)
        old, through = None, None
        if champion is not None and champion[1] != result.version:
            compared, through = comparable_champion(name, champion, result.window.test_month)
            old = compared.predict_proba(test)
        labelled = labelled_rows(test, result.family.spec, "promotion gates")
        evidence = gate_evidence(
            labelled.y,
            result.test_scores["family"],
            old,
            cohort=result.family.cohorts(test),
            cohort_names=result.family.spec.cohorts.names,
            gates=cfg.train.promotion,
            seed=cfg.model.seed,
            sample_weight=labelled.w,
        )
        ok, decision = promotion_decision(evidence, cfg.train.promotion, has_champion=old is not None)
        if through is not None:
            decision.insert(len(decision) - 1, through)
        verdict_at = len(decision) - 1  # the gates' verdict; an override's line follows it, the last word
        if promote is not None:
            decision.append(f"gates {'passed' if ok else 'failed'}; overridden: promote={promote} ({reason})")
            ok = promote
        moved: AliasMovedError | None = None
        import mlflow

        if ok:
            result.served = refit_as_of(lake, result)
            with mlflow.start_run(run_id=result.run_id):
                result.served_version = log_refit(lake, result, name)
            decision.insert(  # before the gates' verdict
                verdict_at,
                f"served: version {result.served_version}, refitted on {', '.join(result.window.months)} "
                f"with the iterations of version {result.version} (whose test metrics are the evidence)",
            )
            try:  # only while the champion is still the one the gates compared against
                move_alias(
                    name, CHAMPION, result.served_version, expected=None if champion is None else champion[1]
                )
            except AliasMovedError as exc:
                ok, moved = False, exc
                decision.append(f"not promoted: {exc}")
        result.promoted, result.decision = ok, decision

        with mlflow.start_run(run_id=result.run_id):
            mlflow.set_tags(
                {
                    "promoted": str(ok),
                    "model_version": result.version,
                    "served_version": str(result.served_version),
                }
            )
            mlflow.log_text("\n".join(decision), "report/promotion.txt")
        if moved is not None:
            raise moved
        verdict = "champion" if ok else "challenger only"
        log.info("%s version %s: %s (%s)", name, result.version, verdict, "; ".join(decision))
        result.steps["gates"] = time.perf_counter() - t_step
        write_performance(lake, [result], "train")
        log.info(
            "train as of %s: %s",
            month,
            ", ".join(f"{step} {seconds:.1f} s" for step, seconds in result.steps.items()),
        )
        run.model_versions = {
            "name": name,
            "version": result.version,
            "served_version": result.served_version,
            "promoted": ok,
            "run_id": result.run_id,
        }
        run.output_versions = lake.versions(["model_performance"])
        run.flags = {
            "window": result.window.months,
            "due": reason,
            "decision": decision,
            "seconds": {step: round(seconds, 2) for step, seconds in result.steps.items()},
        }
    return result


def backtest(spark: SparkSession, cfg: Config, months: Sequence[str]) -> list[TrainResult]:
    """Rolling origin at the horizon the model is used at: as of each run month M, train and gate as the
    train job does, refit the family on the window, and measure it (and its calibrated baselines) on the
    subscribers of M itself, once their labels matured (the lake must hold the months after the last M);
    rows in ``model_performance`` (``source = backtest``, ``test_month`` = M). Nothing is registered."""
    lake = Lake(spark, cfg)
    results = []
    with recorded_run(lake, "train", months[-1], scope=f"backtest {months[0]}..{months[-1]}") as run:
        for month in months:
            result = fit_as_of(lake, month)
            # no drift reference (never serves); the baselines too, compared with it at the horizon
            result.served = refit_family(result.family, result.frame, baselines=True)
            horizon = read_training_frame(lake, [month], result.family.spec)
            if horizon.empty:
                raise InputNotReadyError(
                    f"backtest as of {month}: no matured labels of {month} in the lake yet (its churn window "
                    "must close before the backtest can measure the model at the month it scores)"
                )
            result.horizon_metrics = evaluate_family(result.served, horizon)
            results.append(result)
            table = metrics_table(result.horizon_metrics)
            log.info(
                "backtest %s (scored %s, %d rows):\n%s",
                month,
                month,
                len(horizon),
                table[["model", "cohort", "roc_auc", "top_decile_lift", "ece", "empc"]].to_string(
                    index=False
                ),
            )
        write_performance(lake, results, "backtest")
        run.output_versions = lake.versions(["model_performance"])
        run.flags = {"months": list(months)}
    return results


def summarize_backtest(results: Sequence[TrainResult]) -> pd.DataFrame:
    """Mean metrics per cohort and model over the backtest months (at the horizon when measured there)."""
    frames = []
    for r in results:
        t = metrics_table(r.reported_metrics)
        t["month"] = r.window.run_month
        frames.append(t)
    table = pd.concat(frames)
    cols = ["roc_auc", "top_decile_lift", "ece", "empc"]
    return table.groupby(["cohort", "model"], sort=True)[cols].mean().round(4).reset_index()


def backtest_figure(results: Sequence[TrainResult], cohorts: Sequence[str]) -> Figure:
    """Top-decile lift and calibration error per cohort (``all`` first) and model, means over the run
    months."""
    from models.plots import cohort_metric_bars

    metrics = {"top_decile_lift": "top-decile lift", "ece": "calibration error"}
    return cohort_metric_bars(summarize_backtest(results), metrics, ["all", *cohorts])


BACKTEST_MODELS = {"family": "**family**", "pooled": "pooled LightGBM", "logistic": "logistic regression"}


def backtest_markdown(results: Sequence[TrainResult], cohorts: Sequence[str]) -> str:
    """The docs' backtest table: per cohort (``all`` first, then ``cohorts`` in order) the family against
    both calibrated baselines, means over the run months."""
    summary = summarize_backtest(results).set_index(["cohort", "model"])
    months = [r.window.run_month for r in results]
    lines = [
        f"Run months {months[0]}..{months[-1]} ({len(months)}), each model measured on the run month's own "
        "subscribers; means over the run months.",
        "",
        "| cohort | model | ROC AUC | top-decile lift | calibration error | EMPC (per customer) |",
        "|---|---|---|---|---|---|",
    ]
    for cohort in ["all", *cohorts]:
        for model, label in BACKTEST_MODELS.items():
            if (cohort, model) not in summary.index:
                continue
            m = summary.loc[(cohort, model)]
            lines.append(
                f"| {cohort} | {label} | {m['roc_auc']:.4f} | {m['top_decile_lift']:.2f} | {m['ece']:.4f} | "
                f"{m['empc']:.3f} |"
            )
    return "\n".join(lines) + "\n"
