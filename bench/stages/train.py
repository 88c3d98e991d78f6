"""Training: the train job as of one month against plain ``lightgbm.train`` on the same rows, and against
the same boosters trained by hand (the family fits a pooled and a per-cohort model)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.harness import RunContext, timed
from bench.record import OPTIONAL, Record, TableRow, compare
from pipelines.core.lake import Lake
from pipelines.ingest import ingest_month

RUN_MONTH = "2024-05"  # fit 01, validate 02, test 03: the first month whose label windows have closed


@dataclass(frozen=True, kw_only=True)
class TrainResult(Record):
    fit_rows: int
    peak_mb: int
    valid_rows: int
    features: int
    train_as_of_s: float
    train_as_of_steady_s: float | None = field(default=None, metadata=OPTIONAL)
    family_fit_s: float
    plain_lightgbm_s: float
    plain_same_boosters_s: float
    plain_same_trees_s: float | None = field(default=None, metadata=OPTIONAL)
    plain_trees: int
    family_trees: int
    ratio_family_fit_vs_plain: float
    ratio_family_fit_vs_same_boosters: float
    ratio_family_fit_vs_same_trees: float | None = field(default=None, metadata=OPTIONAL)
    ratio_train_as_of_vs_plain: float
    ratio_train_steady_vs_plain: float | None = field(default=None, metadata=OPTIONAL)
    ratio_train_steady_vs_same_boosters: float | None = field(default=None, metadata=OPTIONAL)
    test_auc_family: float

    def table_rows(self) -> list[TableRow]:
        n, plain, same = self.fit_rows, "plain lightgbm.train", "same boosters by hand"
        rows = [
            compare("train job (first: creates the MLflow store)", self.train_as_of_s, plain,
                    self.plain_lightgbm_s, rows=n, peak_mb=self.peak_mb),
        ]  # fmt: skip
        if self.train_as_of_steady_s is not None:
            steady = "train job (steady)"
            rows.append(compare(steady, self.train_as_of_steady_s, plain, self.plain_lightgbm_s, rows=n))
            rows.append(compare(steady, self.train_as_of_steady_s, same, self.plain_same_boosters_s, rows=n))
        rows.append(compare("fit_family", self.family_fit_s, same, self.plain_same_boosters_s, rows=n))
        return rows


def run(ctx: RunContext) -> TrainResult:
    import lightgbm as lgb
    import numpy as np

    from models.baselines import lgb_params
    from models.family import encode
    from pipelines.build_features import build_features_month
    from pipelines.core.maturity import labelled_months, training_window
    from pipelines.train import read_training_frame, train_month

    spark = ctx.spark
    cfg = ctx.config()
    for month in ("2024-04", "2024-05"):  # the snapshots that close the label windows of 01..03
        ingest_month(spark, cfg, month, sources=["subscriptions"])
    for month in ("2024-01", "2024-02", "2024-03"):
        build_features_month(spark, cfg, month)
    lake = Lake(spark, cfg)
    # the whole job: read, fit, evaluate, log to MLflow, register (version 1, which the score stage scores)
    first = timed(lambda: train_month(spark, cfg, RUN_MONTH))
    # the same job again: a month's training in steady state (the MLflow store exists, a champion to
    # evaluate for the gates, the libraries imported); the first also created the store
    t_steady = timed(lambda: train_month(spark, cfg, RUN_MONTH)).seconds
    result, t_all = first.value, first.seconds
    family = result.family
    window = training_window(RUN_MONTH, labelled_months(lake, RUN_MONTH), cfg)
    frame = read_training_frame(lake, [*window.fit_months, window.valid_month], family.spec)
    fit = frame[frame["month"].isin(window.fit_months)]
    valid = frame[frame["month"] == window.valid_month]
    x, xv = family.encoder.transform(fit), family.encoder.transform(valid)
    y, yv = fit["is_churn"].to_numpy(float), valid["is_churn"].to_numpy(float)
    params: dict[str, Any] = {**lgb_params(cfg.model), "metric": "binary_logloss"}

    def plain() -> lgb.Booster:
        train = lgb.Dataset(x, y, categorical_feature=family.encoder.categorical)
        return lgb.train(
            params,
            train,
            cfg.model.num_boost_round,
            valid_sets=[lgb.Dataset(xv, yv, reference=train)],
            callbacks=[lgb.early_stopping(cfg.model.early_stopping_rounds, verbose=False)],
        )

    plain_run = timed(plain)
    booster, t_plain = plain_run.value, plain_run.seconds

    cohort, cohort_v = family.cohorts(fit), family.cohorts(valid)
    xp = encode(family.encoder, fit, family.spec.cohorts.names, cohort)
    xpv = encode(family.encoder, valid, family.spec.cohorts.names, cohort_v)
    categorical = [*family.encoder.categorical, xp.shape[1] - 1]

    def same_models(early_stopping: bool) -> None:
        """The family's boosters by hand: a plain lightgbm.train on each one's own rows, early-stopped on its
        validation rows as the family does (``early_stopping``) or for the family's number of trees."""
        for name, fitted in family.boosters.items():
            rows = np.ones(len(fit), bool) if name == "pooled" else cohort == name
            rows_v = np.ones(len(valid), bool) if name == "pooled" else cohort_v == name
            data = lgb.Dataset(xp[rows], y[rows], categorical_feature=categorical)
            if early_stopping:
                lgb.train(
                    params,
                    data,
                    cfg.model.num_boost_round,
                    valid_sets=[lgb.Dataset(xpv[rows_v], yv[rows_v], reference=data)],
                    callbacks=[lgb.early_stopping(cfg.model.early_stopping_rounds, verbose=False)],
                )
            else:
                lgb.train(params, data, fitted.num_trees())

    t_same = timed(lambda: same_models(early_stopping=True)).seconds
    t_same_trees = timed(lambda: same_models(early_stopping=False)).seconds
    return TrainResult(
        fit_rows=result.rows["fit"],
        peak_mb=first.peak_mb,
        valid_rows=result.rows["valid"],
        features=len(family.features),
        train_as_of_s=round(t_all, 2),
        train_as_of_steady_s=round(t_steady, 2),
        family_fit_s=round(result.seconds, 2),
        plain_lightgbm_s=round(t_plain, 2),
        plain_same_boosters_s=round(t_same, 2),
        plain_same_trees_s=round(t_same_trees, 2),
        plain_trees=booster.num_trees(),
        family_trees=int(np.sum([b.num_trees() for b in family.boosters.values()])),
        ratio_family_fit_vs_plain=round(result.seconds / t_plain, 2),
        ratio_family_fit_vs_same_boosters=round(result.seconds / t_same, 2),
        ratio_family_fit_vs_same_trees=round(result.seconds / t_same_trees, 2),
        ratio_train_as_of_vs_plain=round(t_all / t_plain, 2),
        ratio_train_steady_vs_plain=round(t_steady / t_plain, 2),
        ratio_train_steady_vs_same_boosters=round(t_steady / t_same, 2),
        test_auc_family=round(result.test_metrics["family"]["all"]["roc_auc"], 4),
    )
