import datetime as dt

from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from features.cleaning import resolve_msisdn, validate_rows

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
