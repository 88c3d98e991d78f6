"""A vectorised, seeded simulation of a mobile operator's subscriber base, month by month.

Churn is driven by *risk episodes*: a subscriber enters an episode (hazard depends on plan type, tenure
cohort, contract end, a personal propensity and churned contacts), shows signals for one or two months
(usage decline, fewer active days, a run of silent days, calls to competitors, care contacts, bill shock,
arrears), then churns, unless the episode was a false alarm or a retention offer worked. Some churners
leave silently (no episode), and many non-churners show noise signals: the signal is real but partial.

Each month yields tables of plain Python/numpy columns for the five landing sources; the writer turns
them into files. Memory holds one month of CDRs at a time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from features.calendar import add_months, days_in_month, month_start

# ------------------------------------------------------------------------------------ catalogues
PLANS = [  # plan_id, plan_type, monthly_fee
    ("PRE_S", "prepaid", 5.0),
    ("PRE_M", "prepaid", 10.0),
    ("PRE_L", "prepaid", 15.0),
    ("POST_S", "postpaid", 15.0),
    ("POST_M", "postpaid", 25.0),
    ("POST_L", "postpaid", 40.0),
    ("POST_XL", "postpaid", 60.0),
]
REGIONS = np.array(["north", "south", "east", "west", "capital"])
CHANNELS = np.array(["store", "online", "telesales", "dealer"])
COMPETITORS = np.array(["OP_B", "OP_C", "OP_D"])
COUNTRIES = np.array(["ES", "IT", "DE", "FR", "GR", "HR", "US", "TR", "GB", "PL"])
REASONS = np.array(["port_out", "voluntary", "non_payment", "fraud", "deceased", "other"])
CARE_CATEGORIES = np.array(
    ["billing", "network", "device", "plan_change", "complaint", "port_out_request", "other"]
)
CARE_CHANNELS = np.array(["call_center", "store", "app", "web"])
# Drivers of a risk episode (reason families the model should later recover).
DRIVERS = np.array(
    [
        "new_customer_fit",
        "service_issue",
        "usage_decline",
        "contract_expiry",
        "competitor_pull",
        "price_sensitivity",
    ]
)
OFFERS = np.array(["contract_renewal", "data_pack", "bill_credit", "service_recovery", "roaming_pack"])
# Offer that fits each driver, and the effect of an accepted offer on a real episode (fit / misfit).
DRIVER_OFFER = np.array([2, 3, 1, 0, 2, 2])
OFFER_EFFECT_FIT = np.array([0.65, 0.35, 0.45, 0.55, 0.25])
OFFER_EFFECT_MISFIT = 0.1
FEEDBACK = np.array(["price", "network", "competitor_offer", "moving", "no_reason", "coverage", "device"])
DRIVER_FEEDBACK = np.array([0, 1, 4, 2, 2, 0])  # the feedback an agent most often codes per driver


@dataclass(frozen=True)
class OfferTruth:
    """How subscribers truly respond to one of the pipeline's offers (closed loop, known to the test).

    ``acceptance``: chance a contacted line accepts; ``effect``: chance an accepted offer ends a real risk
    episode whose driver it ``fits`` (``roaming``: a heavy roamer), else ``OFFER_EFFECT_MISFIT``.
    """

    acceptance: float
    effect: float
    fits: tuple[str, ...] = ()


# The true response to the default catalogue's offers (conf/base.yml ``offers``); an offer id missing
# here gets ``UNKNOWN_OFFER``. Priors in the catalogue are deliberately not these numbers: the loop
# has to measure them.
CATALOGUE_TRUTH = {
    "data_pack": OfferTruth(0.35, 0.45, ("usage_decline",)),
    "free_addon": OfferTruth(0.3, 0.3, ("new_customer_fit", "usage_decline")),
    "tenure_upgrade": OfferTruth(0.3, 0.4, ("competitor_pull", "contract_expiry")),
    "renewal_device": OfferTruth(0.25, 0.8, ("contract_expiry",)),
    "family_plan": OfferTruth(0.2, 0.6, ("competitor_pull", "price_sensitivity")),
    "roaming_pack": OfferTruth(0.4, 0.5, ("roaming",)),
    "bill_credit": OfferTruth(0.5, 0.5, ("price_sensitivity",)),
    "service_recovery": OfferTruth(0.6, 0.6, ("service_issue",)),
}
UNKNOWN_OFFER = OfferTruth(0.3, OFFER_EFFECT_MISFIT)
CONTACT_RATE = {"sms": 0.9, "app": 0.8, "email": 0.85, "call": 0.65, "call_center": 0.65, "store": 0.5}
CONTACT_EFFECT = 0.04  # a contact alone (offer declined) sometimes ends an episode too
QUARANTINE_MONTHS = 3  # months a deactivated number rests before it is reassigned
MSISDN_BASE = 37060000000
N_EXTERNAL = 20000
K_CONTACTS = 8
NIGHT_HOURS = np.array([22, 23, 0, 1, 2, 3, 4, 5])
EVENT_TYPES = np.array(["voice", "sms", "data"])
DIRECTIONS = np.array(["out", "in"])
OPERATOR_LABELS = np.array(["own", "OP_B", "OP_C", "OP_D", "fixed", "intl"])
CELL_LABELS = np.array([f"C{i:03d}" for i in range(500)])


def sha256_hex(numbers: np.ndarray) -> np.ndarray:
    """Lowercase hex SHA-256 of each number's digits (the contract's ``other_party`` hashing)."""
    return np.array([hashlib.sha256(str(int(n)).encode()).hexdigest() for n in numbers], dtype=object)


@dataclass
class MonthOutput:
    """One month of landing rows per source, as column dicts (numpy arrays or lists)."""

    month: str
    subscriptions: dict[str, np.ndarray]
    billing: dict[str, np.ndarray]
    care: dict[str, np.ndarray]
    cdr: dict[str, np.ndarray]
    campaign_outcomes: dict[str, np.ndarray] | None
    stats: dict[str, float] = field(default_factory=dict)


class OperatorSimulation:
    """The subscriber base and its month-by-month evolution. Deterministic for a seed."""

    def __init__(
        self, n_subscribers: int, seed: int, first_month: str, events_per_subscriber: int = 40
    ) -> None:
        self.rng = np.random.default_rng(seed)
        self.target_base = n_subscribers
        self.events_mean = events_per_subscriber
        self.month_index = 0
        self.first_month = first_month
        self.capacity = 0
        self.n = 0
        self._alloc(int(n_subscribers * 1.6) + 100)
        self.next_number = 0
        self.free_numbers: list[tuple[int, int]] = []  # (available_from_month_index, msisdn)
        self.next_customer = 0
        self.next_household = 0
        self.record_seq = 0
        # sha256 of each slot's number, and the number it was computed for (-1: none yet)
        self._hashed_numbers = np.empty(0, np.int64)
        self._hashes = np.empty(0, object)
        self.contact_seq = 0
        ext = MSISDN_BASE + 50_000_000 + np.arange(N_EXTERNAL)
        self.external_hash = sha256_hex(ext)
        self.external_op_code = self.rng.choice(
            np.array([1, 2, 3, 4, 5]), N_EXTERNAL, p=[0.35, 0.3, 0.15, 0.15, 0.05]
        )
        self.pending_campaign: dict[str, np.ndarray] | None = None
        # the initial base: tenures spread over five years before the first month
        self._acquire(n_subscribers, initial=True)

    # -------------------------------------------------------------------------------- storage
    def _alloc(self, capacity: int) -> None:
        old = self.capacity
        self.capacity = capacity

        def grow(name: str, dtype: object, fill: object) -> None:
            arr = np.full(capacity, fill, dtype=dtype)
            if old:
                arr[:old] = getattr(self, name)[:old]
            setattr(self, name, arr)

        for name, dtype, fill in [
            ("active", bool, False),
            ("act_day", "datetime64[D]", np.datetime64("NaT")),
            ("deact_day", "datetime64[D]", np.datetime64("NaT")),
            ("reason", np.int8, -1),
            ("port_op", np.int8, -1),
            ("msisdn", np.int64, 0),
            ("customer", np.int64, 0),
            ("household", np.int64, -1),
            ("business", bool, False),
            ("plan", np.int8, 0),
            ("contract_end", "datetime64[D]", np.datetime64("NaT")),
            ("channel", np.int8, 0),
            ("region", np.int8, 0),
            ("handset0", np.int16, 0),
            ("consent", bool, True),
            ("usage", np.float64, 1.0),
            ("propensity", np.float64, 1.0),
            ("night", np.float64, 0.1),
            ("data_share", np.float64, 0.35),
            ("comp_share", np.float64, 0.25),
            ("roamer", np.float64, 0.02),
            ("episode_churn", np.int32, -1),
            ("episode_start", np.int32, -1),
            ("episode_driver", np.int8, -1),
            ("false_alarm", bool, False),
            ("contagion_until", np.int32, -1),
            ("overdue", np.int16, 0),
            ("balance", np.float64, 0.0),
            ("payment_trouble", bool, False),
            ("bill_credit_until", np.int32, -1),
            ("last_usage_mult", np.float64, 1.0),
        ]:
            grow(name, dtype, fill)
        contacts = np.full((capacity, K_CONTACTS), -1, dtype=np.int64)
        if old:
            contacts[:old] = self.contacts[:old]
        self.contacts = contacts

    # ------------------------------------------------------------------------------ lifecycle
    @property
    def month(self) -> str:
        return add_months(self.first_month, self.month_index)

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

    def _acquire(self, k: int, *, initial: bool = False) -> np.ndarray:
        if k <= 0:
            return np.array([], dtype=np.int64)
        if self.n + k > self.capacity:
            self._alloc(int((self.n + k) * 1.5))
        rng = self.rng
        idx = np.arange(self.n, self.n + k)
        self.n += k
        start = np.datetime64(month_start(self.month), "D")
        if initial:
            tenure_days = (rng.exponential(700, k)).astype(int) + 1
            tenure_days = np.minimum(tenure_days, 3000)
            self.act_day[idx] = start - tenure_days
        else:
            self.act_day[idx] = start + rng.integers(0, days_in_month(self.month), k)
        self.active[idx] = True
        self.msisdn[idx] = self._new_numbers(k)
        business = rng.random(k) < 0.08
        self.business[idx] = business
        prepaid = (rng.random(k) < 0.45) & ~business
        plan = np.where(prepaid, rng.integers(0, 3, k), rng.integers(3, 7, k))
        self.plan[idx] = plan
        # postpaid contracts of 12 or 24 months for part of the base, renewed when they expire
        has_contract = ~prepaid & (rng.random(k) < 0.6)
        months = np.where(rng.random(k) < 0.5, 12, 24)
        act_month = self.act_day[idx].astype("datetime64[M]")
        end = (act_month + months).astype("datetime64[D]")
        # initial base: contracts already renewed as often as needed to be in force or recently lapsed
        if initial:
            while True:
                lapsed = has_contract & (end < start - 90)
                if not lapsed.any():
                    break
                end = np.where(lapsed, (end.astype("datetime64[M]") + months).astype("datetime64[D]"), end)
        self.contract_end[idx] = np.where(has_contract, end, np.datetime64("NaT"))
        self.channel[idx] = rng.choice(4, k, p=[0.35, 0.25, 0.1, 0.3])
        self.region[idx] = rng.choice(5, k, p=[0.2, 0.2, 0.15, 0.15, 0.3])
        self.handset0[idx] = rng.integers(0, 36, k)
        self.consent[idx] = rng.random(k) < 0.8
        self.usage[idx] = rng.lognormal(0.0, 0.5, k) * np.where(business, 1.5, 1.0)
        self.propensity[idx] = rng.lognormal(0.0, 0.55, k)
        # dealer acquisitions churn more (acquisition quality)
        self.propensity[idx] *= np.where(self.channel[idx] == 3, 1.4, 1.0)
        self.night[idx] = rng.beta(2, 14, k)
        self.data_share[idx] = rng.beta(3, 5, k)
        self.comp_share[idx] = rng.beta(3, 8, k)
        self.roamer[idx] = np.where(business, 0.15, 0.03) * rng.lognormal(0, 0.5, k)
        self.payment_trouble[idx] = False
        # customers and households: some new lines join an existing household (family add-on)
        active_pool = np.flatnonzero(self.active[: idx[0]]) if idx[0] > 0 else np.array([], dtype=np.int64)
        joins = (rng.random(k) < (0.0 if initial else 0.15)) & ~business & (active_pool.size > 0)
        customers = np.arange(self.next_customer, self.next_customer + k)
        self.next_customer += k
        self.customer[idx] = customers
        households = np.full(k, -1, dtype=np.int64)
        fam = rng.random(k) < 0.3
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
            self.plan[idx[joins]] = np.where(self.plan[hosts] < 3, self.plan[hosts], 3)
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
        # business customers hold several lines
        biz = idx[business]
        if biz.size > 3:
            owners = biz[rng.integers(0, max(1, biz.size // 4), biz.size)]
            self.customer[biz] = self.customer[owners]
        # calling circle: random subscribers (own network), household members first
        pool = np.flatnonzero(self.active[: self.n])
        self.contacts[idx] = rng.choice(pool, (k, K_CONTACTS))
        for j, h in zip(idx[households >= 0], households[households >= 0], strict=True):
            members = np.flatnonzero(self.household[: self.n] == h)
            members = members[members != j][:2]
            self.contacts[j, : members.size] = members
        return idx

    def tenure_months(self, idx: np.ndarray) -> np.ndarray:
        start = np.datetime64(month_start(self.month), "M")
        return (start - self.act_day[idx].astype("datetime64[M]")).astype(int)

    # -------------------------------------------------------------------------------- a month
    def step(self, *, emit: bool = True, campaign: bool = True) -> MonthOutput:
        """Advance one month and return its landing rows (``emit=False``: state only, no CDRs).

        ``campaign=False``: the operator's own retention list is not drawn; call :meth:`act_on` with the
        pipeline's offer list (or :meth:`own_campaign`) before the next step.
        """
        rng = self.rng
        m = self.month_index
        month = self.month
        start = np.datetime64(month_start(month), "D")
        ndays = days_in_month(month)
        end = start + ndays
        base = np.flatnonzero(self.active[: self.n])
        tenure = self.tenure_months(base)
        prepaid = self.plan[base] < 3

        # ---- 1. who leaves this month
        leaving = np.zeros(base.size, dtype=bool)
        reason = np.full(base.size, -1, dtype=np.int8)
        episode_churn = (self.episode_churn[base] == m) & ~self.false_alarm[base]
        leaving |= episode_churn
        reason[episode_churn] = np.where(rng.random(episode_churn.sum()) < 0.62, 0, 1)
        silent = ~leaving & (rng.random(base.size) < np.where(prepaid, 0.007, 0.002))
        leaving |= silent
        reason[silent] = np.where(rng.random(silent.sum()) < 0.4, 0, 1)
        nonpay = ~leaving & (self.overdue[base] >= 90) & (rng.random(base.size) < 0.6)
        leaving |= nonpay
        reason[nonpay] = 2
        other = ~leaving & (rng.random(base.size) < 0.0012)
        fraud_like = (tenure < 4) & (self.channel[base] == 3)
        reason_other = np.where(fraud_like & (rng.random(base.size) < 0.7), 3, rng.choice([4, 5], base.size))
        leaving |= other
        reason[other] = reason_other[other]
        gone = base[leaving]
        day = start + rng.integers(0, ndays, gone.size)
        day = np.maximum(day, self.act_day[gone])
        self.deact_day[gone] = day
        self.reason[gone] = reason[leaving]
        ported = gone[self.reason[gone] == 0]
        self.port_op[ported] = rng.choice(3, ported.size, p=[0.5, 0.35, 0.15])
        for number in self.msisdn[gone]:
            self.free_numbers.append((m + QUARANTINE_MONTHS + 1, int(number)))
        # churn spreads through calling circles: contacts of leavers are at risk for a while
        touched = np.isin(self.contacts[: self.n], gone).any(axis=1)
        self.contagion_until[: self.n][touched] = m + 3

        # ---- 2. new risk episodes among those who stay (they will churn next month or the one after)
        stay = base[~leaving]
        t_stay = tenure[~leaving]
        pre_stay = self.plan[stay] < 3
        days_to_end = (self.contract_end[stay] - start).astype("timedelta64[D]").astype(float)
        near_end = np.isfinite(days_to_end) & (days_to_end > -90) & (days_to_end < 75)
        in_contract = np.isfinite(days_to_end) & (days_to_end >= 75)
        hazard = np.where(pre_stay, 0.024, 0.0072)
        hazard = hazard * np.select([t_stay < 5, t_stay < 12], [4.0, 1.0], 0.7)
        hazard = hazard * np.where(near_end, 3.5, np.where(in_contract, 0.45, 1.0))
        hazard = hazard * self.propensity[stay]
        hazard = hazard * np.where(self.contagion_until[stay] >= m, 1.8, 1.0)
        hazard = hazard * np.where(self.bill_credit_until[stay] >= m, 0.7, 1.0)
        free = self.episode_start[stay] < 0
        starts = free & (rng.random(stay.size) < np.minimum(hazard, 0.5) / 0.68)
        new_ep = stay[starts]
        # churn comes one to three months after the first signs: with the gap month, only episodes that
        # started by the snapshot are visible to a model (as for a real operator)
        lead = rng.choice(np.array([1, 2, 3]), new_ep.size, p=[0.15, 0.5, 0.35])
        lead = np.where(
            t_stay[starts] < 5, rng.choice(np.array([1, 2]), new_ep.size), lead
        )  # new lines leave fast
        self.episode_start[new_ep] = m
        self.episode_churn[new_ep] = m + lead
        self.false_alarm[new_ep] = rng.random(new_ep.size) < 0.32
        t_new = t_stay[starts]
        ne = near_end[starts]
        drv = np.select(
            [t_new < 6, t_new < 12, ne],
            [0, np.where(rng.random(new_ep.size) < 0.6, 1, 2), 3],
            np.where(rng.random(new_ep.size) < 0.5, 4, np.where(rng.random(new_ep.size) < 0.5, 5, 2)),
        )
        self.episode_driver[new_ep] = drv
        # episodes end after their churn month (false alarms recover)
        over = stay[(self.episode_churn[stay] >= 0) & (self.episode_churn[stay] < m)]
        self.episode_start[over] = -1
        self.episode_churn[over] = -1
        self.episode_driver[over] = -1
        self.false_alarm[over] = False

        # ---- 3. payment trouble (postpaid), renewals of expired contracts
        post_stay = stay[~pre_stay]
        in_episode = self.episode_start[post_stay] >= 0
        p_trouble = np.where(in_episode & (self.episode_driver[post_stay] == 5), 0.15, 0.012)
        self.payment_trouble[post_stay] |= rng.random(post_stay.size) < p_trouble
        recover = self.payment_trouble[post_stay] & (rng.random(post_stay.size) < 0.3)
        self.payment_trouble[post_stay[recover]] = False
        expired = stay[(self.contract_end[stay] < start - 60) & (rng.random(stay.size) < 0.25)]
        self.contract_end[expired] = (start.astype("datetime64[M]") + 24).astype("datetime64[D]")

        # ---- 4. acquisitions keep the base roughly stable (slight growth)
        n_new = max(0, int(self.target_base * 1.002) - stay.size)
        n_new = int(rng.poisson(n_new)) if n_new > 0 else 0
        new = self._acquire(n_new)

        # everyone active at any time in the month: stayers, leavers, new lines
        present = np.concatenate([stay, gone, new])
        self.active[gone] = False

        out = MonthOutput(
            month=month,
            subscriptions=self._snapshot(present, start, end),
            billing={},
            care={},
            cdr={},
            campaign_outcomes=None,
        )
        usage_mult, span_frac = self._episode_effects(present, m)
        if emit:
            cdr, charges, roam_charges = self._cdr(present, start, ndays, usage_mult, span_frac)
        else:
            cdr, charges, roam_charges = {}, np.zeros(present.size), np.zeros(present.size)
        out.cdr = cdr
        out.billing = self._billing(present, month, start, end, charges, roam_charges)
        out.care = self._care(present, start, ndays, m)
        out.campaign_outcomes = self.pending_campaign
        self.pending_campaign = self._campaign(stay, m, month) if campaign else None
        self._stay = stay
        out.stats = {
            "base": float(base.size),
            "churn_prepaid": float(leaving[prepaid].mean()) if prepaid.any() else 0.0,
            "churn_postpaid": float(leaving[~prepaid].mean()) if (~prepaid).any() else 0.0,
            "new": float(n_new),
        }
        self.last_usage_mult[present] = usage_mult
        self.month_index += 1
        return out

    # ------------------------------------------------------------------------------ sources
    def _snapshot(self, idx: np.ndarray, start: np.datetime64, end: np.datetime64) -> dict[str, np.ndarray]:
        plan = self.plan[idx]
        deact = self.deact_day[idx]
        deactivated = ~self.active[idx] & ~np.isnat(deact)
        suspended = ~deactivated & (self.overdue[idx] >= 60)
        status = np.where(deactivated, "deactivated", np.where(suspended, "suspended", "active"))
        reason = np.where(deactivated, REASONS[np.maximum(self.reason[idx], 0)], None)
        port = np.where(
            deactivated & (self.reason[idx] == 0), COMPETITORS[np.maximum(self.port_op[idx], 0)], None
        )
        age = self.handset0[idx] + self.tenure_months(idx)
        handset = np.where(self.rng.random(idx.size) < 0.05, -1, age)
        business = self.business[idx]
        return {
            "subscriber_id": idx,
            "msisdn": self.msisdn[idx],
            "customer_id": self.customer[idx],
            "household_id": self.household[idx],
            "segment": np.where(business, "business", "consumer"),
            "plan_type": np.array([PLANS[p][1] for p in range(len(PLANS))])[plan],
            "plan_id": np.array([PLANS[p][0] for p in range(len(PLANS))])[plan],
            "monthly_fee": np.array([PLANS[p][2] for p in range(len(PLANS))])[plan],
            "activation_date": self.act_day[idx],
            "contract_end_date": self.contract_end[idx],
            "status": status,
            "deactivation_date": np.where(deactivated, deact, np.datetime64("NaT")),
            "deactivation_reason": reason,
            "port_out_operator": port,
            "acquisition_channel": CHANNELS[self.channel[idx]],
            "region": REGIONS[self.region[idx]],
            "handset_age_months": handset,
            "marketing_consent": self.consent[idx],
            "snapshot_date": np.full(idx.size, end - 1),
        }

    def _episode_effects(self, idx: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        """Usage multiplier and share of the month with activity, from risk episodes and leaving."""
        rng = self.rng
        in_ep = self.episode_start[idx] >= 0
        months_in = np.where(in_ep, m - self.episode_start[idx] + 1, 0)
        mult = rng.lognormal(0.0, 0.28, idx.size)  # month-to-month noise everyone has
        mult = np.where(
            in_ep, mult * np.clip(1.0 - 0.3 * months_in * rng.uniform(0.4, 1.4, idx.size), 0.1, 1), mult
        )
        # new lines ramp up; poor fit shows as a weak ramp-up
        tenure = self.tenure_months(idx)
        ramp = np.where(tenure < 3, 0.6 + 0.15 * tenure, 1.0)
        mult = mult * ramp
        span = np.ones(idx.size)
        churning_next = in_ep & (self.episode_churn[idx] <= m + 2)
        span = np.where(churning_next & (rng.random(idx.size) < 0.5), rng.uniform(0.35, 0.8, idx.size), span)
        # noise: vacations and quiet months for people who stay
        quiet = rng.random(idx.size) < 0.06
        span = np.where(quiet & ~churning_next, rng.uniform(0.4, 0.85, idx.size), span)
        return mult, span

    def _cdr(
        self,
        idx: np.ndarray,
        start: np.datetime64,
        ndays: int,
        usage_mult: np.ndarray,
        span_frac: np.ndarray,
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        rng = self.rng
        start_s = start.astype("datetime64[s]").astype(np.int64)
        act = np.maximum((self.act_day[idx] - start).astype(int), 0)
        deact = self.deact_day[idx]
        last = np.where(np.isnat(deact) | self.active[idx], ndays, (deact - start).astype(int) + 1)
        last = np.clip(last, 1, ndays)
        first = np.minimum(act, last - 1)
        span_days = np.maximum(1, ((last - first) * span_frac).astype(int))
        present_frac = (last - first) / ndays
        lam = self.events_mean * self.usage[idx] * usage_mult * present_frac
        counts = rng.poisson(lam)
        total = int(counts.sum())
        owner = np.repeat(np.arange(idx.size), counts)
        sub = idx[owner]
        day = first[owner] + (rng.random(total) * span_days[owner]).astype(int)
        night = rng.random(total) < self.night[sub]
        hour = np.where(
            night, NIGHT_HOURS[rng.integers(0, NIGHT_HOURS.size, total)], rng.integers(7, 22, total)
        )
        ts = start_s + day * 86400 + hour * 3600 + rng.integers(0, 3600, total)
        kind = rng.random(total)
        data_share = self.data_share[sub]
        is_data = kind < data_share
        is_sms = ~is_data & (kind < data_share + (1 - data_share) * 0.3)
        is_voice = ~is_data & ~is_sms
        event_type = np.where(is_data, 2, np.where(is_sms, 1, 0))
        out_dir = is_data | (rng.random(total) < 0.55)
        # lengths and volumes drawn only for the rows that have them
        voice_rows, data_rows = np.flatnonzero(is_voice), np.flatnonzero(is_data)
        duration = np.zeros(total, np.int64)
        duration[voice_rows] = rng.lognormal(4.2, 1.0, voice_rows.size).astype(np.int64) + 1
        duration[data_rows] = rng.integers(30, 3600, data_rows.size)
        volume = np.zeros(total, np.int64)
        volume[data_rows] = rng.lognormal(9.5, 1.3, data_rows.size).astype(np.int64)
        # the other party: own-network contacts (their hashed msisdn) or external numbers
        in_ep = self.episode_start[sub] >= 0
        comp = np.clip(
            self.comp_share[sub] + np.where(in_ep & (self.episode_driver[sub] == 4), 0.3, 0.0), 0, 0.95
        )
        comp = np.clip(comp + np.where(in_ep, 0.08, 0.0), 0, 0.95)
        talk = ~is_data
        own = talk & (rng.random(total) >= comp)
        contact = self.contacts[sub, rng.integers(0, K_CONTACTS, total)]
        contact = np.where(contact < 0, sub, contact)
        # other_party as codes into [subscriber number hashes..., external hashes...]; -1 = null
        own_hash = self._msisdn_hash()
        other = np.full(total, -1, dtype=np.int64)
        other_op = np.full(total, -1, dtype=np.int64)  # codes into OPERATOR_LABELS
        own_idx = np.flatnonzero(own)
        other[own_idx] = contact[own_idx]
        c = contact[own_idx]
        # contacts who ported out keep their number with the competitor; deactivated others are gone
        left = ~self.active[c] & ~np.isnat(self.deact_day[c]) & (self.deact_day[c] < start)
        ported = left & (self.reason[c] == 0)
        other_op[own_idx] = np.where(ported, 1 + np.maximum(self.port_op[c], 0), 0)
        ext_mask = talk & ~own
        ext_mask[own_idx[left & ~ported]] = True  # calls to a contact who left go to someone else
        ext_idx = np.flatnonzero(ext_mask)
        pick = rng.integers(0, N_EXTERNAL, ext_idx.size)
        other[ext_idx] = own_hash.size + pick
        other_op[ext_idx] = self.external_op_code[pick]
        # roaming trips
        trip = rng.random(idx.size) < self.roamer[idx]
        trip_start = rng.integers(0, ndays, idx.size)
        trip_len = rng.integers(3, 12, idx.size)
        country = rng.integers(0, COUNTRIES.size, idx.size)
        travel = np.flatnonzero(trip[owner])  # only the rows of travellers can be abroad
        t_owner = owner[travel]
        abroad = (day[travel] >= trip_start[t_owner]) & (
            day[travel] < trip_start[t_owner] + trip_len[t_owner]
        )
        roaming = np.zeros(total, bool)
        roaming[travel] = abroad
        roaming_country = np.full(total, -1, np.int64)
        roaming_country[travel[abroad]] = country[t_owner[abroad]]
        # rating: prepaid pays per use, postpaid mostly inside the plan; roaming is charged
        prepaid = self.plan[sub] < 3
        charge = np.where(
            is_voice & out_dir,
            duration / 60 * 0.06,
            np.where(is_sms & out_dir, 0.05, np.where(is_data, volume / 1024 * 0.004, 0.0)),
        )
        charge = np.where(prepaid, charge, np.where(rng.random(total) < 0.04, charge * 2, 0.0))
        charge = np.where(roaming, charge * 4 + np.where(out_dir, 0.2, 0.05), charge)
        charge = np.round(charge, 2)
        cell = np.where(
            rng.random(total) < 0.02, -1, self.region[sub].astype(np.int64) * 100 + rng.integers(0, 60, total)
        )
        record = self.record_seq + np.arange(total)
        self.record_seq += total
        order = slice(None)  # mediation files are not time-ordered; sorting 4M rows costs more than it shows
        charges = np.bincount(owner, weights=np.where(roaming, 0, charge), minlength=idx.size)
        roam_charges = np.bincount(owner, weights=np.where(roaming, charge, 0), minlength=idx.size)
        cdr = {
            "record_id": record[order],
            "msisdn": self.msisdn[sub][order],
            "event_ts": ts[order],
            "event_type": (event_type[order], EVENT_TYPES),
            "direction": (np.where(out_dir, 0, 1)[order], DIRECTIONS),
            "duration_s": duration[order],
            "volume_kb": volume[order],
            "other_party": (other[order], np.concatenate([own_hash, self.external_hash])),
            "other_party_operator": (other_op[order], OPERATOR_LABELS),
            "cell_id": (cell[order], CELL_LABELS),
            "roaming": roaming[order],
            "roaming_country": (roaming_country[order], COUNTRIES),
            "charge": charge[order],
            "_subscriber": sub[order],
        }
        return cdr, charges, roam_charges

    def _msisdn_hash(self) -> np.ndarray:
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

    def _billing(
        self,
        idx: np.ndarray,
        month: str,
        start: np.datetime64,
        end: np.datetime64,
        charges: np.ndarray,
        roam: np.ndarray,
    ) -> dict[str, np.ndarray]:
        rng = self.rng
        m = self.month_index
        plan = self.plan[idx]
        prepaid = plan < 3
        fee = np.array([p[2] for p in PLANS])[plan]
        tenure = self.tenure_months(idx)
        in_ep = self.episode_start[idx] >= 0
        # bill shock: new customers in a poor-fit episode get a first bill far above the fee
        shock = ~prepaid & in_ep & (self.episode_driver[idx] == 0) & (rng.random(idx.size) < 0.6)
        shock |= ~prepaid & in_ep & (self.episode_driver[idx] == 5) & (rng.random(idx.size) < 0.4)
        usage = np.where(prepaid, 0.0, charges + np.where(shock, fee * rng.uniform(0.8, 2.5, idx.size), 0))
        usage = np.where(~prepaid & (tenure < 2) & (rng.random(idx.size) < 0.15), usage + fee * 0.5, usage)
        roaming = np.where(prepaid, 0.0, roam)
        credit = self.bill_credit_until[idx] >= m
        discount = np.where(~prepaid & credit, np.round(fee * 0.3, 2), 0.0)
        discount = np.where(~prepaid & (rng.random(idx.size) < 0.05), discount + 2.0, discount)
        recurring = np.where(prepaid, 0.0, fee)
        invoice = np.round(np.maximum(recurring + usage + roaming - discount, 0), 2)
        trouble = self.payment_trouble[idx] & ~prepaid
        paid = np.where(trouble, np.round(invoice * rng.choice([0.0, 0.3], idx.size), 2), invoice)
        pay_day = start + rng.integers(3, 25, idx.size)
        payment_date = np.where(paid > 0, pay_day, np.datetime64("NaT"))
        arrears = invoice - paid
        self.balance[idx] = np.where(trouble, self.balance[idx] + arrears, 0.0)
        self.overdue[idx] = np.where(trouble & (self.balance[idx] > 0), self.overdue[idx] + 30, 0)
        topups = np.where(prepaid, rng.poisson(np.clip(charges / 5 + 1.2, 0.2, 8)), 0)
        topups = np.where(prepaid & in_ep & (self.episode_churn[idx] <= m + 1), topups // 2, topups)
        top_amount = topups * rng.choice([5.0, 10.0, 20.0], idx.size, p=[0.4, 0.45, 0.15])
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
            "overdue_days": self.overdue[idx].astype(np.int64),
            "balance_due": np.round(self.balance[idx], 2),
            "topup_count": topups,
            "topup_amount": top_amount,
        }

    def _care(self, idx: np.ndarray, start: np.datetime64, ndays: int, m: int) -> dict[str, np.ndarray]:
        rng = self.rng
        in_ep = self.episode_start[idx] >= 0
        driver = self.episode_driver[idx]
        rate = np.where(in_ep, np.where(np.isin(driver, [0, 1]), 0.9, 0.4), 0.07)
        n = rng.poisson(rate)
        owner = np.repeat(np.arange(idx.size), n)
        sub = idx[owner]
        k = owner.size
        generic = rng.choice(7, k, p=[0.3, 0.15, 0.15, 0.15, 0.1, 0.0, 0.15])
        d = self.episode_driver[sub]
        ep = self.episode_start[sub] >= 0
        cat = np.where(
            ep & (d == 0),
            rng.choice([0, 4, 3], k),
            np.where(
                ep & (d == 1),
                rng.choice([1, 4, 1], k),
                np.where(ep & (d == 5), rng.choice([0, 4], k), generic),
            ),
        )
        last = np.where(
            self.active[sub], ndays, np.clip((self.deact_day[sub] - start).astype(int) + 1, 1, ndays)
        )
        day = (rng.random(k) * last).astype(int)
        ts = (
            start.astype("datetime64[s]").astype(np.int64)
            + day * 86400
            + rng.integers(8 * 3600, 20 * 3600, k)
        )
        resolved = np.where(cat == 4, rng.random(k) < 0.45, rng.random(k) < 0.75)
        # port-out requests: the first step of leaving, days before the deactivation
        leaving = ~self.active[idx] & (self.reason[idx] == 0) & (rng.random(idx.size) < 0.5)
        req = idx[leaving]
        req_ts = (self.deact_day[req] - rng.integers(0, 6, req.size)).astype("datetime64[s]").astype(np.int64)
        req_ts = np.maximum(req_ts, start.astype("datetime64[s]").astype(np.int64)) + 10 * 3600
        # ... some filed in the last days of the month before a churn that is due next month (a hard
        # warning for the scoring population; some of them will be retained or change their mind)
        due = idx[
            self.active[idx]
            & (self.episode_churn[idx] == m + 1)
            & ~self.false_alarm[idx]
            & (rng.random(idx.size) < 0.15)
        ]
        due_ts = (
            start.astype("datetime64[s]").astype(np.int64)
            + (ndays - 1 - rng.integers(0, 3, due.size)) * 86400
            + 11 * 3600
        )
        req = np.concatenate([req, due])
        req_ts = np.concatenate([req_ts, due_ts])
        sub = np.concatenate([sub, req])
        ts = np.concatenate([ts, req_ts])
        cat = np.concatenate([cat, np.full(req.size, 5)])
        resolved = np.concatenate([resolved, np.ones(req.size, dtype=bool)])
        ids = self.contact_seq + np.arange(sub.size)
        self.contact_seq += sub.size
        order = np.argsort(ts, kind="stable")
        return {
            "contact_id": ids[order],
            "subscriber_id": sub[order],
            "contact_ts": ts[order],
            "channel": CARE_CHANNELS[rng.choice(4, sub.size, p=[0.5, 0.2, 0.2, 0.1])][order],
            "category": CARE_CATEGORIES[cat][order],
            "resolved": resolved[order],
        }

    def _campaign(self, stay: np.ndarray, m: int, month: str) -> dict[str, np.ndarray] | None:
        """The operator's own (imperfect) retention list for ``month``; effects apply to later churn."""
        if m < 2 or stay.size == 0:
            return None
        rng = self.rng
        in_ep = (self.episode_start[stay] >= 0) & (self.episode_churn[stay] > m)
        score = in_ep * 1.5 + np.log(self.propensity[stay]) + rng.normal(0, 0.8, stay.size)
        score = np.where(self.consent[stay], score, -np.inf)
        k = max(1, int(stay.size * 0.04))
        chosen = stay[np.argsort(-score)[:k]]
        holdout = rng.random(k) < 0.1
        driver = self.episode_driver[chosen]
        fit_offer = np.where(driver >= 0, DRIVER_OFFER[np.maximum(driver, 0)], rng.integers(0, 5, k))
        offer = np.where(rng.random(k) < 0.75, fit_offer, rng.integers(0, 5, k))
        offer = np.where(self.roamer[chosen] > 0.2, 4, offer)
        contacted = ~holdout & (rng.random(k) < 0.7)
        ep = (self.episode_start[chosen] >= 0) & ~self.false_alarm[chosen]
        accepted = contacted & (rng.random(k) < np.where(ep, 0.4, 0.25))
        fit = offer == np.where(driver >= 0, DRIVER_OFFER[np.maximum(driver, 0)], -1)
        effect = np.where(fit, OFFER_EFFECT_FIT[offer], OFFER_EFFECT_MISFIT)
        effect = np.where(accepted, effect, np.where(contacted, 0.04, 0.0))
        saved = ep & (rng.random(k) < effect)
        self.false_alarm[chosen[saved]] = True  # the episode ends without churn
        self.bill_credit_until[chosen[accepted & (offer == 2)]] = m + 3
        renew = chosen[accepted & (offer == 0)]
        next_start = np.datetime64(month_start(add_months(month, 1)), "M")
        self.contract_end[renew] = (next_start + 24).astype("datetime64[D]")
        contact_day = np.datetime64(month_start(add_months(month, 1)), "D") + rng.integers(0, 20, k)
        contact_ts = contact_day.astype("datetime64[s]").astype(np.int64) + rng.integers(
            9 * 3600, 19 * 3600, k
        )
        feedback = np.where(
            contacted,
            FEEDBACK[np.where(driver >= 0, DRIVER_FEEDBACK[np.maximum(driver, 0)], rng.integers(0, 7, k))],
            None,
        )
        feedback = np.where(contacted & (rng.random(k) < 0.3), FEEDBACK[rng.integers(0, 7, k)], feedback)
        return {
            "campaign_month": np.full(k, month, dtype=object),
            "subscriber_id": chosen,
            "offer_id": np.where(holdout, "holdout", OFFERS[offer]),
            "channel": np.where(
                holdout, None, rng.choice(np.array(["call_center", "sms", "store", "app"]), k)
            ),
            "contacted": contacted,
            "accepted": accepted,
            "contact_ts": np.where(contacted, contact_ts, -1),
            "feedback_code": feedback,
        }

    # ------------------------------------------------------------------------- the closed loop
    def _acting_month(self, month: str) -> int:
        m = self.month_index - 1
        if m < 0 or add_months(self.first_month, m) != month:
            raise ValueError(f"a campaign for {month} must follow the step of {month} (last: {self.month})")
        if self.pending_campaign is not None:
            raise ValueError(f"{month} already has a campaign")
        return m

    def own_campaign(self, month: str) -> None:
        """The operator's own list for ``month`` (after ``step(campaign=False)``, no offer list came)."""
        m = self._acting_month(month)
        self.pending_campaign = self._campaign(self._stay, m, month)

    def act_on(
        self,
        month: str,
        subscriber_id: np.ndarray,
        offer_id: np.ndarray,
        treated: np.ndarray,
        channel: np.ndarray,
        *,
        gap_months: int = 1,
        window_months: int = 1,
    ) -> list[dict[str, object]]:
        """Carry out the pipeline's offer list for ``month`` as the operator's campaign system.

        ``offer_id`` is each line's (intended) offer, ``treated`` false for the control group. Contacts
        and acceptances are drawn; an accepted offer ends a real risk episode that churns after the gap
        month with the offer's true effect (:data:`CATALOGUE_TRUTH`); the outcomes land in the next
        month's ``campaign_outcomes``. Returns the truth per offer (and ``all``): ``true_effect`` is the
        expected drop in the churn rate of the treated lines over the label window (gap, then window),
        the quantity the evaluation's treated-vs-control effect estimates.
        """
        m = self._acting_month(month)
        rng = self.rng
        sub = np.asarray(subscriber_id, dtype=np.int64)
        offer = np.asarray(offer_id, dtype=object)
        treated = np.asarray(treated, dtype=bool)
        k = sub.size
        if k and ((sub < 0).any() or (sub >= self.n).any()):
            raise ValueError(f"offer list for {month} names subscribers the operator does not have")
        truth = [CATALOGUE_TRUTH.get(str(o), UNKNOWN_OFFER) for o in offer]
        driver = self.episode_driver[sub]
        driver_name = np.where(driver >= 0, DRIVERS[np.maximum(driver, 0)], "")
        roamer = self.roamer[sub] > 0.2
        fit = np.array(
            [
                d in t.fits or ("roaming" in t.fits and r)
                for d, t, r in zip(driver_name, truth, roamer, strict=True)
            ],
            dtype=bool,
        )
        acceptance = np.array([t.acceptance for t in truth])
        effect = np.where(fit, np.array([t.effect for t in truth]), OFFER_EFFECT_MISFIT)
        p_contact = np.array([CONTACT_RATE.get(str(c), 0.7) for c in channel]) * treated
        contacted = rng.random(k) < p_contact
        accepted = contacted & (rng.random(k) < acceptance)
        # only an episode still ahead can be ended: those churning in the gap month are gone by the contact
        # (and carry no label, so they leave both arms of the evaluation)
        episode = self.active[sub] & (self.episode_start[sub] >= 0) & ~self.false_alarm[sub]
        real = episode & (self.episode_churn[sub] >= m + 1 + gap_months)
        labelled = ~(episode & (self.episode_churn[sub] <= m + gap_months))
        saved = real & (rng.random(k) < np.where(accepted, effect, np.where(contacted, CONTACT_EFFECT, 0.0)))
        self.false_alarm[sub[saved]] = True
        in_window = real & (self.episode_churn[sub] <= m + gap_months + window_months)
        expected_save = p_contact * (acceptance * effect + (1 - acceptance) * CONTACT_EFFECT) * in_window
        contact_day = np.datetime64(month_start(add_months(month, 1)), "D") + rng.integers(0, 20, k)
        contact_ts = contact_day.astype("datetime64[s]").astype(np.int64) + rng.integers(
            9 * 3600, 19 * 3600, k
        )
        feedback = FEEDBACK[
            np.where(driver >= 0, DRIVER_FEEDBACK[np.maximum(driver, 0)], rng.integers(0, 7, k))
        ]
        feedback = np.where(rng.random(k) < 0.3, FEEDBACK[rng.integers(0, 7, k)], feedback)
        self.pending_campaign = {
            "campaign_month": np.full(k, month, dtype=object),
            "subscriber_id": sub,
            "offer_id": np.where(treated, offer, "holdout"),
            "channel": np.where(treated, np.asarray(channel, dtype=object), None),
            "contacted": contacted,
            "accepted": accepted,
            "contact_ts": np.where(contacted, contact_ts, -1),
            "feedback_code": np.where(contacted, feedback, None),
        }
        rows = []
        for name in ["all", *sorted({str(o) for o in offer})]:
            sel = np.ones(k, bool) if name == "all" else offer.astype(str) == name
            t = sel & treated
            n_t, n_labelled = int(t.sum()), int((t & labelled).sum())
            rows.append(
                {
                    "campaign_month": month,
                    "offer_id": name,
                    "treated": n_t,
                    "holdout": int((sel & ~treated).sum()),
                    "true_effect": float(expected_save[t].sum() / n_labelled) if n_labelled else None,
                    "saves_in_window": int((saved & in_window & t).sum()),
                    "fit_share": float(fit[t].mean()) if n_t else None,
                    "contacted": int(contacted[t].sum()),
                    "accepted": int(accepted[t].sum()),
                }
            )
        return rows
