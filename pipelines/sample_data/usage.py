"""A month's usage: how risk episodes change it, and the call detail records (CDRs) that show it.

The CDRs are the biggest source by far (tens of events per line a month), so they are drawn as flat
arrays and their categorical columns stay ``(codes, labels)`` pairs until the writer formats them.
"""

from __future__ import annotations

import numpy as np

from pipelines.sample_data.base import K_CONTACTS, N_EXTERNAL, SubscriberBase
from pipelines.sample_data.catalogue import (
    CELL_LABELS,
    COUNTRIES,
    DIRECTIONS,
    EVENT_TYPES,
    FIRST_COMPETITOR,
    NIGHT_HOURS,
    OPERATOR_LABELS,
    OWN_NETWORK,
    Direction,
    Driver,
    EventType,
    Reason,
    is_prepaid,
)
from pipelines.sample_data.events import SECONDS_PER_DAY, SECONDS_PER_HOUR

# --- how an episode shows in usage
USAGE_NOISE_SIGMA = 0.28  # month-to-month lognormal noise everyone has
EPISODE_DECLINE = 0.3  # usage lost per month into an episode (times a personal factor)
EPISODE_DECLINE_SPREAD = (0.4, 1.4)
MIN_USAGE_MULT = 0.1
RAMP_UP_MONTHS = 3  # new lines ramp up from 60%, 15 points a month
RAMP_UP = (0.6, 0.15)
SILENT_RUN_SHARE = 0.5  # lines churning within two months that go silent for part of the month
SILENT_RUN_SPAN = (0.35, 0.8)  # share of the month still active
QUIET_MONTH_SHARE = 0.06  # noise: vacations and quiet months for people who stay
QUIET_MONTH_SPAN = (0.4, 0.85)

# --- events
DAY_HOURS = (7, 22)
SMS_SHARE = 0.3  # of the events that are not data
OUTGOING_SHARE = 0.55  # of calls and SMS (data is always outgoing)
VOICE_SECONDS = (4.2, 1.0)  # lognormal
DATA_SESSION_SECONDS = (30, 3600)
DATA_KB = (9.5, 1.3)  # lognormal
COMPETITOR_PULL_CALLS = 0.3  # extra share of calls to other networks in a competitor-pull episode
EPISODE_CALLS = 0.08  # ... and in any episode
MAX_COMPETITOR_SHARE = 0.95
TRIP_DAYS = (3, 12)
# --- rating: prepaid pays per use, postpaid mostly inside the plan; roaming is charged
PER_VOICE_MINUTE = 0.06
PER_SMS = 0.05
PER_DATA_MB = 0.004
OUT_OF_BUNDLE = 0.04  # share of postpaid events charged (at twice the rate)
ROAMING_MARKUP = 4
ROAMING_SURCHARGE = {"out": 0.2, "in": 0.05}
UNKNOWN_CELL_SHARE = 0.02
CELLS_PER_REGION = (100, 60)  # code offset of a region's cells, cells in use


def episode_effects(base: SubscriberBase, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Usage multiplier and share of the month with activity, from risk episodes and leaving."""
    rng = base.rng
    m = base.month_index
    in_ep = base.episode_start[idx] >= 0
    months_in = np.where(in_ep, m - base.episode_start[idx] + 1, 0)
    mult = rng.lognormal(0.0, USAGE_NOISE_SIGMA, idx.size)
    decline = 1.0 - EPISODE_DECLINE * months_in * rng.uniform(*EPISODE_DECLINE_SPREAD, idx.size)
    mult = np.where(in_ep, mult * np.clip(decline, MIN_USAGE_MULT, 1), mult)
    # new lines ramp up; poor fit shows as a weak ramp-up
    tenure = base.tenure_months(idx)
    ramp = np.where(tenure < RAMP_UP_MONTHS, RAMP_UP[0] + RAMP_UP[1] * tenure, 1.0)
    mult = mult * ramp
    span = np.ones(idx.size)
    churning_next = in_ep & (base.episode_churn[idx] <= m + 2)
    silent = churning_next & (rng.random(idx.size) < SILENT_RUN_SHARE)
    span = np.where(silent, rng.uniform(*SILENT_RUN_SPAN, idx.size), span)
    quiet = rng.random(idx.size) < QUIET_MONTH_SHARE
    span = np.where(quiet & ~churning_next, rng.uniform(*QUIET_MONTH_SPAN, idx.size), span)
    return mult, span


def cdr(
    base: SubscriberBase,
    idx: np.ndarray,
    start: np.datetime64,
    ndays: int,
    usage_mult: np.ndarray,
    span_frac: np.ndarray,
    events_mean: float,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The month's CDRs of the lines ``idx``, and each line's domestic and roaming charges."""
    rng = base.rng
    start_s = start.astype("datetime64[s]").astype(np.int64)
    act = np.maximum((base.act_day[idx] - start).astype(int), 0)
    deact = base.deact_day[idx]
    last = np.where(np.isnat(deact) | base.active[idx], ndays, (deact - start).astype(int) + 1)
    last = np.clip(last, 1, ndays)
    first = np.minimum(act, last - 1)
    span_days = np.maximum(1, ((last - first) * span_frac).astype(int))
    present_frac = (last - first) / ndays
    lam = events_mean * base.usage[idx] * usage_mult * present_frac
    counts = rng.poisson(lam)
    total = int(counts.sum())
    owner = np.repeat(np.arange(idx.size), counts)
    sub = idx[owner]
    day = first[owner] + (rng.random(total) * span_days[owner]).astype(int)
    night = rng.random(total) < base.night[sub]
    hour = np.where(
        night, NIGHT_HOURS[rng.integers(0, NIGHT_HOURS.size, total)], rng.integers(*DAY_HOURS, total)
    )
    ts = start_s + day * SECONDS_PER_DAY + hour * SECONDS_PER_HOUR + rng.integers(0, SECONDS_PER_HOUR, total)
    kind = rng.random(total)
    data_share = base.data_share[sub]
    is_data = kind < data_share
    is_sms = ~is_data & (kind < data_share + (1 - data_share) * SMS_SHARE)
    is_voice = ~is_data & ~is_sms
    event_type = np.where(is_data, EventType.DATA, np.where(is_sms, EventType.SMS, EventType.VOICE))
    out_dir = is_data | (rng.random(total) < OUTGOING_SHARE)
    # lengths and volumes drawn only for the rows that have them
    voice_rows, data_rows = np.flatnonzero(is_voice), np.flatnonzero(is_data)
    duration = np.zeros(total, np.int64)
    duration[voice_rows] = rng.lognormal(*VOICE_SECONDS, voice_rows.size).astype(np.int64) + 1
    duration[data_rows] = rng.integers(*DATA_SESSION_SECONDS, data_rows.size)
    volume = np.zeros(total, np.int64)
    volume[data_rows] = rng.lognormal(*DATA_KB, data_rows.size).astype(np.int64)
    # the other party: own-network contacts (their hashed msisdn) or external numbers
    in_ep = base.episode_start[sub] >= 0
    pull = in_ep & (base.episode_driver[sub] == Driver.COMPETITOR_PULL)
    comp = np.clip(base.comp_share[sub] + np.where(pull, COMPETITOR_PULL_CALLS, 0.0), 0, MAX_COMPETITOR_SHARE)
    comp = np.clip(comp + np.where(in_ep, EPISODE_CALLS, 0.0), 0, MAX_COMPETITOR_SHARE)
    talk = ~is_data
    own = talk & (rng.random(total) >= comp)
    contact = base.contacts[sub, rng.integers(0, K_CONTACTS, total)]
    contact = np.where(contact < 0, sub, contact)
    # other_party as codes into [subscriber number hashes..., external hashes...]; -1 = null
    own_hash = base.msisdn_hash()
    other = np.full(total, -1, dtype=np.int64)
    other_op = np.full(total, -1, dtype=np.int64)  # codes into OPERATOR_LABELS
    own_idx = np.flatnonzero(own)
    other[own_idx] = contact[own_idx]
    c = contact[own_idx]
    # contacts who ported out keep their number with the competitor; deactivated others are gone
    left = ~base.active[c] & ~np.isnat(base.deact_day[c]) & (base.deact_day[c] < start)
    ported = left & (base.reason[c] == Reason.PORT_OUT)
    other_op[own_idx] = np.where(ported, FIRST_COMPETITOR + np.maximum(base.port_op[c], 0), OWN_NETWORK)
    ext_mask = talk & ~own
    ext_mask[own_idx[left & ~ported]] = True  # calls to a contact who left go to someone else
    ext_idx = np.flatnonzero(ext_mask)
    pick = rng.integers(0, N_EXTERNAL, ext_idx.size)
    other[ext_idx] = own_hash.size + pick
    other_op[ext_idx] = base.external_op_code[pick]
    roaming, roaming_country = _trips(base, idx, owner, day, ndays)
    prepaid = is_prepaid(base.plan[sub])
    charge = np.where(
        is_voice & out_dir,
        duration / 60 * PER_VOICE_MINUTE,
        np.where(is_sms & out_dir, PER_SMS, np.where(is_data, volume / 1024 * PER_DATA_MB, 0.0)),
    )
    charge = np.where(prepaid, charge, np.where(rng.random(total) < OUT_OF_BUNDLE, charge * 2, 0.0))
    surcharge = np.where(out_dir, ROAMING_SURCHARGE["out"], ROAMING_SURCHARGE["in"])
    charge = np.where(roaming, charge * ROAMING_MARKUP + surcharge, charge)
    charge = np.round(charge, 2)
    region_offset, cells = CELLS_PER_REGION
    cell = np.where(
        rng.random(total) < UNKNOWN_CELL_SHARE,
        -1,
        base.region[sub].astype(np.int64) * region_offset + rng.integers(0, cells, total),
    )
    record = base.record_seq + np.arange(total)
    base.record_seq += total
    # mediation files are not time-ordered, so the rows stay in the order drawn
    charges = np.bincount(owner, weights=np.where(roaming, 0, charge), minlength=idx.size)
    roam_charges = np.bincount(owner, weights=np.where(roaming, charge, 0), minlength=idx.size)
    rows = {
        "record_id": record,
        "msisdn": base.msisdn[sub],
        "event_ts": ts,
        "event_type": (event_type, EVENT_TYPES),
        "direction": (np.where(out_dir, Direction.OUT, Direction.IN), DIRECTIONS),
        "duration_s": duration,
        "volume_kb": volume,
        "other_party": (other, np.concatenate([own_hash, base.external_hash])),
        "other_party_operator": (other_op, OPERATOR_LABELS),
        "cell_id": (cell, CELL_LABELS),
        "roaming": roaming,
        "roaming_country": (roaming_country, COUNTRIES),
        "charge": charge,
        "_subscriber": sub,
    }
    return rows, charges, roam_charges


def _trips(
    base: SubscriberBase, idx: np.ndarray, owner: np.ndarray, day: np.ndarray, ndays: int
) -> tuple[np.ndarray, np.ndarray]:
    """Roaming trips: whether each event (of line ``idx[owner]`` on ``day``) is abroad, and the country."""
    rng = base.rng
    total = owner.size
    trip = rng.random(idx.size) < base.roamer[idx]
    trip_start = rng.integers(0, ndays, idx.size)
    trip_len = rng.integers(*TRIP_DAYS, idx.size)
    country = rng.integers(0, COUNTRIES.size, idx.size)
    travel = np.flatnonzero(trip[owner])  # only the rows of travellers can be abroad
    t_owner = owner[travel]
    abroad = (day[travel] >= trip_start[t_owner]) & (day[travel] < trip_start[t_owner] + trip_len[t_owner])
    roaming = np.zeros(total, bool)
    roaming[travel] = abroad
    roaming_country = np.full(total, -1, np.int64)
    roaming_country[travel[abroad]] = country[t_owner[abroad]]
    return roaming, roaming_country
