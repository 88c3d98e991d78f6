"""Social features: circle of contacts, competitor pull and churn contagion (pure).

Contacts are the hashed ``other_party`` numbers of voice and SMS events. A contact "churned" when an own
subscriber holding that number (the hash of its msisdn) was deactivated for a counted reason in the
contagion window **and the snapshot showing it was loaded by month M**: later churn of a contact is
unknown at scoring time and must not leak in.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from features.calendar import add_months, month_end, month_start
from features.columns import summary_col
from features.usage import known_month


def compute_contact_pairs(cdr: DataFrame, *, month: str, contagion_months: int) -> DataFrame:
    """Calls and SMS per ``(subscriber_id, contact)`` in the window, in M (``events_m0``) and M-1.

    ``contact`` is the 64-bit hash of ``other_party`` (see :func:`churned_numbers`)."""
    first = month_start(add_months(month, -(contagion_months - 1)))
    m1_start = month_start(add_months(month, -1))
    m0_start = month_start(month)
    ts = F.col("event_ts")
    return (
        cdr.where(
            F.col("event_type").isin("voice", "sms")
            & F.col("other_party").isNotNull()
            & (ts >= F.lit(min(first, m1_start)))
        )
        # a 64-bit hash of the number: an eighth of the 64-character hex to shuffle; a collision within one
        # subscriber's contacts is vanishingly rare
        .groupBy("subscriber_id", F.xxhash64("other_party").alias("contact"))
        .agg(
            F.count_if(ts >= F.lit(first)).alias("events_window"),
            F.count_if(ts >= F.lit(m0_start)).alias("events_m0"),
            F.count_if((ts >= F.lit(m1_start)) & (ts < F.lit(m0_start))).alias("events_m1"),
        )
    )


def churned_numbers(
    snapshots: DataFrame, *, month: str, contagion_months: int, counted_reasons: Sequence[str]
) -> DataFrame:
    """Numbers (``contact``: hash of ``other_party``) of subscribers who churned in the window, known at M."""
    first = month_start(add_months(month, -(contagion_months - 1)))
    return (
        snapshots.where(
            (F.col("month") <= month)
            & (F.col("status") == "deactivated")
            & F.col("deactivation_reason").isin(*counted_reasons)
            & F.col("deactivation_date").between(F.lit(first), F.lit(month_end(month)))
        )
        .select(F.xxhash64(F.sha2(F.col("msisdn"), 256)).alias("contact"))
        .distinct()
        .withColumn("_churned", F.lit(True))
    )


def compute_social_features(
    population: DataFrame,
    pairs: DataFrame,
    churned: DataFrame,
    summary: DataFrame,
    *,
    month: str,
    min_calls: int,
    available_months: Sequence[str],
) -> DataFrame:
    """Per subscriber of ``population``:

    - ``distinct_contacts_m0`` / ``_m1`` and ``contacts_ratio_1m`` (m0 / m1): the circle shrinking;
    - ``competitor_out_share_m0``: share of outgoing calls and SMS to competitor networks (null without
      outgoing calls or SMS); ``distinct_contacts_m1`` is null when M-1 is not known (see usage);
    - ``frequent_contacts``: contacts with at least ``min_calls`` events in the contagion window;
      ``churned_frequent_contacts`` and ``churned_contact_share`` among them (null without frequent
      contacts).
    """
    flagged = pairs.join(F.broadcast(churned), "contact", "left")
    frequent = F.col("events_window") >= min_calls
    per_sub = flagged.groupBy("subscriber_id").agg(
        F.count_if(F.col("events_m0") > 0).alias("distinct_contacts_m0"),
        F.count_if(F.col("events_m1") > 0).alias("distinct_contacts_m1"),
        F.count_if(frequent).alias("frequent_contacts"),
        F.count_if(frequent & F.col("_churned")).alias("churned_frequent_contacts"),
    )
    counts = [
        "distinct_contacts_m0",
        "distinct_contacts_m1",
        "frequent_contacts",
        "churned_frequent_contacts",
    ]
    voice_out, sms_out = summary_col("voice_out_calls", 0), summary_col("sms_out", 0)
    competitor_out = summary_col("competitor_out_events", 0)
    outgoing = F.col(voice_out) + F.col(sms_out)
    df = (
        population.select("subscriber_id", "activation_date")
        .join(per_sub, "subscriber_id", "left")
        .join(
            summary.select("subscriber_id", voice_out, sms_out, competitor_out),
            "subscriber_id",
            "left",
        )
        .fillna(0, subset=counts)
    )
    known_m1 = known_month(F.col("activation_date"), add_months(month, -1), available_months)
    df = df.withColumn("distinct_contacts_m1", F.when(known_m1, F.col("distinct_contacts_m1")))
    return df.select(
        "subscriber_id",
        *counts[:2],
        F.when(
            F.col("distinct_contacts_m1") > 0, F.col("distinct_contacts_m0") / F.col("distinct_contacts_m1")
        ).alias("contacts_ratio_1m"),
        F.when(outgoing > 0, F.col(competitor_out) / outgoing).alias("competitor_out_share_m0"),
        *counts[2:],
        F.when(
            F.col("frequent_contacts") > 0, F.col("churned_frequent_contacts") / F.col("frequent_contacts")
        ).alias("churned_contact_share"),
    )
