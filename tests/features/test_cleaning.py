"""Row validation and number ownership on literal rows, whole frames."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from pyspark.testing import assertDataFrameEqual

from features.cleaning import compute_msisdn_intervals, resolve_msisdn, validate_rows
from tests.features.frames import frame

D = dt.date
T = dt.datetime
OPEN = D(9999, 12, 31)
EVENT_SCHEMA = {"record_id": "string", "msisdn": "string", "event_ts": "timestamp"}
RESOLVED_SCHEMA = EVENT_SCHEMA | {"subscriber_id": "string"}
INTERVAL_SCHEMA = {
    "msisdn": "string",
    "subscriber_id": "string",
    "valid_from": "date",
    "valid_to": "date",
    "conflict": "boolean",
}


def hold(
    msisdn: str, subscriber_id: str, valid_from: dt.date, valid_to: dt.date, conflict: bool = False
) -> dict:
    return {
        "msisdn": msisdn,
        "subscriber_id": subscriber_id,
        "valid_from": valid_from,
        "valid_to": valid_to,
        "conflict": conflict,
    }


def event(record_id: str, msisdn: str, ts: dt.datetime, owner: str | None = None) -> dict:
    """A CDR and (``owner``) the subscriber it must resolve to."""
    return {"record_id": record_id, "msisdn": msisdn, "event_ts": ts, "subscriber_id": owner}


def _resolve(spark, events: list[dict], intervals):
    cdr = frame(spark, EVENT_SCHEMA, [{k: e[k] for k in EVENT_SCHEMA} for e in events])
    return resolve_msisdn(cdr, intervals)


def test_recycled_number_resolves_to_the_owner_at_event_time(spark):
    events = [
        event("r1", "3706", T(2024, 1, 10, 9, 0), "S1"),  # old owner
        event("r2", "3706", T(2024, 1, 31, 23, 59), "S1"),  # old owner's last day (inclusive)
        event("r3", "3706", T(2024, 3, 2, 8, 0)),  # quarantine period: nobody
        event("r4", "3706", T(2024, 5, 1, 0, 0), "S2"),  # the new owner, from activation day
        event("r5", "9999", T(2024, 5, 1, 0, 0)),  # unknown number
    ]
    intervals = frame(
        spark,
        INTERVAL_SCHEMA,
        [hold("3706", "S1", D(2020, 1, 1), D(2024, 1, 31)), hold("3706", "S2", D(2024, 5, 1), OPEN)],
    )
    assertDataFrameEqual(_resolve(spark, events, intervals), frame(spark, RESOLVED_SCHEMA, events))


SNAPSHOT_SCHEMA = {
    "month": "string",
    "subscriber_id": "string",
    "msisdn": "string",
    "status": "string",
    "activation_date": "date",
    "deactivation_date": "date",
}


def listed(
    month: str, subscriber_id: str, msisdn: str, activation: dt.date, deactivation: dt.date | None = None
) -> dict:
    return {
        "month": month,
        "subscriber_id": subscriber_id,
        "msisdn": msisdn,
        "status": "active" if deactivation is None else "deactivated",
        "activation_date": activation,
        "deactivation_date": deactivation,
    }


def _snapshots(spark):
    rows = [
        # S1 holds 3706; its February row (the deactivation) was quarantined: last listed in January
        listed("2024-01", "S1", "3706", D(2023, 5, 1)),
        # S2 gets the recycled number in May
        listed("2024-05", "S2", "3706", D(2024, 5, 10)),
        listed("2024-06", "S2", "3706", D(2024, 5, 10)),
        # S3 simply vanishes from the snapshots after March
        *[listed(m, "S3", "3707", D(2022, 1, 1)) for m in ("2024-01", "2024-02", "2024-03")],
        # S4 and S5 both claim 3708 from April: the later activation (S5) wins, the overlap is a conflict
        *[listed(f"2024-0{m}", "S4", "3708", D(2023, 1, 1)) for m in range(1, 7)],
        *[listed(f"2024-0{m}", "S5", "3708", D(2024, 4, 2)) for m in range(4, 7)],
        # S6 leaves cleanly on 10 February, S7 takes the number in May
        listed("2024-01", "S6", "3709", D(2021, 3, 3)),
        listed("2024-02", "S6", "3709", D(2021, 3, 3), D(2024, 2, 10)),
        *[listed(m, "S7", "3709", D(2024, 5, 15)) for m in ("2024-05", "2024-06")],
        # S8 changes number in March: 3710 until February, 3711 from March
        *[listed(m, "S8", "3710", D(2022, 1, 1)) for m in ("2024-01", "2024-02")],
        *[listed(f"2024-0{m}", "S8", "3711", D(2022, 1, 1)) for m in range(3, 7)],
        # equal activation dates on one number: the greater subscriber_id wins, deterministically
        *[listed("2024-06", s, "3712", D(2024, 6, 1)) for s in ("S9", "SA")],
    ]
    return frame(spark, SNAPSHOT_SCHEMA, rows)


# as of June
HOLDS = {
    ("3706", "S1"): hold("3706", "S1", D(2023, 5, 1), D(2024, 1, 31)),
    ("3706", "S2"): hold("3706", "S2", D(2024, 5, 10), OPEN),
    ("3707", "S3"): hold("3707", "S3", D(2022, 1, 1), D(2024, 3, 31)),
    ("3708", "S4"): hold("3708", "S4", D(2023, 1, 1), D(2024, 4, 1), conflict=True),
    ("3708", "S5"): hold("3708", "S5", D(2024, 4, 2), OPEN),
    ("3709", "S6"): hold("3709", "S6", D(2021, 3, 3), D(2024, 2, 10)),
    ("3709", "S7"): hold("3709", "S7", D(2024, 5, 15), OPEN),
    ("3710", "S8"): hold("3710", "S8", D(2022, 1, 1), D(2024, 2, 29)),
    ("3711", "S8"): hold("3711", "S8", D(2024, 3, 1), OPEN),
    ("3712", "S9"): hold("3712", "S9", D(2024, 6, 1), D(2024, 5, 31), conflict=True),
    ("3712", "SA"): hold("3712", "SA", D(2024, 6, 1), OPEN),
}


def test_msisdn_holds_never_overlap_whatever_the_snapshots_miss(spark):
    got = compute_msisdn_intervals(_snapshots(spark), latest_month="2024-06")
    assertDataFrameEqual(got, frame(spark, INTERVAL_SCHEMA, list(HOLDS.values())))


def test_a_quarantined_snapshot_row_still_lists_its_line(spark):
    # S1's February row and S3's April row were damaged; a damaged row of an unknown pair adds nothing
    damaged = spark.createDataFrame(
        [("S1", "3706", "2024-02"), ("S3", "3707", "2024-04"), ("S3", "9999", "2024-05")],
        "subscriber_id string, msisdn string, month string",
    )
    got = compute_msisdn_intervals(_snapshots(spark), latest_month="2024-06", damaged_listings=damaged)
    expected = HOLDS | {
        ("3706", "S1"): hold("3706", "S1", D(2023, 5, 1), D(2024, 2, 29)),
        ("3707", "S3"): hold("3707", "S3", D(2022, 1, 1), D(2024, 4, 30)),
    }
    assertDataFrameEqual(got, frame(spark, INTERVAL_SCHEMA, list(expected.values())))


def test_latest_snapshot_keeps_its_holders_open(spark):
    # as of March, whoever the March snapshot lists holds its number open-ended; later holders are unknown
    got = compute_msisdn_intervals(_snapshots(spark), latest_month="2024-03")
    expected = [
        hold("3706", "S1", D(2023, 5, 1), D(2024, 1, 31)),
        hold("3707", "S3", D(2022, 1, 1), OPEN),
        hold("3708", "S4", D(2023, 1, 1), OPEN),
        hold("3709", "S6", D(2021, 3, 3), D(2024, 2, 10)),
        hold("3710", "S8", D(2022, 1, 1), D(2024, 2, 29)),
        hold("3711", "S8", D(2024, 3, 1), OPEN),
    ]
    assertDataFrameEqual(got, frame(spark, INTERVAL_SCHEMA, expected))


def test_each_event_resolves_to_at_most_one_owner(spark):
    intervals = compute_msisdn_intervals(_snapshots(spark), latest_month="2024-06")
    events = [
        event("r1", "3706", T(2024, 1, 15, 9, 0), "S1"),
        event("r2", "3706", T(2024, 3, 1, 9, 0)),  # after S1's last snapshot, before S2
        event("r3", "3706", T(2024, 5, 20, 9, 0), "S2"),
        event("r4", "3707", T(2024, 5, 1, 9, 0)),  # S3 vanished
        event("r5", "3708", T(2024, 4, 1, 23, 59), "S4"),
        event("r6", "3708", T(2024, 4, 2, 0, 0), "S5"),  # both claim it: the later activation
        event("r7", "3709", T(2024, 2, 10, 12, 0), "S6"),
        event("r8", "3711", T(2024, 3, 1, 0, 0), "S8"),
        event("r9", "3710", T(2024, 3, 1, 0, 0)),
        event("rA", "3712", T(2024, 6, 3, 0, 0), "SA"),
    ]
    assertDataFrameEqual(_resolve(spark, events, intervals), frame(spark, RESOLVED_SCHEMA, events))


CARE_RAW = ("contact_id", "subscriber_id", "contact_ts", "channel", "category", "resolved")
CARE_VALIDATED = {
    "contact_id": "string",
    "subscriber_id": "string",
    "contact_ts": "timestamp",
    "channel": "string",
    "category": "string",
    "resolved": "boolean",
    "_reasons": "array<string>",
    "_raw": "struct<" + ",".join(f"{c}:string" for c in CARE_RAW) + ">",
}


def _raw_care(spark, rows: list[dict]):
    return frame(spark, dict.fromkeys(CARE_RAW, "string"), rows)


def care_contact(
    contact_id: str,
    subscriber_id: str | None,
    contact_ts: object,
    channel: str,
    category: str,
    resolved: object,
) -> dict:
    """A care row by name (raw text before validation, typed values after)."""
    return dict(
        zip(CARE_RAW, (contact_id, subscriber_id, contact_ts, channel, category, resolved), strict=True)
    )


def test_validate_rows_types_and_reasons(spark):
    raw = {
        # edge: the last second of the month
        "k1": care_contact("k1", "S1", "2024-02-29 23:59:59", "app", "billing", "1"),
        # the first second after it: a future event
        "k2": care_contact("k2", "S1", "2024-03-01 00:00:00", "app", "billing", "TRUE"),
        "k3": care_contact("k3", None, "2024-02-10 10:00:00", "fax", "billing", "maybe"),
        "k4": care_contact("k4", "S2", "2024-02-30 10:00:00", "web", "network", "false"),
    }
    got = validate_rows(_raw_care(spark, list(raw.values())), source="care", month="2024-02", late_days=7)
    expected = [
        care_contact("k1", "S1", T(2024, 2, 29, 23, 59, 59), "app", "billing", True)
        | {"_reasons": [], "_raw": None},
        care_contact("k2", "S1", T(2024, 3, 1), "app", "billing", True)
        | {"_reasons": ["future_event"], "_raw": raw["k2"]},
        # the values outside the domain are kept as delivered; the unparseable ones are null
        care_contact("k3", None, T(2024, 2, 10, 10), "fax", "billing", None)
        | {
            "_reasons": ["missing_required:subscriber_id", "invalid_value:channel", "unparseable:resolved"],
            "_raw": raw["k3"],
        },
        care_contact("k4", "S2", None, "web", "network", False)
        | {"_reasons": ["unparseable:contact_ts"], "_raw": raw["k4"]},
    ]
    assertDataFrameEqual(got, frame(spark, CARE_VALIDATED, expected))


BILL_TYPES = {
    "subscriber_id": "string",
    "bill_month": "string",
    "invoice_amount": "decimal(18,4)",
    "recurring_charge": "decimal(18,4)",
    "usage_charge": "decimal(18,4)",
    "roaming_charge": "decimal(18,4)",
    "discount_amount": "decimal(18,4)",
    "paid_amount": "decimal(18,4)",
    "payment_date": "date",
    "overdue_days": "int",
    "balance_due": "decimal(18,4)",
    "topup_count": "int",
    "topup_amount": "decimal(18,4)",
}


def test_numbers_parse_strictly_whatever_the_session_ansi_setting(spark):
    raw_base = dict.fromkeys(BILL_TYPES, "0") | {
        "subscriber_id": "S1",
        "bill_month": "2024-02",
        "payment_date": None,
    }
    typed_base = {c: Decimal(0) if kind.startswith("decimal") else 0 for c, kind in BILL_TYPES.items()} | {
        "subscriber_id": "S1",
        "bill_month": "2024-02",
        "payment_date": None,
    }
    # "case" is not a contract column: it passes through, first
    cases = {
        "padded_and_exponent": ({"overdue_days": " 12 ", "invoice_amount": "1e1"}, {
            "overdue_days": 12, "invoice_amount": Decimal(10)}, []),
        "fraction": ({"overdue_days": "1.5"}, {"overdue_days": None}, ["unparseable:overdue_days"]),
        "overflow": ({"topup_count": "9999999999"}, {"topup_count": None}, ["unparseable:topup_count"]),
        "comma": ({"invoice_amount": "1,5"}, {"invoice_amount": None}, ["unparseable:invoice_amount"]),
    }  # fmt: skip
    raw_rows = {case: {"case": case} | raw_base | raw for case, (raw, _, _) in cases.items()}
    raw = frame(spark, {"case": "string"} | dict.fromkeys(BILL_TYPES, "string"), list(raw_rows.values()))
    got = validate_rows(raw, source="billing", month="2024-02", late_days=7)
    schema = (
        {"case": "string"}
        | BILL_TYPES
        | {
            "_reasons": "array<string>",
            "_raw": "struct<" + ",".join(f"{c}:string" for c in BILL_TYPES) + ">",
        }
    )
    expected = [
        {"case": case}
        | typed_base
        | typed
        | {
            "_reasons": reasons,
            "_raw": {c: raw_rows[case][c] for c in BILL_TYPES} if reasons else None,
        }
        for case, (_, typed, reasons) in cases.items()
    ]
    assertDataFrameEqual(got, frame(spark, schema, expected))


def test_dates_and_times_follow_the_contract_form_and_the_calendar(spark):
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
    raw = {k: care_contact(k, "S1", v, "app", "billing", "true") for k, v in stamps.items()}
    got = validate_rows(_raw_care(spark, list(raw.values())), source="care", month="2024-02", late_days=7)
    parsed = {"ok": T(2024, 2, 10, 10), "fraction": T(2024, 2, 10, 10)}
    expected = [
        care_contact(k, "S1", parsed.get(k), "app", "billing", True)
        | (
            {"_reasons": [], "_raw": None}
            if k in parsed
            else {"_reasons": ["unparseable:contact_ts"], "_raw": raw[k]}
        )
        for k in stamps
    ]
    assertDataFrameEqual(got, frame(spark, CARE_VALIDATED, expected))
