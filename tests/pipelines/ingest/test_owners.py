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


def _random_snapshots(rng: random.Random) -> tuple[list[dict], list[tuple]]:
    """Snapshots where numbers are recycled, lines vanish or change number, starts are missing or equal,
    two lines claim one number at once; and damaged (quarantined) listings, some of pairs never listed."""
    from tests.features.test_cleaning import listed

    months = [f"2024-{m:02d}" for m in range(1, 7)]
    rows, damaged = [], []
    for n in range(40):
        number = f"3706{n:04d}"
        for _ in range(rng.randint(1, 3)):
            holder = f"S{rng.randint(1, 60):03d}"
            start = rng.randrange(len(months))
            activation = rng.choice(
                [None, dt.date(2023, 11, 20), dt.date(2024, 1 + start, rng.randint(1, 28))]
            )
            end = rng.randint(start, len(months) - 1)
            gone = dt.date(2024, 1 + end, rng.randint(1, 28)) if rng.random() < 0.3 else None
            for k in range(start, end + 1):
                if rng.random() < 0.1:  # the row was quarantined: a damaged listing instead
                    damaged.append((holder, rng.choice([number, "*" * 6 + number[-2:]]), months[k]))
                    continue
                rows.append(listed(months[k], holder, number, activation, gone if k == end else None))
    damaged += [("S999", "37060000", "2024-03"), ("S001", None, "2024-02")]
    return rows, damaged


@pytest.mark.parametrize("seed", range(4))
def test_the_driver_builds_the_holds_spark_builds(spark, seed):
    """:func:`holds_from_snapshots` (the Arrow path's, in the driver) against
    :func:`compute_msisdn_intervals` (Spark's): the same holds row for row, conflicts included."""
    from features.cleaning import compute_msisdn_intervals
    from pipelines.ingest.owners import damaged_from_quarantine, holds_from_snapshots
    from pipelines.ingest.subscribers import damaged_listings
    from tests.features.frames import frame
    from tests.features.test_cleaning import SNAPSHOT_SCHEMA, _snapshots

    rng = random.Random(seed)
    if seed == 0:  # the hand-made cases of the cleaning tests
        snapshots = _snapshots(spark)
        quarantined = spark.createDataFrame(
            [("S1", "3706", "2024-02"), ("S3", "3707", "2024-04"), ("S3", "9999", "2024-05")],
            "subscriber_id string, msisdn string, month string",
        )
    else:
        rows, bad = _random_snapshots(rng)
        snapshots = frame(spark, SNAPSHOT_SCHEMA, rows)
        quarantined = spark.createDataFrame(bad, "subscriber_id string, msisdn string, month string")
    damaged = damaged_listings(quarantined, snapshots)
    conflicts = 0
    # the quarantine holds raw values as JSON text
    as_json = quarantined.select(F.to_json(F.struct("subscriber_id", "msisdn")).alias("raw_values"), "month")
    found = damaged_from_quarantine(as_json.toArrow(), snapshots.toArrow())
    assert sorted(tuple(r.values()) for r in found.to_pylist()) == sorted(tuple(r) for r in damaged.collect())
    assert found.num_rows > 0
    for latest in ("2024-03", "2024-06"):
        for with_damaged in (False, True):
            by_spark = compute_msisdn_intervals(
                snapshots, latest_month=latest, damaged_listings=damaged if with_damaged else None
            )
            by_driver = holds_from_snapshots(
                snapshots.toArrow(),
                latest_month=latest,
                damaged_listings=damaged.toArrow() if with_damaged else None,
            )
            expected = sorted(tuple(r) for r in by_spark.collect())
            got = sorted(tuple(r.values()) for r in by_driver.to_pylist())
            assert got == expected, (latest, with_damaged)
            conflicts += sum(r[4] for r in expected)
    assert conflicts > 0, "the cases include numbers claimed twice at once"
