"""The offer experiment read from the lake (shared by the evaluation and the uplift stage).

- :func:`campaign_outcomes`: each listed line's churn from the contact month to the end of its window;
- :func:`is_experiment_line`: an offer's treated lines and its control group (the same intended offer);
- :func:`experiment_lines`: those lines of matured score months with their outcome, the warning list's
  columns and the feature table's at the score month that the uplift features' patterns match, as the
  uplift model learns from them;
- :func:`feature_columns`: which feature-table columns a column list needs beside the warning list's.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from models.offers import contract_state
from models.uplift import resolve_features
from pipelines.core.lake import Lake, decimals_as_double

# the feature-table columns the contract state is derived from (models.offers.contract_state)
CONTRACT_INPUTS = ("has_contract", "out_of_contract", "months_to_contract_end")
CONTRACT_STATE = "contract_state"
KEYS = ["score_month", "subscriber_id"]


def campaign_outcomes(lake: Lake, months: Sequence[str]) -> DataFrame:
    """Each line's churn from the contact month (S + 1, the gap month) to the end of S's window.

    The training label leaves a gap-month deactivation out (null): an outcome of a campaign carried out
    in the gap month must count it, or churn an offer prevented (or caused) there would vanish from both
    arms. A gap-month deactivation for a counted reason is churn, for an excluded reason unknown (left
    out), for any other reason not churn, as in the window.
    """
    churn = lake.cfg.churn
    status = F.col("label_status")
    reason = F.col("churn_reason")
    outcome = (
        F.when(status != "gap_churn", F.col("is_churn"))
        .when(reason.isin(*churn.counted_reasons), F.lit(True))
        .when(reason.isin(*churn.excluded_reasons), F.lit(None).cast("boolean"))
        .otherwise(F.lit(False))
    )
    return (
        lake.read("labels_monthly")
        .where(F.col("month").isin(*months) & F.col("label_available"))
        .select(F.col("month").alias("score_month"), "subscriber_id", outcome.alias("churned"))
        .where(F.col("churned").isNotNull())
    )


def is_experiment_line() -> Column:
    """An ``offer_assignments`` row of the offer experiment: treated, or in the control group of its
    intended offer (a programme hold-out line has no intended offer)."""
    return (F.col("status") == "assigned") | (
        (F.col("status") == "holdout") & F.col("intended_offer_id").isNotNull()
    )


def feature_columns(lake: Lake, wanted: Sequence[str], beside: Sequence[str]) -> list[str]:
    """The columns of ``wanted`` the feature table holds and ``beside`` (the warning list's) does not."""
    have = set(lake.read("features_monthly").columns) - set(beside)
    return [c for c in dict.fromkeys(wanted) if c in have]


def experiment_lines(lake: Lake, months: Sequence[str], patterns: Sequence[str]) -> pd.DataFrame:
    """The experiment lines of the score ``months`` whose outcome is known, as pandas: ``score_month``,
    ``subscriber_id``, ``offer_id`` (the intended offer), ``treated``, ``arm``, ``churned`` (the campaign
    outcome), the warning list's ``churn_probability`` and ``arpu_3m``, and the columns the feature
    ``patterns`` (fnmatch) match in the warning list or the feature table at the score month
    (``contract_state`` derived from its inputs)."""
    assignments = lake.read("offer_assignments")
    arm = F.col("arm") if "arm" in assignments.columns else F.lit(None).cast("string")
    lines = assignments.where(F.col("score_month").isin(*months) & is_experiment_line()).select(
        *KEYS,
        F.col("intended_offer_id").alias("offer_id"),
        (F.col("status") == "assigned").alias("treated"),
        arm.alias("arm"),
    )
    warning = lake.read("warning_list")
    table = lake.read("features_monthly")
    skip = {*KEYS, "month"}
    from_warning = [
        c
        for c in dict.fromkeys(["churn_probability", "arpu_3m", *resolve_features(warning.columns, patterns)])
        if c not in skip
    ]
    state = bool(resolve_features([CONTRACT_STATE], patterns))
    wanted = [*resolve_features(table.columns, patterns), *(CONTRACT_INPUTS if state else ())]
    from_features = [c for c in dict.fromkeys(wanted) if c not in skip and c not in from_warning]
    features = table.where(F.col("month").isin(*months)).select(
        F.col("month").alias("score_month"), "subscriber_id", *from_features
    )
    joined = (
        lines.join(campaign_outcomes(lake, months), KEYS)
        .join(warning.where(F.col("score_month").isin(*months)).select(*KEYS, *from_warning), KEYS)
        .join(features, KEYS, "left")
    )
    frame = decimals_as_double(joined).toPandas()
    frame = frame.sort_values(KEYS, kind="stable", ignore_index=True)
    return with_contract_state(frame) if state else frame


def with_contract_state(frame: pd.DataFrame) -> pd.DataFrame:
    """``contract_state`` from its inputs where the frame has them (else left out)."""
    if not all(c in frame.columns for c in CONTRACT_INPUTS):
        return frame
    return frame.assign(
        contract_state=contract_state(
            frame["has_contract"], frame["out_of_contract"], frame["months_to_contract_end"]
        )
    )
