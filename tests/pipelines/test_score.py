"""Score a month with the registered champion: the warning list, roll-up, monitoring, reruns, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from jobs.score import main as score_job
from models.params import RISK_BANDS
from models.scoring import reason_families
from pipelines.core.lake import Lake, decimals_as_double
from pipelines.core.treatment import treated_in_window
from pipelines.score import score_month
from tests.conftest import cfg_at, job_args

pytestmark = pytest.mark.slow

MONTH = "2024-05"


@pytest.fixture(scope="module")
def scored(scored_lake):
    return scored_lake


def _warning(lake) -> pd.DataFrame:
    return lake.read("warning_list").where(F.col("score_month") == MONTH).toPandas()


def test_probabilities_equal_the_registered_pyfunc(scored):
    import mlflow

    from pipelines.core.tracking import configure_mlflow

    lake, cfg, result = scored.lake, scored.cfg, scored.result
    configure_mlflow(cfg)
    model = mlflow.pyfunc.load_model(f"models:/{cfg.train.registered_model}@champion")
    family = result.served  # the champion: the gated family refitted
    features = lake.read("features_monthly").where(F.col("month") == MONTH)
    frame = decimals_as_double(features).toPandas()
    want = pd.Series(np.asarray(model.predict(frame[[*family.features]])), index=frame["subscriber_id"])
    warning = _warning(lake).set_index("subscriber_id")
    assert len(warning) == len(frame) == features.count()
    np.testing.assert_allclose(warning.loc[want.index, "churn_probability"], want, rtol=1e-12)
    np.testing.assert_allclose(
        warning.loc[frame["subscriber_id"], "raw_score"], family.raw_score(frame), rtol=1e-12
    )
    assert set(warning["model_version"]) == {result.served_version}
    assert set(warning["run_id"]) == {result.run_id}
    assert set(warning["feature_table_version"]) == {lake.version("features_monthly")}


def test_reasons_are_the_serving_models_contributions_in_configured_families(scored):
    lake, cfg, result = scored.lake, scored.cfg, scored.result
    family = result.served
    warning = _warning(lake)
    explained = warning[warning["reasons"].notna()]
    assert len(explained) > 0
    features = lake.read("features_monthly").where(F.col("month") == MONTH)
    frame = decimals_as_double(features).toPandas().set_index("subscriber_id")
    frame = frame.loc[explained["subscriber_id"]].reset_index()
    contrib, names = family.contributions(frame)
    # contributions plus the bias give the raw score (log-odds)
    raw = explained.set_index("subscriber_id").loc[frame["subscriber_id"], "raw_score"].to_numpy()
    np.testing.assert_allclose(1 / (1 + np.exp(-contrib.sum(axis=1))), raw, rtol=1e-9)
    families = dict(zip(names[:-1], reason_families(names[:-1], cfg.score), strict=True))
    # region, segment, consent ...: they explain the risk but nobody can act on them
    assert families["region"] is None and families["marketing_consent"] is None
    index = {n: i for i, n in enumerate(names)}
    by_id = dict(zip(frame["subscriber_id"], range(len(frame)), strict=True))
    for _, row in explained.iterrows():
        c = pd.Series(contrib[by_id[row["subscriber_id"]]][:-1], index=names[:-1])
        actionable = c[[families[n] is not None for n in c.index]]
        top = actionable[actionable > 0].sort_values(ascending=False)[: cfg.score.reasons_top]
        got = [r["contribution"] for r in row["reasons"]]
        np.testing.assert_allclose(got, top.to_numpy(), rtol=1e-9)
        for r in row["reasons"]:
            assert r["family"] == families[r["feature"]]
            assert c.iloc[index[r["feature"]]] == pytest.approx(r["contribution"], rel=1e-9)
        # the churn type: the family of the actionable feature that raises the risk the most (so a family
        # does not win by its number of features), null when none raises it
        want = families[top.index[0]] if len(top) else None
        assert row["churn_type"] == want, row["subscriber_id"]
    assert explained["churn_type"].nunique() >= 2  # more than one driver in the month


def test_the_reasons_pass_deals_bunched_rows_to_every_core(spark):
    from pipelines.score.batch import reasons_input

    bunched = spark.range(1001).coalesce(1)  # the actionable rows of one file
    sizes = reasons_input(spark, bunched).rdd.glom().map(len).collect()
    assert len(sizes) == spark.sparkContext.defaultParallelism == 2
    assert sorted(sizes) == [500, 501]


def test_bands_deciles_ranks_and_the_actionable_share_are_consistent(scored):
    lake, cfg = scored.lake, scored.cfg
    w = _warning(lake)
    p = cfg.score
    want_band = np.where(
        w["churn_probability"] >= p.band_high,
        "high",
        np.where(w["churn_probability"] >= p.band_medium, "medium", "low"),
    )
    assert (w["risk_band"] == want_band).all()
    for cohort, part in w.groupby("cohort"):
        part = part.sort_values("risk_rank")
        assert list(part["risk_rank"]) == list(range(1, len(part) + 1)), cohort
        assert part["churn_probability"].is_monotonic_decreasing
        assert list(part["risk_decile"]) == list(np.ceil(part["risk_rank"] * 10 / len(part)).astype(int))
        top = int(np.ceil(len(part) * p.reasons_top_share))
        actionable = (
            (part["risk_rank"] <= top)
            | part["risk_band"].isin(RISK_BANDS[RISK_BANDS.index(p.reasons_min_band) :])
        ) | part["hard_warning"]
        # reasons exactly where someone can act (a row may have every feature lowering its risk: no reason)
        assert (part["reasons"].notna() == actionable).all(), cohort
    tiers = np.select(
        [w["arpu_3m"] >= p.value_high, w["arpu_3m"] >= p.value_medium, w["arpu_3m"] >= p.value_low],
        ["high", "medium", "low"],
        "unprofitable",
    )
    assert (w["value_tier"] == tiers).all()
    assert (
        w["strategy"] == [p.strategy[t][b] for t, b in zip(w["value_tier"], w["risk_band"], strict=True)]
    ).all()
    assert w["usage_segment"].notna().all() and w["usage_segment"].nunique() >= 3


def test_hard_warnings_are_flagged_whatever_the_score(scored):
    lake = scored.lake
    w = _warning(lake).set_index("subscriber_id")
    features = (
        lake.read("features_monthly").where(F.col("month") == MONTH).select("subscriber_id", "hard_warning")
    )
    hard = {r.subscriber_id for r in features.where("hard_warning").collect()}
    assert hard and set(w.index[w["hard_warning"]]) == hard
    assert (w.loc[sorted(hard), "risk_band"] == "low").any()  # flagged though the score is low
    assert w.loc[sorted(hard), "reasons"].notna().all()


def test_rerun_replaces_the_partition_exactly(scored):
    lake, first = scored.lake, scored.first
    again = lake.read("warning_list").toPandas()
    assert len(again) == len(first) and set(again["score_month"]) == {MONTH}
    cols = ["subscriber_id", "churn_probability", "risk_rank", "risk_band", "churn_type", "value_tier"]
    pd.testing.assert_frame_equal(
        again.sort_values("subscriber_id")[cols].reset_index(drop=True),
        first.sort_values("subscriber_id")[cols].reset_index(drop=True),
    )
    runs = lake.read("pipeline_runs").where((F.col("stage") == "score") & (F.col("status") == "success"))
    assert runs.count() == 2
    staging = Path(lake.path("warning_list")) / "_staging"  # the scored rows' scratch folder is gone
    assert not staging.exists() or not any(staging.iterdir())


def test_customer_and_household_rollup_reconciles_with_the_lines(scored):
    lake, cfg = scored.lake, scored.cfg
    w = _warning(lake)
    roll = lake.read("customer_risk").where(F.col("score_month") == MONTH).toPandas()
    for level, key in (("customer", "customer_id"), ("household", "household_id")):
        r = roll[roll["level"] == level].set_index("id")
        lines = w[w[key].notna()]
        assert r["lines"].sum() == len(lines)
        assert r["revenue_at_risk"].sum() == pytest.approx(
            (lines["churn_probability"] * lines["arpu_3m"].fillna(0)).sum()
        )
        assert r["expected_lines_lost"].sum() == pytest.approx(lines["churn_probability"].sum())
        at_risk = lines["risk_band"].isin(RISK_BANDS[RISK_BANDS.index(cfg.score.at_risk_band) :])
        assert r["lines_at_risk"].sum() == at_risk.sum()
        g = lines.groupby(key)
        p_any = 1 - g["churn_probability"].apply(lambda s: np.prod(1 - s))
        np.testing.assert_allclose(r.loc[p_any.index, "p_any_leaves"], p_any, rtol=1e-9)
        np.testing.assert_allclose(
            r.loc[p_any.index, "max_probability"], g["churn_probability"].max(), rtol=0
        )
    multi = roll[(roll["level"] == "household") & (roll["lines"] > 1)]
    assert len(multi) > 0 and (multi["p_any_leaves"] >= multi["max_probability"]).all()


def test_monitoring_holds_the_distribution_and_the_psi_of_each_monitored_column(scored):
    lake, result = scored.lake, scored.result
    m = lake.read("score_monitoring").where(F.col("score_month") == MONTH).toPandas()
    w = _warning(lake)
    dist = m[(m["kind"] == "distribution") & (m["name"] == "rows")].set_index("cohort")["value"]
    assert dist["all"] == len(w) and dist.drop("all").sum() == len(w)
    mean = m[(m["kind"] == "distribution") & (m["name"] == "mean_probability")].set_index("cohort")["value"]
    assert mean["all"] == pytest.approx(w["churn_probability"].mean())
    # the champion is the refit: its reference is its scores of the month it was trained as of
    assert set(m["reference"]) == {f"run month {result.window.run_month} (unlabelled, not fitted on)"}
    psi = m[m["kind"] == "psi"].set_index("name")
    profile = result.served.drift
    assert list(psi.index) == profile.columns
    assert (psi["warning"] == (psi["value"] > psi["threshold"])).all()
    # each PSI against one computed here from the month's values and the training shares
    features = decimals_as_double(lake.read("features_monthly").where(F.col("month") == MONTH)).toPandas()
    values = {"score": w["churn_probability"].to_numpy(dtype=float)}
    values.update({c: pd.to_numeric(features[c]).to_numpy(dtype=float) for c in profile.columns[1:]})
    for name in profile.columns:
        assert psi.loc[name, "value"] == pytest.approx(_psi_by_hand(profile, name, values[name]), rel=1e-9)


def _psi_by_hand(profile, name: str, values: np.ndarray) -> float:
    """PSI of ``values`` against the training shares: bins by counting edges at or below each value (nulls
    last), shares floored at 1e-4, the textbook sum."""
    edges = profile.edges[name]
    index = np.where(np.isnan(values), len(edges) + 1, (edges[None, :] <= values[:, None]).sum(axis=1))
    actual = np.bincount(index.astype(int), minlength=len(edges) + 2) / len(values)
    a, e = np.maximum(actual, 1e-4), np.maximum(profile.expected[name], 1e-4)
    return float(sum((ai - ei) * np.log(ai / ei) for ai, ei in zip(a, e, strict=True)))


def test_a_shifted_month_drifts_and_the_reference_rows_do_not(scored, spark, tmp_path):
    cfg, result = scored.cfg, scored.result
    root = tmp_path / "lake"
    shutil.copytree(cfg.lake_root, root)
    other_cfg = cfg_at(root, cfg.landing_root)
    other = Lake(spark, other_cfg)
    top = next(c for c in result.family.drift.columns if c != "score")
    shifted = (
        other.read("features_monthly")
        .where(F.col("month") == MONTH)
        .withColumn("month", F.lit("2024-06"))
        .withColumn(top, (F.col(top) * 10 + 100).cast(other.read("features_monthly").schema[top].dataType))
    )
    other.write(shifted, "features_monthly", mode="overwrite", replace_partitions={"month": ["2024-06"]})
    report = score_month(spark, other_cfg, "2024-06")
    assert any(top in w for w in report.drift_warnings)
    # the drift reference's own rows (the test month's labelled rows left alone by any campaign) scored as
    # a month by the gated version: the reference was drawn from exactly these rows and scores, every PSI
    # is 0 (the test month is out-of-sample for that version: no booster, choice or calibrator saw it)
    test_month = result.window.test_month
    labelled = other.read("labels_monthly").where(
        (F.col("month") == test_month) & F.col("label_available") & F.col("is_churn").isNotNull()
    )
    treated = treated_in_window(other, [test_month]).select("subscriber_id")
    reference = (
        other.read("features_monthly")
        .where(F.col("month") == test_month)
        .join(labelled.select("subscriber_id"), "subscriber_id", "left_semi")
        .join(treated, "subscriber_id", "left_anti")
        .withColumn("month", F.lit("2024-07"))
    )
    assert reference.count() == result.rows["test"] == result.family.drift.rows
    other.write(reference, "features_monthly", mode="overwrite", replace_partitions={"month": ["2024-07"]})
    assert score_month(spark, other_cfg, "2024-07", model_version=result.version).drift_warnings == []
    monitoring = other.read("score_monitoring").where(F.col("score_month").isin("2024-06", "2024-07"))
    rows = monitoring.toPandas()
    psi = rows[(rows["score_month"] == "2024-07") & (rows["kind"] == "psi")].set_index("name")["value"]
    assert sorted(psi.index) == sorted(result.family.drift.columns)
    assert all(v == pytest.approx(0.0, abs=1e-9) for v in psi), psi
    # the month's verdict: the shifted month drifted (its top feature), the reference month did not
    verdict = rows[rows["kind"] == "drift"].set_index("score_month")
    assert verdict.loc["2024-06", "warning"] and verdict.loc["2024-06", "value"] == 1.0
    assert not verdict.loc["2024-07", "warning"] and verdict.loc["2024-07", "value"] == 0.0
    flags = (
        other.read("pipeline_runs")
        .where((F.col("stage") == "score") & (F.col("month") == "2024-06"))
        .first()
        .flags
    )
    assert top in flags


def test_errors_are_one_line_and_write_nothing(scored, feature_lake, spark, tmp_path, capsys):
    lake, cfg = scored.lake, scored.cfg
    # no champion and no version: the feature lake has never been trained
    bare = tmp_path / "bare"
    shutil.copytree(feature_lake.cfg.lake_root, bare)
    bare_cfg = cfg_at(bare, cfg.landing_root)
    assert score_job(["--month", "2024-04", *job_args(bare_cfg)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        err.startswith("ERROR score: ModelNotFoundError: no churn_family@champion")
        and "--model-version" in err
    )
    assert not Lake(spark, bare_cfg).exists("warning_list")
    # an unknown version
    assert score_job(["--month", MONTH, "--model-version", "99", *job_args(cfg)]) == 1
    assert "has no version 99" in capsys.readouterr().err
    # a month with no features
    assert score_job(["--month", "2024-09", *job_args(cfg)]) == 1
    assert "no features for 2024-09 (run jobs/build_features.py --month 2024-09)" in capsys.readouterr().err
    # a month before the champion was trained: only a version named on purpose may score it
    assert score_job(["--month", "2024-04", *job_args(cfg)]) == 1
    assert "was trained as of 2024-05, after 2024-04" in capsys.readouterr().err
    assert set(lake.read("warning_list").toPandas()["score_month"]) == {MONTH}
    # a feature table without a column the model needs
    broken = tmp_path / "broken"
    shutil.copytree(cfg.lake_root, broken)
    broken_cfg = cfg_at(broken, cfg.landing_root)
    other = Lake(spark, broken_cfg)
    needed = next(c for c in scored.result.family.features if c.startswith("care_"))
    without = other.read("features_monthly").drop(needed).localCheckpoint()  # read before the folder goes
    shutil.rmtree(broken / "features_monthly")
    other.write(without, "features_monthly", mode="overwrite", partition_by=["month"])
    versions = other.version("warning_list")
    assert score_job(["--month", MONTH, *job_args(broken_cfg)]) == 1
    err = capsys.readouterr().err
    assert "missing columns" in err.lower() and needed in err
    assert other.version("warning_list") == versions
