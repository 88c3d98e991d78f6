"""The simulated subscriber base: one slot per line ever acquired, its state arrays, and new lines.

A line's index is its ``subscriber_id``. State lives in flat numpy arrays (one per attribute, grown
together) so a month is simulated with vectorised draws. Numbers of deactivated lines rest for
``QUARANTINE_MONTHS`` before they are reassigned, as real operators do.

Hidden traits that only the campaign system reads (``contact_averse``) are drawn from a stream of their
own, so adding one leaves every generated file as it was.
"""

from __future__ import annotations

import numpy as np

from features.calendar import add_months, days_in_month, month_start
from pipelines.sample_data.catalogue import (
    FIRST_POSTPAID,
    NO_DRIVER,
    NO_REASON,
    Channel,
    Plan,
    Region,
    is_prepaid,
    sha256_hex,
)

QUARANTINE_MONTHS = 3  # months a deactivated number rests before it is reassigned
MSISDN_BASE = 37060000000
N_EXTERNAL = 20000  # numbers outside the base that subscribers call (hashed once)
EXTERNAL_NUMBERS_FROM = MSISDN_BASE + 50_000_000
# their network: OP_B, OP_C, OP_D, fixed, international (codes into catalogue.OPERATOR_LABELS)
EXTERNAL_OPERATOR_MIX = (np.array([1, 2, 3, 4, 5]), [0.35, 0.3, 0.15, 0.15, 0.05])
K_CONTACTS = 8  # size of a line's calling circle
SPARE_CAPACITY = 1.6  # slots allocated for the initial base, since lines keep being acquired
GROWTH_CAPACITY = 1.5

# --- the initial base
INITIAL_TENURE_MEAN_DAYS = 700
INITIAL_TENURE_MAX_DAYS = 3000
LAPSED_CONTRACT_DAYS = 90  # initial contracts are renewed until in force or lapsed at most this long

# --- a new line
BUSINESS_SHARE = 0.08
PREPAID_SHARE = 0.45  # of consumer lines
CONTRACT_SHARE = 0.6  # of postpaid lines, on a 12 or 24 month contract (half each)
CONTRACT_MONTHS = (12, 24)
CHANNEL_MIX = [0.35, 0.25, 0.1, 0.3]  # by Channel
REGION_MIX = [0.2, 0.2, 0.15, 0.15, 0.3]  # by Region
MAX_HANDSET_AGE_MONTHS = 36
CONSENT_SHARE = 0.8
USAGE_SIGMA = 0.5  # lognormal spread of a line's usage level
BUSINESS_USAGE = 1.5
PROPENSITY_SIGMA = 0.55  # lognormal spread of a line's personal churn propensity
DEALER_PROPENSITY = 1.4  # dealer acquisitions churn more (acquisition quality)
NIGHT_SHARE_BETA = (2, 14)
DATA_SHARE_BETA = (3, 5)
COMPETITOR_SHARE_BETA = (3, 8)  # share of calls to other networks
ROAMER = {"business": 0.15, "consumer": 0.03}  # median chance of a trip abroad in a month
ROAMER_SIGMA = 0.5
FAMILY_JOIN_SHARE = 0.15  # new consumer lines joining an existing household (family add-on)
FAMILY_SHARE = 0.3  # new lines that start a household
LINES_PER_BUSINESS = 4  # business customers hold several lines
HOUSEHOLD_CONTACTS = 2  # household members that head a new line's calling circle
# a line a retention contact may push out ("sleeping dog", see catalogue.PROVOKE_CHANCE): more common
# among low-usage lines, below LOW_USAGE (about a quarter of the base)
CONTACT_AVERSE_SHARE = {"low_usage": 0.35, "other": 0.1}
LOW_USAGE = 0.7
TRAIT_STREAM = 1  # the hidden traits' random stream: (seed, TRAIT_STREAM)

# (attribute, dtype, value of an empty slot): the state of every line
STATE = (
    ("active", bool, False),
    ("act_day", "datetime64[D]", np.datetime64("NaT")),
    ("deact_day", "datetime64[D]", np.datetime64("NaT")),
    ("reason", np.int8, NO_REASON),  # catalogue.Reason
    ("port_op", np.int8, -1),  # catalogue.Competitor
    ("msisdn", np.int64, 0),
    ("customer", np.int64, 0),
    ("household", np.int64, -1),
    ("business", bool, False),
    ("plan", np.int8, 0),  # catalogue.Plan
    ("contract_end", "datetime64[D]", np.datetime64("NaT")),
    ("channel", np.int8, 0),  # catalogue.Channel
    ("region", np.int8, 0),  # catalogue.Region
    ("handset0", np.int16, 0),  # handset age in months at activation
    ("consent", bool, True),
    ("usage", np.float64, 1.0),  # personal usage level
    ("propensity", np.float64, 1.0),  # personal churn propensity
    ("night", np.float64, 0.1),  # share of events at night
    ("data_share", np.float64, 0.35),
    ("comp_share", np.float64, 0.25),  # share of calls to other networks
    ("roamer", np.float64, 0.02),  # chance of a trip abroad in a month
    ("episode_churn", np.int32, -1),  # month index the current risk episode churns in
    ("churn_date", "datetime64[D]", np.datetime64("NaT")),  # its day, when a campaign drew it already
    ("episode_start", np.int32, -1),  # month index it started in (-1: no episode)
    ("episode_driver", np.int8, NO_DRIVER),  # catalogue.Driver
    ("false_alarm", bool, False),  # the episode ends without churn
    ("contagion_until", np.int32, -1),  # a contact left: at risk until this month index
    ("overdue", np.int16, 0),  # days overdue
    ("balance", np.float64, 0.0),
    ("payment_trouble", bool, False),
    ("bill_credit_until", np.int32, -1),  # an accepted bill credit runs until this month index
    ("last_usage_mult", np.float64, 1.0),
    ("contact_averse", bool, False),  # hidden: a retention contact may push the line out
)


class SubscriberBase:
    """The lines, their state (see :data:`STATE`), their numbers and the acquisition of new lines."""

    def __init__(self, n_subscribers: int, seed: int, first_month: str) -> None:
        self.rng = np.random.default_rng(seed)
        self.trait_rng = np.random.default_rng([seed, TRAIT_STREAM])
        self.target_base = n_subscribers
        self.month_index = 0
        self.first_month = first_month
        self.capacity = 0
        self.n = 0
        self._alloc(int(n_subscribers * SPARE_CAPACITY) + 100)
        self.next_number = 0
        self.free_numbers: list[tuple[int, int]] = []  # (available_from_month_index, msisdn)
        self.next_customer = 0
        self.next_household = 0
        self.record_seq = 0
        # sha256 of each slot's number, and the number it was computed for (-1: none yet)
        self._hashed_numbers = np.empty(0, np.int64)
        self._hashes = np.empty(0, object)
        self.contact_seq = 0
        ext = EXTERNAL_NUMBERS_FROM + np.arange(N_EXTERNAL)
        self.external_hash = sha256_hex(ext)
        codes, mix = EXTERNAL_OPERATOR_MIX
        self.external_op_code = self.rng.choice(codes, N_EXTERNAL, p=mix)

    # -------------------------------------------------------------------------------- storage
    def _alloc(self, capacity: int) -> None:
        old = self.capacity
        self.capacity = capacity
        for name, dtype, fill in STATE:
            arr = np.full(capacity, fill, dtype=dtype)
            if old:
                arr[:old] = getattr(self, name)[:old]
            setattr(self, name, arr)
        contacts = np.full((capacity, K_CONTACTS), -1, dtype=np.int64)
        if old:
            contacts[:old] = self.contacts[:old]
        self.contacts = contacts

    @property
    def month(self) -> str:
        """The month the next step simulates."""
        return add_months(self.first_month, self.month_index)

    def tenure_months(self, idx: np.ndarray) -> np.ndarray:
        start = np.datetime64(month_start(self.month), "M")
        return (start - self.act_day[idx].astype("datetime64[M]")).astype(int)

    def msisdn_hash(self) -> np.ndarray:
        """Hash of each subscriber's current number; only numbers new to a slot are hashed."""
        numbers = self.msisdn[: self.n]
        known, hashes = self._hashed_numbers, self._hashes
        if known.size < numbers.size:
            known = np.concatenate([known, np.full(numbers.size - known.size, -1, np.int64)])
            hashes = np.concatenate([hashes, np.empty(numbers.size - hashes.size, object)])
        changed = np.flatnonzero(known != numbers)
        hashes[changed] = sha256_hex(numbers[changed])
        known[:] = numbers
        self._hashed_numbers, self._hashes = known, hashes
        return hashes

    # ------------------------------------------------------------------------------ numbers
    def release_numbers(self, lines: np.ndarray) -> None:
        """The numbers of ``lines`` (deactivated this month) rest, then go back to the pool."""
        for number in self.msisdn[lines]:
            self.free_numbers.append((self.month_index + QUARANTINE_MONTHS + 1, int(number)))

    def _new_numbers(self, k: int) -> np.ndarray:
        out = []
        ready = [x for x in self.free_numbers if x[0] <= self.month_index]
        self.free_numbers = [x for x in self.free_numbers if x[0] > self.month_index]
        ready.sort()
        for _, number in ready[:k]:
            out.append(number)
        self.free_numbers.extend(ready[k:])
        fresh = k - len(out)
        out.extend(range(MSISDN_BASE + self.next_number, MSISDN_BASE + self.next_number + fresh))
        self.next_number += fresh
        return np.array(out, dtype=np.int64)

    # ------------------------------------------------------------------------------ acquisition
    def acquire(self, k: int, *, initial: bool = False) -> np.ndarray:
        """Add ``k`` lines activated this month (``initial``: the starting base, tenures over years)."""
        if k <= 0:
            return np.array([], dtype=np.int64)
        if self.n + k > self.capacity:
            self._alloc(int((self.n + k) * GROWTH_CAPACITY))
        rng = self.rng
        idx = np.arange(self.n, self.n + k)
        self.n += k
        start = np.datetime64(month_start(self.month), "D")
        if initial:
            tenure_days = (rng.exponential(INITIAL_TENURE_MEAN_DAYS, k)).astype(int) + 1
            tenure_days = np.minimum(tenure_days, INITIAL_TENURE_MAX_DAYS)
            self.act_day[idx] = start - tenure_days
        else:
            self.act_day[idx] = start + rng.integers(0, days_in_month(self.month), k)
        self.active[idx] = True
        self.msisdn[idx] = self._new_numbers(k)
        business = rng.random(k) < BUSINESS_SHARE
        self.business[idx] = business
        prepaid = (rng.random(k) < PREPAID_SHARE) & ~business
        plan = np.where(
            prepaid, rng.integers(Plan.PRE_S, FIRST_POSTPAID, k), rng.integers(FIRST_POSTPAID, len(Plan), k)
        )
        self.plan[idx] = plan
        self._contracts(idx, prepaid, start, initial)
        self.channel[idx] = rng.choice(len(Channel), k, p=CHANNEL_MIX)
        self.region[idx] = rng.choice(len(Region), k, p=REGION_MIX)
        self.handset0[idx] = rng.integers(0, MAX_HANDSET_AGE_MONTHS, k)
        self.consent[idx] = rng.random(k) < CONSENT_SHARE
        self.usage[idx] = rng.lognormal(0.0, USAGE_SIGMA, k) * np.where(business, BUSINESS_USAGE, 1.0)
        self.propensity[idx] = rng.lognormal(0.0, PROPENSITY_SIGMA, k)
        self.propensity[idx] *= np.where(self.channel[idx] == Channel.DEALER, DEALER_PROPENSITY, 1.0)
        self.night[idx] = rng.beta(*NIGHT_SHARE_BETA, k)
        self.data_share[idx] = rng.beta(*DATA_SHARE_BETA, k)
        self.comp_share[idx] = rng.beta(*COMPETITOR_SHARE_BETA, k)
        roamer = np.where(business, ROAMER["business"], ROAMER["consumer"])
        self.roamer[idx] = roamer * rng.lognormal(0, ROAMER_SIGMA, k)
        self.payment_trouble[idx] = False
        averse = np.where(
            self.usage[idx] < LOW_USAGE, CONTACT_AVERSE_SHARE["low_usage"], CONTACT_AVERSE_SHARE["other"]
        )
        self.contact_averse[idx] = self.trait_rng.random(k) < averse
        self._customers_and_households(idx, business, initial)
        self._calling_circles(idx)
        return idx

    def _contracts(self, idx: np.ndarray, prepaid: np.ndarray, start: np.datetime64, initial: bool) -> None:
        """Postpaid contracts of 12 or 24 months for part of the base, renewed when they expire."""
        rng = self.rng
        k = idx.size
        has_contract = ~prepaid & (rng.random(k) < CONTRACT_SHARE)
        months = np.where(rng.random(k) < 0.5, *CONTRACT_MONTHS)  # half of each length
        act_month = self.act_day[idx].astype("datetime64[M]")
        end = (act_month + months).astype("datetime64[D]")
        # initial base: contracts already renewed as often as needed to be in force or recently lapsed
        if initial:
            while True:
                lapsed = has_contract & (end < start - LAPSED_CONTRACT_DAYS)
                if not lapsed.any():
                    break
                end = np.where(lapsed, (end.astype("datetime64[M]") + months).astype("datetime64[D]"), end)
        self.contract_end[idx] = np.where(has_contract, end, np.datetime64("NaT"))

    def _customers_and_households(self, idx: np.ndarray, business: np.ndarray, initial: bool) -> None:
        """Customers and households: some new lines join an existing household (family add-on)."""
        rng = self.rng
        k = idx.size
        active_pool = np.flatnonzero(self.active[: idx[0]]) if idx[0] > 0 else np.array([], dtype=np.int64)
        joins = (rng.random(k) < (0.0 if initial else FAMILY_JOIN_SHARE)) & ~business & (active_pool.size > 0)
        customers = np.arange(self.next_customer, self.next_customer + k)
        self.next_customer += k
        self.customer[idx] = customers
        households = np.full(k, -1, dtype=np.int64)
        fam = rng.random(k) < FAMILY_SHARE
        households[fam] = np.arange(self.next_household, self.next_household + fam.sum())
        self.next_household += int(fam.sum())
        if joins.any():
            hosts = rng.choice(active_pool, joins.sum())
            host_household = self.household[hosts].copy()
            need = host_household < 0
            host_household[need] = np.arange(self.next_household, self.next_household + need.sum())
            self.next_household += int(need.sum())
            self.household[hosts] = host_household
            households[joins] = host_household
            self.customer[idx[joins]] = self.customer[hosts]
            # an add-on keeps the host's prepaid plan, or takes the smallest postpaid one
            host_plan = self.plan[hosts]
            self.plan[idx[joins]] = np.where(is_prepaid(host_plan), host_plan, FIRST_POSTPAID)
        if initial:
            # in the initial base, pair up family members among themselves
            fam_idx = idx[fam]
            pair = fam_idx[rng.permutation(fam_idx.size)]
            half = pair.size // 2
            households[np.searchsorted(idx, pair[half : 2 * half])] = households[
                np.searchsorted(idx, pair[:half])
            ]
            self.customer[pair[half : 2 * half]] = self.customer[pair[:half]]
        self.household[idx] = households
        biz = idx[business]
        if biz.size > 3:
            owners = biz[rng.integers(0, max(1, biz.size // LINES_PER_BUSINESS), biz.size)]
            self.customer[biz] = self.customer[owners]

    def _calling_circles(self, idx: np.ndarray) -> None:
        """Random subscribers of the own network, household members first."""
        pool = np.flatnonzero(self.active[: self.n])
        self.contacts[idx] = self.rng.choice(pool, (idx.size, K_CONTACTS))
        households = self.household[idx]
        for j, h in zip(idx[households >= 0], households[households >= 0], strict=True):
            members = np.flatnonzero(self.household[: self.n] == h)
            members = members[members != j][:HOUSEHOLD_CONTACTS]
            self.contacts[j, : members.size] = members
