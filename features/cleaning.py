"""Row validation of landing extracts (pure DataFrame -> DataFrame).

Input: every contract column as text (as read from CSV, or Parquet values cast to text). Output: the
typed columns plus ``_reasons``, an array of quarantine reason codes (empty = the row is good), and
``_raw``, the row's text values as a struct where it was rejected (else null).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.window import Window

from features import contract as C

DECIMAL = T.DecimalType(18, 4)
SPARK_TYPES: dict[str, T.DataType] = {
    "string": T.StringType(),
    "month": T.StringType(),
    "int": T.IntegerType(),
    "bigint": T.LongType(),
    "decimal": DECIMAL,
    "boolean": T.BooleanType(),
    "date": T.DateType(),
    "timestamp": T.TimestampType(),
}
REASONS_COL = "_reasons"
RAW_COL = "_raw"
# Set by the reader on a CSV record whose field count differs from its header's.
MALFORMED_COL = "_malformed"
# What a decoder puts in place of bytes that are not UTF-8.
REPLACEMENT_CHAR = "\ufffd"


def _parse(raw: SparkColumn, kind: str) -> SparkColumn:
    if kind in ("string", "month"):
        return raw
    if kind in ("int", "bigint", "decimal"):
        # ANSI semantics whatever the session says: "1.5" is not an int, an overflow is not a value
        return F.trim(raw).try_cast(SPARK_TYPES[kind])
    if kind == "boolean":
        low = F.lower(F.trim(raw))
        return F.when(low.isin("true", "1"), F.lit(True)).when(low.isin("false", "0"), F.lit(False))
    # the pattern checks the contract's form; the cast (Spark's own parser, several times faster than a
    # formatter pattern) then rejects impossible dates and times such as 2024-02-30 or 25:61:00
    if kind == "date":
        return F.when(raw.rlike(r"^\d{4}-\d{2}-\d{2}$"), raw.try_cast(T.DateType()))
    if kind == "timestamp":
        return F.when(
            raw.rlike(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,6})?$"),
            F.substring(raw, 1, 19).try_cast(T.TimestampType()),
        )
    raise ValueError(f"unknown column kind {kind!r}")


def validate_rows(
    df: DataFrame,
    *,
    source: str,
    month: str,
    late_days: int,
) -> DataFrame:
    """Type every contract column of ``source`` and list each row's reasons for quarantine.

    Rules: a CSV record whose field count differs from its header (``_malformed``, set by the reader);
    a value holding undecodable (non-UTF-8) bytes; a required field that is null or unparseable; a
    value outside its domain or negative where it cannot be; a ``bill_month``/``campaign_month`` of
    the wrong form or (bills) not the folder's month; an event dated after its delivery month or more
    than ``late_days`` before it.
    """
    start = dt.datetime.fromisoformat(month + "-01")
    year, mon = start.year + (start.month // 12), start.month % 12 + 1
    next_start = dt.datetime(year, mon, 1)
    oldest = start - dt.timedelta(days=late_days)
    contract = C.CONTRACT[source]
    names = [c.name for c in contract]
    passthrough = [c for c in df.columns if c not in names and c != MALFORMED_COL]
    # Three projections, so each value is normalised and parsed once and every check reads a column
    # (one projection would re-evaluate the parse inside each conditional check).
    norm = df.select(
        *passthrough,
        *([MALFORMED_COL] if MALFORMED_COL in df.columns else []),
        *names,
        *[F.when(F.trim(F.col(n)) != "", F.col(n)).alias(f"__n_{n}") for n in names],
    )
    parsed = norm.select(
        *norm.columns,
        *[
            _parse(F.col(f"__n_{c.name}"), c.kind).cast(SPARK_TYPES[c.kind]).alias(f"__v_{c.name}")
            for c in contract
        ],
    )
    checks: list[SparkColumn] = []
    if MALFORMED_COL in df.columns:
        checks.append(F.when(F.col(MALFORMED_COL), F.lit(C.WRONG_FIELD_COUNT)))
    for col in contract:
        raw, value = F.col(f"__n_{col.name}"), F.col(f"__v_{col.name}")
        # undecodable bytes were replaced on read: the value is not what was delivered
        checks.append(
            F.when(F.col(col.name).contains(REPLACEMENT_CHAR), F.lit(f"{C.INVALID_ENCODING}:{col.name}"))
        )
        if not col.nullable:
            checks.append(F.when(raw.isNull(), F.lit(f"{C.MISSING_REQUIRED}:{col.name}")))
        checks.append(F.when(raw.isNotNull() & value.isNull(), F.lit(f"{C.UNPARSEABLE}:{col.name}")))
        if col.kind == "month":
            checks.append(
                F.when(
                    raw.isNotNull() & ~raw.rlike(r"^\d{4}-(0[1-9]|1[0-2])$"),
                    F.lit(f"{C.UNPARSEABLE}:{col.name}"),
                )
            )
        if col.domain:
            checks.append(
                F.when(raw.isNotNull() & ~raw.isin(*col.domain), F.lit(f"{C.INVALID_VALUE}:{col.name}"))
            )
        if col.non_negative:
            checks.append(F.when(value < 0, F.lit(f"{C.INVALID_VALUE}:{col.name}")))
    if source == "billing":
        checks.append(F.when(F.col("__v_bill_month") != F.lit(month), F.lit(C.MONTH_MISMATCH)))
    event_col = {"cdr": "event_ts", "care": "contact_ts"}.get(source)
    if event_col:
        ts = F.col(f"__v_{event_col}")
        checks.append(F.when(ts >= F.lit(next_start), F.lit(C.FUTURE_EVENT)))
        # the contract's rule for every event, care contacts too (only CDRs are documented to run late)
        checks.append(F.when(ts < F.lit(oldest), F.lit(C.TOO_OLD_EVENT)))
    # The reasons as one text first: ``concat_ws`` skips the nulls and, unlike ``array_compact`` (a lambda
    # function), is code-generated, so the whole projection stays compiled.
    checked = parsed.select(*parsed.columns, F.concat_ws(",", *checks).alias("__reasons"))
    rejected = F.col("__reasons") != ""
    return checked.select(
        *passthrough,
        *[F.col(f"__v_{n}").alias(n) for n in names],
        F.when(rejected, F.split("__reasons", ","))
        .otherwise(F.array().cast("array<string>"))
        .alias(REASONS_COL),
        # raw values only where they are needed: the rejected rows (as a struct: ``to_json`` is not
        # code-generated; ingest turns the few rejected rows into text)
        F.when(rejected, F.struct(*[F.col(n) for n in names])).alias(RAW_COL),
    )


OPEN_END = dt.date(9999, 12, 31)


def compute_msisdn_intervals(
    snapshots: DataFrame, *, latest_month: str, damaged_listings: DataFrame | None = None
) -> DataFrame:
    """Who held each number when, from the subscription snapshots (any months up to ``latest_month``).

    One row per ``(msisdn, subscriber_id)`` with ``valid_from``/``valid_to`` (dates, inclusive) and
    ``conflict`` (the hold overlapped the next holder's). The intervals of one number never overlap,
    whatever the snapshots miss, so an event is owned by at most one subscriber:

    - a hold starts at the activation date (or, for a number the subscriber took later, on the first
      day of the first snapshot month listing the pair);
    - it ends at the deactivation date; where that is unknown (the deactivation row was quarantined,
      or the subscriber simply vanished from later snapshots), at the end of the last snapshot month
      listing the pair, unless that month is ``latest_month`` (still held: open-ended);
    - in any case, it ends the day before the next holder's hold starts: the later activation wins
      (equal starts: the greater ``subscriber_id`` wins, so the result is deterministic) and the
      overlap is flagged in ``conflict`` for the data-quality report.

    ``damaged_listings`` (``subscriber_id, msisdn, month``): snapshot rows that were quarantined. They
    still say the line existed that month (its state is unknown), so they extend a hold already known
    from good rows; they never create one. Without them, one damaged snapshot row would turn a live
    subscriber's calls that month into unknown numbers.
    """
    subs = snapshots.where(F.col("month") <= latest_month)
    pairs = subs.groupBy("msisdn", "subscriber_id").agg(
        F.min("month").alias("_first"),
        F.min("activation_date").alias("_activation"),
        F.max("deactivation_date").alias("_deactivation"),
    )
    listed = subs.select("msisdn", "subscriber_id", "month")
    if damaged_listings is not None:
        listed = listed.unionByName(
            damaged_listings.where(F.col("month") <= latest_month)
            .select("msisdn", "subscriber_id", "month")
            .join(pairs.select("msisdn", "subscriber_id"), ["msisdn", "subscriber_id"], "left_semi")
        )
    last = listed.groupBy("msisdn", "subscriber_id").agg(F.max("month").alias("_last"))
    pairs = pairs.join(last, ["msisdn", "subscriber_id"])
    by_subscriber = Window.partitionBy("subscriber_id")
    first_day = F.to_date(F.concat(F.col("_first"), F.lit("-01")))
    last_day = F.last_day(F.to_date(F.concat(F.col("_last"), F.lit("-01"))))
    valid_from = F.when(
        F.col("_first") == F.min("_first").over(by_subscriber), F.col("_activation")
    ).otherwise(F.greatest(F.col("_activation"), first_day))
    claimed_to = F.coalesce(
        F.col("_deactivation"),
        F.when(F.col("_last") < F.lit(latest_month), last_day),
        F.lit(OPEN_END),
    )
    by_number = Window.partitionBy("msisdn").orderBy("valid_from", "subscriber_id")
    held = pairs.select(
        "msisdn", "subscriber_id", valid_from.alias("valid_from"), claimed_to.alias("_claimed_to")
    ).withColumn("_next_from", F.lead("valid_from").over(by_number))
    cut = F.date_sub(F.col("_next_from"), 1)
    return held.select(
        "msisdn",
        "subscriber_id",
        "valid_from",
        F.when(F.col("_next_from").isNull(), F.col("_claimed_to"))
        .otherwise(F.least(F.col("_claimed_to"), cut))
        .alias("valid_to"),
        F.coalesce(F.col("_claimed_to") >= F.col("_next_from"), F.lit(False)).alias("conflict"),
    )


def resolve_msisdn(cdr: DataFrame, intervals: DataFrame) -> DataFrame:
    """Attach ``subscriber_id`` to each CDR by the number's owner **at event time** (numbers are recycled).

    ``intervals``: from :func:`compute_msisdn_intervals` (non-overlapping per number, so a row matches
    at most one owner). Events whose number belongs to nobody at that time keep a null ``subscriber_id``.
    """
    day = F.to_date("event_ts")
    ranked = intervals.select(
        F.col("msisdn").alias("_m"), F.col("subscriber_id"), F.col("valid_from"), F.col("valid_to")
    )
    joined = cdr.join(
        F.broadcast(ranked),
        (cdr["msisdn"] == F.col("_m")) & (day >= F.col("valid_from")) & (day <= F.col("valid_to")),
        "left",
    )
    return joined.drop("_m", "valid_from", "valid_to")
