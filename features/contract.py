"""The landing contract as data: sources, columns, types, domains and quarantine reason codes.

Shared by ingest (which enforces it) and the sample-data generator (which produces it), so the two
cannot drift apart. See ``docs/landing-contract.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCES = ("subscriptions", "cdr", "billing", "care", "campaign_outcomes")
OPTIONAL_SOURCES = ("campaign_outcomes",)
# Daily deliveries (``<source>/day=YYYY-MM-DD/``) between the monthly ones: docs/daily-warnings.md.
DAILY_SOURCES = ("cdr", "care", "port_requests")
SUCCESS_MARKER = "_SUCCESS"
DATA_SUFFIXES = (".csv", ".csv.gz", ".parquet")

# Column kinds: string, int, bigint, decimal, boolean, date, timestamp, month.


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    nullable: bool
    domain: tuple[str, ...] | None = None
    non_negative: bool = False


def _c(name: str, kind: str, nullable: bool = False, domain: tuple[str, ...] | None = None, nn: bool = False):
    return Column(name, kind, nullable, domain, nn)


DEACTIVATION_REASONS = ("port_out", "voluntary", "non_payment", "fraud", "deceased", "other")
PORT_REQUEST_TYPES = ("port_out_request", "plan_change", "contract_end_change")
CARE_CATEGORIES = ("billing", "network", "device", "plan_change", "complaint", "port_out_request", "other")

CONTRACT: dict[str, tuple[Column, ...]] = {
    "subscriptions": (
        _c("subscriber_id", "string"),
        _c("msisdn", "string"),
        _c("customer_id", "string"),
        _c("household_id", "string", True),
        _c("segment", "string", domain=("consumer", "business")),
        _c("plan_type", "string", domain=("prepaid", "postpaid")),
        _c("plan_id", "string"),
        _c("monthly_fee", "decimal", nn=True),
        _c("activation_date", "date"),
        _c("contract_end_date", "date", True),
        _c("status", "string", domain=("active", "suspended", "deactivated")),
        _c("deactivation_date", "date", True),
        _c("deactivation_reason", "string", True, DEACTIVATION_REASONS),
        _c("port_out_operator", "string", True),
        _c("acquisition_channel", "string", domain=("store", "online", "telesales", "dealer")),
        _c("region", "string"),
        _c("handset_age_months", "int", True, nn=True),
        _c("marketing_consent", "boolean"),
        _c("snapshot_date", "date"),
    ),
    "cdr": (
        _c("record_id", "string"),
        _c("msisdn", "string"),
        _c("event_ts", "timestamp"),
        _c("event_type", "string", domain=("voice", "sms", "data")),
        _c("direction", "string", domain=("out", "in")),
        _c("duration_s", "int", nn=True),
        _c("volume_kb", "bigint", nn=True),
        _c("other_party", "string", True),
        _c("other_party_operator", "string", True),
        _c("cell_id", "string", True),
        _c("roaming", "boolean"),
        _c("roaming_country", "string", True),
        _c("charge", "decimal", nn=True),
    ),
    "billing": (
        _c("subscriber_id", "string"),
        _c("bill_month", "month"),
        _c("invoice_amount", "decimal", nn=True),
        _c("recurring_charge", "decimal", nn=True),
        _c("usage_charge", "decimal", nn=True),
        _c("roaming_charge", "decimal", nn=True),
        _c("discount_amount", "decimal", nn=True),
        _c("paid_amount", "decimal", nn=True),
        _c("payment_date", "date", True),
        _c("overdue_days", "int", nn=True),
        _c("balance_due", "decimal"),
        _c("topup_count", "int", nn=True),
        _c("topup_amount", "decimal", nn=True),
    ),
    "care": (
        _c("contact_id", "string"),
        _c("subscriber_id", "string"),
        _c("contact_ts", "timestamp"),
        _c("channel", "string", domain=("call_center", "store", "app", "web")),
        _c("category", "string", domain=CARE_CATEGORIES),
        _c("resolved", "boolean"),
    ),
    "campaign_outcomes": (
        _c("campaign_month", "month"),
        _c("subscriber_id", "string"),
        _c("offer_id", "string"),
        _c("channel", "string", True),
        _c("contacted", "boolean"),
        _c("accepted", "boolean"),
        _c("contact_ts", "timestamp", True),
        _c("feedback_code", "string", True),
    ),
    # daily only: status events from the CRM (a port-out request, a plan change, a new contract end date)
    "port_requests": (
        _c("request_id", "string"),
        _c("subscriber_id", "string"),
        _c("request_ts", "timestamp"),
        _c("request_type", "string", domain=PORT_REQUEST_TYPES),
        _c("plan_id", "string", True),
        _c("contract_end_date", "date", True),
        _c("port_out_operator", "string", True),
    ),
}

# Business keys: a repeated key is a duplicate delivery (the last delivered copy wins).
KEYS: dict[str, tuple[str, ...]] = {
    "subscriptions": ("subscriber_id",),  # within one month's snapshot
    "cdr": ("record_id",),
    "billing": ("subscriber_id", "bill_month"),
    "care": ("contact_id",),
    "campaign_outcomes": ("campaign_month", "subscriber_id"),
    "port_requests": ("request_id",),
}
# The column that dates each event of a daily source.
EVENT_COLUMNS = {"cdr": "event_ts", "care": "contact_ts", "port_requests": "request_ts"}


def columns(source: str) -> tuple[str, ...]:
    return tuple(c.name for c in CONTRACT[source])


# Quarantine reason codes (a column-specific code is "<reason>:<column>").
MISSING_REQUIRED = "missing_required"
UNPARSEABLE = "unparseable"
INVALID_VALUE = "invalid_value"
MONTH_MISMATCH = "month_mismatch"
FUTURE_EVENT = "future_event"
TOO_OLD_EVENT = "too_old_event"
UNKNOWN_MSISDN = "unknown_msisdn"
WRONG_FIELD_COUNT = "wrong_field_count"
INVALID_ENCODING = "invalid_encoding"
