"""A vectorised, seeded simulation of a mobile operator's subscriber base, month by month.

Churn is driven by *risk episodes*: a subscriber enters an episode (hazard depends on plan type, tenure
cohort, contract end, a personal propensity and churned contacts), shows signals for one or two months
(usage decline, fewer active days, a run of silent days, calls to competitors, care contacts, bill shock,
arrears), then churns, unless the episode was a false alarm or a retention offer worked (a retention
contact can also start one). Some churners leave silently (no episode), and many non-churners show noise
signals: the signal is real but partial.

Each month yields tables of plain Python/numpy columns for the five landing sources; the writer turns
them into files. Memory holds one month of CDRs at a time. The pieces: :mod:`.catalogue` (codes, plans,
offers and their truth), :mod:`.base` (the lines' state, acquisitions), :mod:`.usage` and
:mod:`.events` (a month's rows), :mod:`.campaign` (the campaign system); this module runs a month.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from features.calendar import add_months, days_in_month, month_start
from pipelines.sample_data import campaign as campaign_system
from pipelines.sample_data import events, usage
from pipelines.sample_data.base import SubscriberBase
from pipelines.sample_data.campaign import RENEWAL_MONTHS, CampaignTruth
from pipelines.sample_data.catalogue import (
    NO_DRIVER,
    NO_REASON,
    Channel,
    Competitor,
    Driver,
    Reason,
    is_prepaid,
)
from pipelines.sample_data.drivers import ChurnDrivers, DriverStrengths

# --- who leaves (a month's chances)
PORT_OUT_SHARE = {"episode": 0.62, "silent": 0.4}  # of episode and silent churners; the rest: voluntary
SILENT_CHURN = {"prepaid": 0.007, "postpaid": 0.002}  # churn without a risk episode (no signal)
NON_PAYMENT_OVERDUE_DAYS = 90  # lines this far overdue are disconnected with ``NON_PAYMENT_CHANCE``
NON_PAYMENT_CHANCE = 0.6
OTHER_EXIT = 0.0012  # fraud, deceased, other
FRAUD_TENURE_MONTHS = 4  # young dealer lines that leave for another reason are mostly fraud
FRAUD_SHARE = 0.7
PORT_OUT_OPERATOR_MIX = [0.5, 0.35, 0.15]  # by Competitor
CONTAGION_MONTHS = 3  # contacts of a leaver are at risk for this long

# --- risk episodes: monthly hazard = base rate x tenure x contract x propensity x contagion x credit
EPISODE_HAZARD = {"prepaid": 0.024, "postpaid": 0.0072}
TENURE_HAZARD = ((5, 4.0), (12, 1.0))  # (below this many months, factor); older lines:
ESTABLISHED_HAZARD = 0.7
CONTRACT_END_WINDOW_DAYS = (-90, 75)  # near a contract's end (just before or lapsed): factor 3.5
NEAR_END_HAZARD = 3.5
IN_CONTRACT_HAZARD = 0.45
CONTAGION_HAZARD = 1.8
BILL_CREDIT_HAZARD = 0.7
MAX_HAZARD = 0.5
FALSE_ALARM_SHARE = 0.32  # episodes that end without churn
# episodes start at hazard / (1 - FALSE_ALARM_SHARE) so churn follows the hazard; written out, as the
# float of 1 - 0.32 differs from 0.68 in its last bit
REAL_EPISODE_SHARE = 0.68
# churn comes one to three months after the first signs: with the gap month, only episodes that started
# by the snapshot are visible to a model (as for a real operator); new lines leave fast
CHURN_LEAD_MONTHS = (np.array([1, 2, 3]), [0.15, 0.5, 0.35])
NEW_LINE_LEAD_MONTHS = np.array([1, 2])
NEW_LINE_TENURE_MONTHS = 5
# an episode's driver: by tenure, contract end, else a draw among the rest
NEW_CUSTOMER_MONTHS = 6
EARLY_MONTHS = 12
SERVICE_ISSUE_SHARE = 0.6  # of early lines' episodes (the rest: usage decline)
COMPETITOR_PULL_SHARE = 0.5  # of established lines' episodes
PRICE_SENSITIVITY_SHARE = 0.5  # of the rest (the others: usage decline)

# --- payments and contracts
PAYMENT_TROUBLE = {"price_sensitivity": 0.15, "other": 0.012}  # postpaid lines starting to pay late
PAYMENT_RECOVERY = 0.3
RENEWAL_LAPSE_DAYS = 60  # an expired contract is renewed (for 24 months) with a monthly chance
RENEWAL_CHANCE = 0.25
BASE_GROWTH = 1.002  # acquisitions keep the base roughly stable (slight growth)


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


class OperatorSimulation(SubscriberBase):
    """The subscriber base and its month-by-month evolution. Deterministic for a seed."""

    def __init__(
        self,
        n_subscribers: int,
        seed: int,
        first_month: str,
        events_per_subscriber: int = 40,
        drivers: DriverStrengths | None = None,
    ) -> None:
        super().__init__(n_subscribers, seed, first_month)
        self.events_mean = events_per_subscriber
        # the slow churn drivers (:mod:`.drivers`), on their own random stream; none: not simulated
        self.drivers = ChurnDrivers(drivers, seed) if drivers is not None and drivers.any else None
        self.pending_campaign: dict[str, np.ndarray] | None = None
        self.stayers = np.array([], dtype=np.int64)  # lines active through the last step's month
        # the initial base: tenures spread over five years before the first month
        self.acquire(n_subscribers, initial=True)

    # -------------------------------------------------------------------------------- a month
    def step(self, *, emit: bool = True, campaign: bool = True) -> MonthOutput:
        """Advance one month and return its landing rows (``emit=False``: state only, no CDRs).

        ``campaign=False``: the operator's own retention list is not drawn; call :meth:`act_on` with the
        pipeline's offer list (or :meth:`own_campaign`) before the next step.
        """
        m = self.month_index
        month = self.month
        start = np.datetime64(month_start(month), "D")
        ndays = days_in_month(month)
        end = start + ndays
        base = np.flatnonzero(self.active[: self.n])
        tenure = self.tenure_months(base)
        prepaid = is_prepaid(self.plan[base])
        if self.drivers is not None:
            self.drivers.advance(base, self.comp_share)
        leaving = self._leavers(base, tenure, prepaid, start, ndays)
        gone = base[leaving]
        stay = base[~leaving]
        self._start_episodes(stay, tenure[~leaving], start)
        self._payments_and_renewals(stay, start)
        n_new = max(0, int(self.target_base * BASE_GROWTH) - stay.size)
        n_new = int(self.rng.poisson(n_new)) if n_new > 0 else 0
        new = self.acquire(n_new)

        # everyone active at any time in the month: stayers, leavers, new lines
        present = np.concatenate([stay, gone, new])
        self.active[gone] = False
        subscriptions = events.snapshot(self, present, end)
        usage_mult, span_frac = usage.episode_effects(self, present)
        if self.drivers is not None:
            usage_mult = usage_mult * self.drivers.usage_multiplier(present)
        if emit:
            cdr, charges, roam_charges = usage.cdr(
                self, present, start, ndays, usage_mult, span_frac, self.events_mean
            )
        else:
            cdr, charges, roam_charges = {}, np.zeros(present.size), np.zeros(present.size)
        if self.drivers is not None:
            charges = charges + self.drivers.bill_extra(present, self.plan[present], m)
        out = MonthOutput(
            month=month,
            subscriptions=subscriptions,
            billing=events.billing(self, present, month, start, charges, roam_charges),
            care=events.care(self, present, start, ndays),
            cdr=cdr,
            campaign_outcomes=self.pending_campaign,  # last month's list, contacted this month
        )
        self.pending_campaign = campaign_system.own_campaign(self, stay, m, month) if campaign else None
        self.stayers = stay
        out.stats = {
            "base": float(base.size),
            "churn_prepaid": float(leaving[prepaid].mean()) if prepaid.any() else 0.0,
            "churn_postpaid": float(leaving[~prepaid].mean()) if (~prepaid).any() else 0.0,
            "new": float(n_new),
        }
        self.last_usage_mult[present] = usage_mult
        self.month_index += 1
        return out

    def _leavers(
        self, base: np.ndarray, tenure: np.ndarray, prepaid: np.ndarray, start: np.datetime64, ndays: int
    ) -> np.ndarray:
        """Who of the active ``base`` leaves this month: their day, reason and port-out operator are set,
        their numbers go to quarantine (they stay ``active`` until the month's new lines are drawn)."""
        rng = self.rng
        m = self.month_index
        leaving = np.zeros(base.size, dtype=bool)
        reason = np.full(base.size, NO_REASON, dtype=np.int8)
        episode_churn = (self.episode_churn[base] == m) & ~self.false_alarm[base]
        leaving |= episode_churn
        port_out = rng.random(episode_churn.sum()) < PORT_OUT_SHARE["episode"]
        reason[episode_churn] = np.where(port_out, Reason.PORT_OUT, Reason.VOLUNTARY)
        silent_chance = np.where(prepaid, SILENT_CHURN["prepaid"], SILENT_CHURN["postpaid"])
        silent = ~leaving & (rng.random(base.size) < silent_chance)
        leaving |= silent
        reason[silent] = np.where(
            rng.random(silent.sum()) < PORT_OUT_SHARE["silent"], Reason.PORT_OUT, Reason.VOLUNTARY
        )
        overdue = self.overdue[base] >= NON_PAYMENT_OVERDUE_DAYS
        nonpay = ~leaving & overdue & (rng.random(base.size) < NON_PAYMENT_CHANCE)
        leaving |= nonpay
        reason[nonpay] = Reason.NON_PAYMENT
        other = ~leaving & (rng.random(base.size) < OTHER_EXIT)
        fraud_like = (tenure < FRAUD_TENURE_MONTHS) & (self.channel[base] == Channel.DEALER)
        reason_other = np.where(
            fraud_like & (rng.random(base.size) < FRAUD_SHARE),
            Reason.FRAUD,
            rng.choice([Reason.DECEASED, Reason.OTHER], base.size),
        )
        leaving |= other
        reason[other] = reason_other[other]
        if self.drivers is not None:
            driven, ports = self.drivers.leavers(base, ~leaving, self.usage[base], self.plan[base], m)
            leaving |= driven
            reason[driven] = np.where(ports, Reason.PORT_OUT, Reason.VOLUNTARY)
        gone = base[leaving]
        day = start + rng.integers(0, ndays, gone.size)
        # an episode whose day a campaign already drew (to know whether its contact came first) keeps it
        drawn = episode_churn[leaving] & ~np.isnat(self.churn_date[gone])
        day = np.where(drawn, self.churn_date[gone], day)
        self.churn_date[base] = np.datetime64("NaT")
        day = np.maximum(day, self.act_day[gone])
        self.deact_day[gone] = day
        self.reason[gone] = reason[leaving]
        ported = gone[self.reason[gone] == Reason.PORT_OUT]
        self.port_op[ported] = rng.choice(len(Competitor), ported.size, p=PORT_OUT_OPERATOR_MIX)
        self.release_numbers(gone)
        # churn spreads through calling circles: contacts of leavers are at risk for a while
        touched = np.isin(self.contacts[: self.n], gone).any(axis=1)
        self.contagion_until[: self.n][touched] = m + CONTAGION_MONTHS
        if self.drivers is not None:
            self.drivers.lost_contacts(self.contacts[: self.n], gone)
            self.drivers.forget(gone)
        return leaving

    def _start_episodes(self, stay: np.ndarray, t_stay: np.ndarray, start: np.datetime64) -> None:
        """New risk episodes among those who stay (they will churn next month or the one after)."""
        rng = self.rng
        m = self.month_index
        pre_stay = is_prepaid(self.plan[stay])
        days_to_end = (self.contract_end[stay] - start).astype("timedelta64[D]").astype(float)
        low, high = CONTRACT_END_WINDOW_DAYS
        near_end = np.isfinite(days_to_end) & (days_to_end > low) & (days_to_end < high)
        in_contract = np.isfinite(days_to_end) & (days_to_end >= high)
        hazard = np.where(pre_stay, EPISODE_HAZARD["prepaid"], EPISODE_HAZARD["postpaid"])
        (new_below, new_factor), (early_below, early_factor) = TENURE_HAZARD
        hazard = hazard * np.select(
            [t_stay < new_below, t_stay < early_below], [new_factor, early_factor], ESTABLISHED_HAZARD
        )
        hazard = hazard * np.where(near_end, NEAR_END_HAZARD, np.where(in_contract, IN_CONTRACT_HAZARD, 1.0))
        hazard = hazard * self.propensity[stay]
        hazard = hazard * np.where(self.contagion_until[stay] >= m, CONTAGION_HAZARD, 1.0)
        hazard = hazard * np.where(self.bill_credit_until[stay] >= m, BILL_CREDIT_HAZARD, 1.0)
        free = self.episode_start[stay] < 0
        starts = free & (rng.random(stay.size) < np.minimum(hazard, MAX_HAZARD) / REAL_EPISODE_SHARE)
        new_ep = stay[starts]
        leads, lead_mix = CHURN_LEAD_MONTHS
        lead = rng.choice(leads, new_ep.size, p=lead_mix)
        t_new = t_stay[starts]
        lead = np.where(t_new < NEW_LINE_TENURE_MONTHS, rng.choice(NEW_LINE_LEAD_MONTHS, new_ep.size), lead)
        self.episode_start[new_ep] = m
        self.episode_churn[new_ep] = m + lead
        self.false_alarm[new_ep] = rng.random(new_ep.size) < FALSE_ALARM_SHARE
        early = np.where(
            rng.random(new_ep.size) < SERVICE_ISSUE_SHARE, Driver.SERVICE_ISSUE, Driver.USAGE_DECLINE
        )
        pull = rng.random(new_ep.size) < COMPETITOR_PULL_SHARE
        price = rng.random(new_ep.size) < PRICE_SENSITIVITY_SHARE
        rest = np.where(
            pull, Driver.COMPETITOR_PULL, np.where(price, Driver.PRICE_SENSITIVITY, Driver.USAGE_DECLINE)
        )
        self.episode_driver[new_ep] = np.select(
            [t_new < NEW_CUSTOMER_MONTHS, t_new < EARLY_MONTHS, near_end[starts]],
            [Driver.NEW_CUSTOMER_FIT, early, Driver.CONTRACT_EXPIRY],
            rest,
        )
        # episodes end after their churn month (false alarms recover)
        over = stay[(self.episode_churn[stay] >= 0) & (self.episode_churn[stay] < m)]
        self.episode_start[over] = -1
        self.episode_churn[over] = -1
        self.episode_driver[over] = NO_DRIVER
        self.false_alarm[over] = False

    def _payments_and_renewals(self, stay: np.ndarray, start: np.datetime64) -> None:
        """Payment trouble of postpaid lines (more in price-driven episodes); lapsed contracts renewed."""
        rng = self.rng
        post_stay = stay[~is_prepaid(self.plan[stay])]
        in_episode = self.episode_start[post_stay] >= 0
        price_driven = in_episode & (self.episode_driver[post_stay] == Driver.PRICE_SENSITIVITY)
        p_trouble = np.where(price_driven, PAYMENT_TROUBLE["price_sensitivity"], PAYMENT_TROUBLE["other"])
        self.payment_trouble[post_stay] |= rng.random(post_stay.size) < p_trouble
        recover = self.payment_trouble[post_stay] & (rng.random(post_stay.size) < PAYMENT_RECOVERY)
        self.payment_trouble[post_stay[recover]] = False
        lapsed = self.contract_end[stay] < start - RENEWAL_LAPSE_DAYS
        expired = stay[lapsed & (rng.random(stay.size) < RENEWAL_CHANCE)]
        self.contract_end[expired] = (start.astype("datetime64[M]") + RENEWAL_MONTHS).astype("datetime64[D]")

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
        self.pending_campaign = campaign_system.own_campaign(self, self.stayers, m, month)

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
    ) -> CampaignTruth:
        """Carry out the pipeline's offer list for ``month`` as the operator's campaign system.

        ``offer_id`` is each line's (intended) offer, ``treated`` false for the control group, ``channel``
        the treated lines' channel. Contacts in the first days of the next month (the gap month) and
        acceptances are drawn; an accepted offer ends a real risk episode due after the contact with the
        offer's true effect for the line, and a contact may push a contact-averse line out (the truth
        model: :mod:`.campaign`). The outcomes land in the next month's ``campaign_outcomes``. Returns the
        truth over the outcome window (the next month to the end of the label window): per offer (and
        ``all``), and per listed line its churn if treated and if not, from the same random draws.
        """
        m = self._acting_month(month)
        sub = np.asarray(subscriber_id, dtype=np.int64)
        if sub.size and ((sub < 0).any() or (sub >= self.n).any()):
            raise ValueError(f"offer list for {month} names subscribers the operator does not have")
        self.pending_campaign, truth = campaign_system.carry_out(
            self,
            month,
            m,
            sub,
            np.asarray(offer_id, dtype=object),
            np.asarray(treated, dtype=bool),
            channel,
            gap_months=gap_months,
            window_months=window_months,
        )
        return truth
