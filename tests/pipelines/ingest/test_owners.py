"""Numbers resolved to their holder in Arrow (the ingest tasks) against Spark's join (real Spark)."""

from __future__ import annotations

import datetime as dt
import random

import pyarrow as pa
import pytest
from pyspark.sql import functions as F

from features.cleaning import resolve_msisdn
from pipelines.core.privacy import PseudonymKey, pseudonymise_rows
from pipelines.ingest.owners import owners_from, resolve
from pipelines.ingest.tasks import pseudonymised

INTERVALS = "msisdn string, subscriber_id string, valid_from date, valid_to date"


def _holds(rng: random.Random) -> list[tuple]:
    """Holds as compute_msisdn_intervals makes them: back to back per number, some cut to nothing (a
    later claim the same day), one without a start, open ends."""
    out = []
    for n in range(60):
        number, day = f"3706{n:04d}", dt.date(2023, 12, 1) + dt.timedelta(days=rng.randint(0, 20))
        for h in range(rng.randint(1, 4)):
            holder = f"S{rng.randint(1, 500):03d}"
            length = rng.choice([0, 1, 5, 30, 90])
            if rng.random() < 0.15:  # cut to nothing: ends the day before it starts
                out.append((number, holder, day, day - dt.timedelta(days=1)))
                continue
            if h == 3:  # still held: open-ended, the number's last hold
                out.append((number, holder, day, dt.date(9999, 12, 31)))
                break
            end = day + dt.timedelta(days=length)
            out.append((number, holder, day, end))
            day = end + dt.timedelta(days=rng.randint(1, 3))
    out.append(("37069999", "S999", None, dt.date(2024, 12, 31)))
    return out


def test_holders_found_in_arrow_are_the_holders_spark_joins(spark):
    rng = random.Random(11)
    holds = _holds(rng)
    numbers = [*sorted({h[0] for h in holds}), "37060000x", "37069999"]
    events = [
        (
            f"r{i}",
            rng.choice(numbers) if i % 50 else None,
            dt.datetime(2023, 12, 1) + dt.timedelta(seconds=rng.randint(0, 200 * 86400)),
        )
        for i in range(4000)
    ] + [("edge", holds[0][0], dt.datetime.combine(holds[0][3], dt.time(23, 59, 59)))]
    cdr = spark.createDataFrame(events, "record_id string, msisdn string, event_ts timestamp")
    joined = resolve_msisdn(cdr, spark.createDataFrame(holds, INTERVALS))
    expected = {r.record_id: r.subscriber_id for r in joined.collect()}
    owners = owners_from(spark.createDataFrame(holds, INTERVALS).toArrow())
    table = pa.table(
        {
            "msisdn": pa.array([e[1] for e in events], pa.string()),
            "event_ts": pa.array([e[2] for e in events], pa.timestamp("us", tz="UTC")),
        }
    )
    got = resolve(owners, table["msisdn"].combine_chunks(), table["event_ts"].combine_chunks()).to_pylist()
    assert dict(zip([e[0] for e in events], got, strict=True)) == expected
    assert sum(v is not None for v in expected.values()) > len(events) // 5, "many events have a holder"
    assert sum(v is None for v in expected.values()) > 100, "and some have none"


def test_no_holds_resolve_nothing():
    empty = pa.schema([("msisdn", pa.string()), ("subscriber_id", pa.string()), ("valid_from", pa.date32()),
                       ("valid_to", pa.date32())])  # fmt: skip
    owners = owners_from(empty.empty_table())
    ts = pa.array([dt.datetime(2024, 1, 1)], pa.timestamp("us", tz="UTC"))
    assert resolve(owners, pa.array(["1"]), ts).to_pylist() == [None]


@pytest.mark.parametrize("column", ["msisdn", "other_party"])
def test_pseudonyms_made_in_arrow_are_the_pseudonyms_spark_makes(spark, column):
    key = PseudonymKey(b"k" * 32)
    values = ["37060000001", "37060000002", "37060000001", None, "  ", "ab\ufffdc"]
    df = spark.createDataFrame([(v, v) for v in values], "msisdn string, other_party string")
    df = df.withColumn("_raw", F.struct("msisdn", "other_party"))
    expected = [r[column] for r in pseudonymise_rows(df, "cdr", key, raw_col="_raw").collect()]
    got = pseudonymised(pa.array(values, pa.string()), column, key).to_pylist()
    assert got == expected
    assert got[0] == got[2] != values[0] and got[3] is None and got[4] == "  "
