import datetime as dt

from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from features.cleaning import compute_msisdn_intervals, resolve_msisdn, validate_rows

D = dt.date


def test_recycled_number_resolves_to_the_owner_at_event_time(spark):
    cdr = spark.createDataFrame(
        [
            ("r1", "3706", dt.datetime(2024, 1, 10, 9, 0)),  # old owner
            ("r2", "3706", dt.datetime(2024, 1, 31, 23, 59)),  # old owner's last day (inclusive)
            ("r3", "3706", dt.datetime(2024, 3, 2, 8, 0)),  # quarantine period: nobody
            ("r4", "3706", dt.datetime(2024, 5, 1, 0, 0)),  # the new owner, from activation day
            ("r5", "9999", dt.datetime(2024, 5, 1, 0, 0)),  # unknown number
        ],
        "record_id string, msisdn string, event_ts timestamp",
    )
    intervals = spark.createDataFrame(
        [("3706", "S1", D(2020, 1, 1), D(2024, 1, 31)), ("3706", "S2", D(2024, 5, 1), D(9999, 12, 31))],
        "msisdn string, subscriber_id string, valid_from date, valid_to date",
    )
    got = resolve_msisdn(cdr, intervals).select("record_id", "subscriber_id")
    expected = spark.createDataFrame(
        [("r1", "S1"), ("r2", "S1"), ("r3", None), ("r4", "S2"), ("r5", None)],
        "record_id string, subscriber_id string",
    )
    assertDataFrameEqual(got, expected)


SNAPSHOT_SCHEMA = (
    "month string, subscriber_id string, msisdn string, status string, activation_date date, "
    "deactivation_date date"
)
OPEN = D(9999, 12, 31)


def _snapshots(spark):
    rows = [
        # S1 holds 3706; its February row (the deactivation) was quarantined: last listed in January
        ("2024-01", "S1", "3706", "active", D(2023, 5, 1), None),
        # S2 gets the recycled number in May
        ("2024-05", "S2", "3706", "active", D(2024, 5, 10), None),
        ("2024-06", "S2", "3706", "active", D(2024, 5, 10), None),
        # S3 simply vanishes from the snapshots after March
        *[(m, "S3", "3707", "active", D(2022, 1, 1), None) for m in ("2024-01", "2024-02", "2024-03")],
        # S4 and S5 both claim 3708 from April: the later activation (S5) wins, the overlap is a conflict
        *[(f"2024-0{m}", "S4", "3708", "active", D(2023, 1, 1), None) for m in range(1, 7)],
        *[(f"2024-0{m}", "S5", "3708", "active", D(2024, 4, 2), None) for m in range(4, 7)],
        # S6 leaves cleanly on 10 February, S7 takes the number in May
        ("2024-01", "S6", "3709", "active", D(2021, 3, 3), None),
        ("2024-02", "S6", "3709", "deactivated", D(2021, 3, 3), D(2024, 2, 10)),
        *[(m, "S7", "3709", "active", D(2024, 5, 15), None) for m in ("2024-05", "2024-06")],
        # S8 changes number in March: 3710 until February, 3711 from March
        *[(m, "S8", "3710", "active", D(2022, 1, 1), None) for m in ("2024-01", "2024-02")],
        *[(f"2024-0{m}", "S8", "3711", "active", D(2022, 1, 1), None) for m in range(3, 7)],
        # equal activation dates on one number: the greater subscriber_id wins, deterministically
        *[("2024-06", s, "3712", "active", D(2024, 6, 1), None) for s in ("S9", "SA")],
    ]
    return spark.createDataFrame(rows, SNAPSHOT_SCHEMA)


def test_msisdn_holds_never_overlap_whatever_the_snapshots_miss(spark):
    got = compute_msisdn_intervals(_snapshots(spark), latest_month="2024-06")
    schema = "msisdn string, subscriber_id string, valid_from date, valid_to date, conflict boolean"
    expected = spark.createDataFrame(
        [
            ("3706", "S1", D(2023, 5, 1), D(2024, 1, 31), False),
            ("3706", "S2", D(2024, 5, 10), OPEN, False),
            ("3707", "S3", D(2022, 1, 1), D(2024, 3, 31), False),
            ("3708", "S4", D(2023, 1, 1), D(2024, 4, 1), True),
            ("3708", "S5", D(2024, 4, 2), OPEN, False),
            ("3709", "S6", D(2021, 3, 3), D(2024, 2, 10), False),
            ("3709", "S7", D(2024, 5, 15), OPEN, False),
            ("3710", "S8", D(2022, 1, 1), D(2024, 2, 29), False),
            ("3711", "S8", D(2024, 3, 1), OPEN, False),
            ("3712", "S9", D(2024, 6, 1), D(2024, 5, 31), True),
            ("3712", "SA", D(2024, 6, 1), OPEN, False),
        ],
        schema,
    )
    assertDataFrameEqual(got, expected, checkRowOrder=False)


def test_a_quarantined_snapshot_row_still_lists_its_line(spark):
    # S1's February row and S3's April row were damaged; a damaged row of an unknown pair adds nothing
    damaged = spark.createDataFrame(
        [("S1", "3706", "2024-02"), ("S3", "3707", "2024-04"), ("S3", "9999", "2024-05")],
        "subscriber_id string, msisdn string, month string",
    )
    got = compute_msisdn_intervals(_snapshots(spark), latest_month="2024-06", damaged_listings=damaged)
    ends = {(r.msisdn, r.subscriber_id): r.valid_to for r in got.collect()}
    assert ends[("3706", "S1")] == D(2024, 2, 29)
    assert ends[("3707", "S3")] == D(2024, 4, 30)
    assert ("9999", "S3") not in ends


def test_latest_snapshot_keeps_its_holders_open(spark):
    # as of March, S3 is still listed in the newest snapshot: it holds its number open-ended
    got = compute_msisdn_intervals(_snapshots(spark), latest_month="2024-03")
    row = got.where("subscriber_id = 'S3'").first()
    assert (row.valid_from, row.valid_to) == (D(2022, 1, 1), OPEN)


def test_each_event_resolves_to_at_most_one_owner(spark):
    intervals = compute_msisdn_intervals(_snapshots(spark), latest_month="2024-06")
    events = [
        ("r1", "3706", dt.datetime(2024, 1, 15, 9, 0), "S1"),
        ("r2", "3706", dt.datetime(2024, 3, 1, 9, 0), None),  # after S1's last snapshot, before S2
        ("r3", "3706", dt.datetime(2024, 5, 20, 9, 0), "S2"),
        ("r4", "3707", dt.datetime(2024, 5, 1, 9, 0), None),  # S3 vanished
        ("r5", "3708", dt.datetime(2024, 4, 1, 23, 59), "S4"),
        ("r6", "3708", dt.datetime(2024, 4, 2, 0, 0), "S5"),  # both claim it: the later activation
        ("r7", "3709", dt.datetime(2024, 2, 10, 12, 0), "S6"),
        ("r8", "3711", dt.datetime(2024, 3, 1, 0, 0), "S8"),
        ("r9", "3710", dt.datetime(2024, 3, 1, 0, 0), None),
        ("rA", "3712", dt.datetime(2024, 6, 3, 0, 0), "SA"),
    ]
    cdr = spark.createDataFrame(
        [e[:3] for e in events], "record_id string, msisdn string, event_ts timestamp"
    )
    got = resolve_msisdn(cdr, intervals).select("record_id", "subscriber_id")
    expected = spark.createDataFrame([(e[0], e[3]) for e in events], "record_id string, subscriber_id string")
    assertDataFrameEqual(got, expected)


def test_validate_rows_types_and_reasons(spark):
    cols = ["contact_id", "subscriber_id", "contact_ts", "channel", "category", "resolved"]
    schema = T.StructType([T.StructField(c, T.StringType()) for c in cols])
    raw = spark.createDataFrame(
        [
            ("k1", "S1", "2024-02-29 23:59:59", "app", "billing", "1"),  # edge: last second of the month
            ("k2", "S1", "2024-03-01 00:00:00", "app", "billing", "TRUE"),  # first second after: future
            ("k3", None, "2024-02-10 10:00:00", "fax", "billing", "maybe"),
            ("k4", "S2", "2024-02-30 10:00:00", "web", "network", "false"),
        ],
        schema,
    )
    out = validate_rows(raw, source="care", month="2024-02", late_days=7)
    got = {r.contact_id: (r.resolved, r._reasons) for r in out.collect()}
    assert got == {
        "k1": (True, []),
        "k2": (True, ["future_event"]),
        "k3": (None, ["missing_required:subscriber_id", "invalid_value:channel", "unparseable:resolved"]),
        "k4": (False, ["unparseable:contact_ts"]),
    }
    assert out.schema["contact_ts"].dataType == T.TimestampType()


def test_numbers_parse_strictly_whatever_the_session_ansi_setting(spark):
    from features import contract as C

    cols = list(C.columns("billing"))
    base = dict.fromkeys(cols, "0") | {"subscriber_id": "S1", "bill_month": "2024-02", "payment_date": None}
    rows = [
        base | {"overdue_days": " 12 ", "invoice_amount": "1e1"},
        base | {"overdue_days": "1.5"},
        base | {"topup_count": "9999999999"},
        base | {"invoice_amount": "1,5"},
    ]
    schema = T.StructType([T.StructField(c, T.StringType()) for c in cols])
    df = spark.createDataFrame([tuple(r[c] for c in cols) for r in rows], schema)
    out = validate_rows(df, source="billing", month="2024-02", late_days=7).collect()
    assert (out[0].overdue_days, float(out[0].invoice_amount), out[0]._reasons) == (12, 10.0, [])
    assert [r._reasons for r in out[1:]] == [
        ["unparseable:overdue_days"],
        ["unparseable:topup_count"],
        ["unparseable:invoice_amount"],
    ]


def test_dates_and_times_follow_the_contract_form_and_the_calendar(spark):
    cols = ["contact_id", "subscriber_id", "contact_ts", "channel", "category", "resolved"]
    schema = T.StructType([T.StructField(c, T.StringType()) for c in cols])
    stamps = {
        "ok": "2024-02-10 10:00:00",
        "fraction": "2024-02-10 10:00:00.250",  # fractions are allowed and dropped
        "hour25": "2024-02-10 25:00:00",
        "minute61": "2024-02-10 10:61:00",
        "feb30": "2024-02-30 10:00:00",
        "iso_t": "2024-02-10T10:00:00",  # Spark's cast alone would take these three
        "no_seconds": "2024-02-10 10:00",
        "date_only": "2024-02-10",
        "padded": " 2024-02-10 10:00:00",
    }
    raw = spark.createDataFrame([(k, "S1", v, "app", "billing", "true") for k, v in stamps.items()], schema)
    out = {r.contact_id: r for r in validate_rows(raw, source="care", month="2024-02", late_days=7).collect()}
    assert out["ok"].contact_ts == dt.datetime(2024, 2, 10, 10, 0) and out["ok"]._reasons == []
    assert out["fraction"].contact_ts == dt.datetime(2024, 2, 10, 10, 0) and out["fraction"]._reasons == []
    for key in ("hour25", "minute61", "feb30", "iso_t", "no_seconds", "date_only", "padded"):
        assert out[key]._reasons == ["unparseable:contact_ts"], key
        assert out[key].contact_ts is None
    assert out["hour25"]._raw.contact_ts == "2024-02-10 25:00:00" and out["ok"]._raw is None
