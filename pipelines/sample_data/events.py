"""A month's landing rows drawn from the base's state: the subscription snapshot, billing and care.

Risk episodes leave their marks here (bill shock, arrears, fewer top-ups, care contacts and port-out
requests); usage and CDRs are in :mod:`pipelines.sample_data.usage`. Every function draws from the
base's random stream in a fixed order, so a seed gives the same rows.
"""

from __future__ import annotations

import numpy as np

from pipelines.sample_data.base import SubscriberBase
from pipelines.sample_data.catalogue import (
    CARE_CATEGORIES,
    CARE_CHANNELS,
    CHANNELS,
    COMPETITORS,
    PLAN_FEES,
    PLAN_IDS,
    PLAN_TYPES,
    REASONS,
    REGIONS,
    CareCategory,
    CareChannel,
    Driver,
    Reason,
    is_prepaid,
)

SECONDS_PER_DAY = 86400
SECONDS_PER_HOUR = 3600

# --- the snapshot
SUSPEND_OVERDUE_DAYS = 60  # a line this many days overdue is suspended
HANDSET_UNKNOWN_SHARE = 0.05

# --- billing
BILL_SHOCK = {Driver.NEW_CUSTOMER_FIT: 0.6, Driver.PRICE_SENSITIVITY: 0.4}  # chance per episode month
BILL_SHOCK_FEES = (0.8, 2.5)  # the extra usage charge, in monthly fees
NEW_LINE_MONTHS = 2  # a line's first months sometimes bill extra usage
NEW_LINE_EXTRA_USAGE = (0.15, 0.5)  # chance, and the extra in monthly fees
BILL_CREDIT_SHARE = 0.3  # of the fee, while an accepted bill credit runs
GOODWILL_DISCOUNT = (0.05, 2.0)  # chance and amount of a one-off discount
PARTIAL_PAYMENTS = [0.0, 0.3]  # what a line in payment trouble pays of its invoice
PAY_DAYS = (3, 25)
DAYS_PER_BILL = 30  # an unpaid bill adds this many days overdue
TOPUP_PER_CHARGE = 5  # prepaid: one top-up per this much usage charged, plus a habit
TOPUP_HABIT = 1.2
TOPUP_RANGE = (0.2, 8)
TOPUP_AMOUNTS = ([5.0, 10.0, 20.0], [0.4, 0.45, 0.15])

# --- care
CARE_RATE = {"driven": 0.9, "episode": 0.4, "none": 0.07}  # contacts a month, by the line's state
CARE_DRIVEN = [Driver.NEW_CUSTOMER_FIT, Driver.SERVICE_ISSUE]  # episodes that bring many contacts
# the category mix of contacts that are not an episode's (no port-out requests: they are drawn apart)
CARE_MIX = [0.3, 0.15, 0.15, 0.15, 0.1, 0.0, 0.15]  # by CareCategory
# an episode's contacts: drawn evenly from these categories (a repeat weighs double)
EPISODE_CARE = {
    Driver.NEW_CUSTOMER_FIT: [CareCategory.BILLING, CareCategory.COMPLAINT, CareCategory.PLAN_CHANGE],
    Driver.SERVICE_ISSUE: [CareCategory.NETWORK, CareCategory.COMPLAINT, CareCategory.NETWORK],
    Driver.PRICE_SENSITIVITY: [CareCategory.BILLING, CareCategory.COMPLAINT],
}
CARE_HOURS = (8, 20)
RESOLVED = {"complaint": 0.45, "other": 0.75}
PORT_OUT_REQUEST_SHARE = 0.5  # of port-outs, filed up to ``PORT_OUT_REQUEST_DAYS`` before leaving
PORT_OUT_REQUEST_DAYS = 6
PORT_OUT_REQUEST_HOUR = 10
# some requests come in the last days of the month before a churn due next month (a hard warning for
# the scoring population; some of them will be retained or change their mind)
EARLY_REQUEST_SHARE = 0.15
EARLY_REQUEST_DAYS = 3
EARLY_REQUEST_HOUR = 11
CARE_CHANNEL_MIX = [0.5, 0.2, 0.2, 0.1]  # by CareChannel


def snapshot(base: SubscriberBase, idx: np.ndarray, end: np.datetime64) -> dict[str, np.ndarray]:
    """The month-end subscription snapshot of the lines ``idx``."""
    plan = base.plan[idx]
    deact = base.deact_day[idx]
    deactivated = ~base.active[idx] & ~np.isnat(deact)
    suspended = ~deactivated & (base.overdue[idx] >= SUSPEND_OVERDUE_DAYS)
    status = np.where(deactivated, "deactivated", np.where(suspended, "suspended", "active"))
    reason = np.where(deactivated, REASONS[np.maximum(base.reason[idx], 0)], None)
    port = np.where(
        deactivated & (base.reason[idx] == Reason.PORT_OUT),
        COMPETITORS[np.maximum(base.port_op[idx], 0)],
        None,
    )
    age = base.handset0[idx] + base.tenure_months(idx)
    handset = np.where(base.rng.random(idx.size) < HANDSET_UNKNOWN_SHARE, -1, age)
    business = base.business[idx]
    return {
        "subscriber_id": idx,
        "msisdn": base.msisdn[idx],
        "customer_id": base.customer[idx],
        "household_id": base.household[idx],
        "segment": np.where(business, "business", "consumer"),
        "plan_type": PLAN_TYPES[plan],
        "plan_id": PLAN_IDS[plan],
        "monthly_fee": PLAN_FEES[plan],
        "activation_date": base.act_day[idx],
        "contract_end_date": base.contract_end[idx],
        "status": status,
        "deactivation_date": np.where(deactivated, deact, np.datetime64("NaT")),
        "deactivation_reason": reason,
        "port_out_operator": port,
        "acquisition_channel": CHANNELS[base.channel[idx]],
        "region": REGIONS[base.region[idx]],
        "handset_age_months": handset,
        "marketing_consent": base.consent[idx],
        "snapshot_date": np.full(idx.size, end - 1),
    }


def billing(
    base: SubscriberBase,
    idx: np.ndarray,
    month: str,
    start: np.datetime64,
    charges: np.ndarray,
    roam: np.ndarray,
) -> dict[str, np.ndarray]:
    """The month's bills: postpaid invoices (fee, usage, roaming, discounts, payments), prepaid top-ups."""
    rng = base.rng
    m = base.month_index
    plan = base.plan[idx]
    prepaid = is_prepaid(plan)
    fee = PLAN_FEES[plan]
    tenure = base.tenure_months(idx)
    in_ep = base.episode_start[idx] >= 0
    driver = base.episode_driver[idx]
    # bill shock: new customers in a poor-fit episode get a first bill far above the fee
    shock = np.zeros(idx.size, bool)
    for shocked, chance in BILL_SHOCK.items():
        shock |= ~prepaid & in_ep & (driver == shocked) & (rng.random(idx.size) < chance)
    extra = fee * rng.uniform(*BILL_SHOCK_FEES, idx.size)
    usage = np.where(prepaid, 0.0, charges + np.where(shock, extra, 0))
    extra_chance, extra_fees = NEW_LINE_EXTRA_USAGE
    new_line = ~prepaid & (tenure < NEW_LINE_MONTHS) & (rng.random(idx.size) < extra_chance)
    usage = np.where(new_line, usage + fee * extra_fees, usage)
    roaming = np.where(prepaid, 0.0, roam)
    credit = base.bill_credit_until[idx] >= m
    discount = np.where(~prepaid & credit, np.round(fee * BILL_CREDIT_SHARE, 2), 0.0)
    goodwill_chance, goodwill = GOODWILL_DISCOUNT
    discount = np.where(~prepaid & (rng.random(idx.size) < goodwill_chance), discount + goodwill, discount)
    recurring = np.where(prepaid, 0.0, fee)
    invoice = np.round(np.maximum(recurring + usage + roaming - discount, 0), 2)
    trouble = base.payment_trouble[idx] & ~prepaid
    paid = np.where(trouble, np.round(invoice * rng.choice(PARTIAL_PAYMENTS, idx.size), 2), invoice)
    pay_day = start + rng.integers(*PAY_DAYS, idx.size)
    payment_date = np.where(paid > 0, pay_day, np.datetime64("NaT"))
    arrears = invoice - paid
    base.balance[idx] = np.where(trouble, base.balance[idx] + arrears, 0.0)
    base.overdue[idx] = np.where(trouble & (base.balance[idx] > 0), base.overdue[idx] + DAYS_PER_BILL, 0)
    topups = np.where(
        prepaid, rng.poisson(np.clip(charges / TOPUP_PER_CHARGE + TOPUP_HABIT, *TOPUP_RANGE)), 0
    )
    # a prepaid line about to leave stops topping up
    topups = np.where(prepaid & in_ep & (base.episode_churn[idx] <= m + 1), topups // 2, topups)
    amounts, mix = TOPUP_AMOUNTS
    top_amount = topups * rng.choice(amounts, idx.size, p=mix)
    return {
        "subscriber_id": idx,
        "bill_month": np.full(idx.size, month, dtype=object),
        "invoice_amount": invoice,
        "recurring_charge": recurring,
        "usage_charge": np.round(usage, 2),
        "roaming_charge": np.round(roaming, 2),
        "discount_amount": np.round(discount, 2),
        "paid_amount": paid,
        "payment_date": payment_date,
        "overdue_days": base.overdue[idx].astype(np.int64),
        "balance_due": np.round(base.balance[idx], 2),
        "topup_count": topups,
        "topup_amount": top_amount,
    }


def _seconds(day: np.datetime64 | np.ndarray) -> np.ndarray:
    return np.asarray(day).astype("datetime64[s]").astype(np.int64)


def care(base: SubscriberBase, idx: np.ndarray, start: np.datetime64, ndays: int) -> dict[str, np.ndarray]:
    """The month's care contacts: everyday ones, an episode's, and port-out requests of leavers."""
    rng = base.rng
    m = base.month_index
    in_ep = base.episode_start[idx] >= 0
    driver = base.episode_driver[idx]
    rate = np.where(
        in_ep,
        np.where(np.isin(driver, CARE_DRIVEN), CARE_RATE["driven"], CARE_RATE["episode"]),
        CARE_RATE["none"],
    )
    n = rng.poisson(rate)
    owner = np.repeat(np.arange(idx.size), n)
    sub = idx[owner]
    k = owner.size
    generic = rng.choice(len(CareCategory), k, p=CARE_MIX)
    d = base.episode_driver[sub]
    ep = base.episode_start[sub] >= 0
    drawn = [(drv, rng.choice(categories, k)) for drv, categories in EPISODE_CARE.items()]
    cat = generic
    for drv, draws in reversed(drawn):
        cat = np.where(ep & (d == drv), draws, cat)
    last = np.where(base.active[sub], ndays, np.clip((base.deact_day[sub] - start).astype(int) + 1, 1, ndays))
    day = (rng.random(k) * last).astype(int)
    ts = (
        _seconds(start)
        + day * SECONDS_PER_DAY
        + rng.integers(CARE_HOURS[0] * SECONDS_PER_HOUR, CARE_HOURS[1] * SECONDS_PER_HOUR, k)
    )
    resolved = np.where(
        cat == CareCategory.COMPLAINT,
        rng.random(k) < RESOLVED["complaint"],
        rng.random(k) < RESOLVED["other"],
    )
    # port-out requests: the first step of leaving, days before the deactivation
    leaving = (
        ~base.active[idx]
        & (base.reason[idx] == Reason.PORT_OUT)
        & (rng.random(idx.size) < PORT_OUT_REQUEST_SHARE)
    )
    req = idx[leaving]
    req_ts = _seconds(base.deact_day[req] - rng.integers(0, PORT_OUT_REQUEST_DAYS, req.size))
    req_ts = np.maximum(req_ts, _seconds(start)) + PORT_OUT_REQUEST_HOUR * SECONDS_PER_HOUR
    due = idx[
        base.active[idx]
        & (base.episode_churn[idx] == m + 1)
        & ~base.false_alarm[idx]
        & (rng.random(idx.size) < EARLY_REQUEST_SHARE)
    ]
    due_ts = (
        _seconds(start)
        + (ndays - 1 - rng.integers(0, EARLY_REQUEST_DAYS, due.size)) * SECONDS_PER_DAY
        + EARLY_REQUEST_HOUR * SECONDS_PER_HOUR
    )
    req = np.concatenate([req, due])
    req_ts = np.concatenate([req_ts, due_ts])
    sub = np.concatenate([sub, req])
    ts = np.concatenate([ts, req_ts])
    cat = np.concatenate([cat, np.full(req.size, int(CareCategory.PORT_OUT_REQUEST))])
    resolved = np.concatenate([resolved, np.ones(req.size, dtype=bool)])
    ids = base.contact_seq + np.arange(sub.size)
    base.contact_seq += sub.size
    order = np.argsort(ts, kind="stable")
    return {
        "contact_id": ids[order],
        "subscriber_id": sub[order],
        "contact_ts": ts[order],
        "channel": CARE_CHANNELS[rng.choice(len(CareChannel), sub.size, p=CARE_CHANNEL_MIX)][order],
        "category": CARE_CATEGORIES[cat][order],
        "resolved": resolved[order],
    }
