"""Which snapshot rows were treated inside their own label window (shared by training and evaluation).

The churn model learns the risk **if left alone**: a line contacted between its snapshot month T and the
end of T's churn window (an offer assigned by the pipeline for a score month S with T <= S <= T + gap +
window - 1, whose contact falls in S + 1; or a contact of the operator's own campaign for such an S)
has an outcome the campaign changed. Such rows are left out of fitting, calibration, the test month and
the realised performance; control lines and lines never contacted stay. Everything read here was known
at the end of the label window, so the rows a run month may use are decided by what it may know.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from features.calendar import add_months
from features.params import ChurnParams
from pipelines.core.lake import Lake


def contact_months(lake: Lake, months: Sequence[str]) -> list[str]:
    """The score months whose contacts fall inside the label window of any of ``months``."""
    return sorted({scored for _, scored in window_pairs(months, lake.cfg.churn)})


def window_pairs(months: Sequence[str], churn: ChurnParams) -> list[tuple[str, str]]:
    """``(snapshot month, score month)``: each score month whose contact falls inside the snapshot month's
    label window (also for readers without Spark, such as the DuckDB notebooks)."""
    span = churn.gap_months + churn.window_months
    return [(m, add_months(m, k)) for m in months for k in range(span)]


def treated_in_window(lake: Lake, months: Sequence[str]) -> DataFrame:
    """``(subscriber_id, month)`` rows of the snapshot ``months`` contacted inside their label window."""
    spark = lake.spark
    scored = contact_months(lake, months)
    parts = [spark.createDataFrame([], "subscriber_id string, contact_month string")]
    if lake.exists("offer_assignments"):
        parts.append(
            lake.read("offer_assignments")
            .where(F.col("score_month").isin(*scored) & (F.col("status") == "assigned"))
            .select("subscriber_id", F.col("score_month").alias("contact_month"))
        )
    if lake.exists("campaign_outcomes"):
        parts.append(
            lake.read("campaign_outcomes")
            .where(F.col("campaign_month").isin(*scored) & F.col("contacted"))
            .select("subscriber_id", F.col("campaign_month").alias("contact_month"))
        )
    contacts = parts[0]
    for p in parts[1:]:
        contacts = contacts.unionByName(p)
    snapshots = spark.createDataFrame(
        window_pairs(months, lake.cfg.churn), "month string, contact_month string"
    )
    return contacts.join(snapshots, "contact_month").select("subscriber_id", "month").distinct()
