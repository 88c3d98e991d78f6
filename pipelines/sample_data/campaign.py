"""The operator's campaign system: its own retention list, and the pipeline's offer list carried out.

The truth model of the pipeline's list for score month M (month index m; gap and window months from the
churn contract), which the evaluation has to find:

- **When.** The list is carried out in the first ``CONTACT_DAYS`` of M+1, the gap month. Its outcome
  window runs from M+1 to the end of the label window (M + gap + window), gap-month churn included.
- **Saves.** A treated line is reached with its channel's ``CONTACT_RATE`` (a control line never is) and
  accepts with the offer's acceptance. A real risk episode ahead of the line (not a false alarm) is
  ended by an accepted offer with the offer's effect for this line (driver fit and value level,
  :mod:`.catalogue`), by a declined contact with ``CONTACT_EFFECT``. An episode due to churn in M+1 is
  ended only if its churn day comes after the contact day: that day is drawn here, and the month's
  simulation uses it, so an episode churning on or before the contact day is lost.
- **Sleeping dogs.** A reached line with the hidden ``contact_averse`` trait and no episode churning in
  the outcome window starts one that churns in the label window (a month drawn in it) with chance
  ``PROVOKE_CHANCE`` (out of contract or not) times the offer's ``provocation``: for it the contact
  raises churn, and a sales-like offer's average effect on out-of-contract lines is negative.
- **Individual truth with common random numbers.** Each listed line, treated or control, draws its
  uniforms once (``DRAWS``); whether it churns in the outcome window if treated and if not follows from
  the same draws, and the realised world is its own arm's. ``p_churn_if_*`` are the expectations over
  those draws given the line's hidden state, and ``true_effect = p_churn_if_control -
  p_churn_if_treated``. Their mean over an offer's treated lines is the offer's ``true_effect``, over
  all its listed lines ``true_effect_listed`` (what a randomised treated-vs-control comparison of churn
  from M+1 estimates).
- **Left out.** The truth covers the churn a campaign can change: a line's episode, and one a contact
  provokes. Churn no offer touches (silent churn, non-payment, fraud, an episode starting later) strikes
  both arms alike; a later campaign on the same line is not foreseen (the pipeline's cool-down keeps a
  control line alone through its window).

The outcomes (contacted, accepted, feedback) land in the next month's ``campaign_outcomes``. The
operator's own list (before the pipeline has a model) keeps its simpler rule: an accepted offer ends an
episode whatever its month.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from features.calendar import add_months, days_in_month, month_start
from pipelines.sample_data.base import SubscriberBase
from pipelines.sample_data.catalogue import (
    CATALOGUE_TRUTH,
    CONTACT_EFFECT,
    CONTACT_RATE,
    DEFAULT_CONTACT_RATE,
    DRIVER_FEEDBACK,
    DRIVER_OFFER,
    DRIVERS,
    FEEDBACK,
    OFFER_EFFECT_FIT,
    OFFER_EFFECT_MISFIT,
    OFFERS,
    PROVOKE_CHANCE,
    PROVOKED_DRIVER,
    UNKNOWN_OFFER,
    Feedback,
    Offer,
    value_level,
)
from pipelines.sample_data.events import SECONDS_PER_HOUR

HEAVY_ROAMER = 0.2  # a line this likely to travel in a month gets (and fits) the roaming offer
CONTACT_DAYS = 20  # contacts happen in the first days of the next month
CONTACT_HOURS = (9, 19)
OTHER_FEEDBACK_SHARE = 0.3  # an agent codes a feedback unrelated to the driver

# --- the operator's own list (before the pipeline has a model, or when it sends none)
OWN_CAMPAIGN_FROM_MONTH = 2  # month index of its first list: the base needs a history to rank
OWN_LIST_SHARE = 0.04  # of the lines that stay
OWN_SCORE_EPISODE = 1.5  # its ranking: an episode's weight, beside log propensity and noise
OWN_SCORE_NOISE = 0.8
OWN_HOLDOUT_SHARE = 0.1
OWN_FIT_SHARE = 0.75  # lines offered what fits their driver
OWN_CONTACT_RATE = 0.7
OWN_ACCEPTANCE = {"episode": 0.4, "other": 0.25}
OWN_CHANNELS = np.array(["call_center", "sms", "store", "app"])
BILL_CREDIT_MONTHS = 3
RENEWAL_MONTHS = 24  # a renewed contract (the campaign's offer, or a lapsed one renewed) runs this long


def _contact_ts(rng: np.random.Generator, month: str, k: int, day: np.ndarray | None = None) -> np.ndarray:
    """When each of ``k`` lines is contacted (seconds): in the first days of the month after ``month``, on
    ``day`` (days from its start) when given, else on a day drawn here."""
    if day is None:
        day = rng.integers(0, CONTACT_DAYS, k)
    contact_day = np.datetime64(month_start(add_months(month, 1)), "D") + day
    hours = rng.integers(CONTACT_HOURS[0] * SECONDS_PER_HOUR, CONTACT_HOURS[1] * SECONDS_PER_HOUR, k)
    return contact_day.astype("datetime64[s]").astype(np.int64) + hours


def _feedback(rng: np.random.Generator, driver: np.ndarray, contacted: np.ndarray) -> np.ndarray:
    """The agent's feedback code of each contacted line (mostly its driver's), None for the others."""
    k = driver.size
    usual = FEEDBACK[
        np.where(driver >= 0, DRIVER_FEEDBACK[np.maximum(driver, 0)], rng.integers(0, len(Feedback), k))
    ]
    other = rng.random(k) < OTHER_FEEDBACK_SHARE
    feedback = np.where(other, FEEDBACK[rng.integers(0, len(Feedback), k)], usual)
    return np.where(contacted, feedback, None)


def own_campaign(base: SubscriberBase, stay: np.ndarray, m: int, month: str) -> dict[str, np.ndarray] | None:
    """The operator's own (imperfect) retention list for ``month``; effects apply to later churn."""
    if m < OWN_CAMPAIGN_FROM_MONTH or stay.size == 0:
        return None
    rng = base.rng
    in_ep = (base.episode_start[stay] >= 0) & (base.episode_churn[stay] > m)
    score = (
        in_ep * OWN_SCORE_EPISODE + np.log(base.propensity[stay]) + rng.normal(0, OWN_SCORE_NOISE, stay.size)
    )
    score = np.where(base.consent[stay], score, -np.inf)
    k = max(1, int(stay.size * OWN_LIST_SHARE))
    chosen = stay[np.argsort(-score)[:k]]
    holdout = rng.random(k) < OWN_HOLDOUT_SHARE
    driver = base.episode_driver[chosen]
    fitting = np.where(driver >= 0, DRIVER_OFFER[np.maximum(driver, 0)], -1)
    fit_offer = np.where(driver >= 0, fitting, rng.integers(0, len(Offer), k))
    offer = np.where(rng.random(k) < OWN_FIT_SHARE, fit_offer, rng.integers(0, len(Offer), k))
    offer = np.where(base.roamer[chosen] > HEAVY_ROAMER, Offer.ROAMING_PACK, offer)
    contacted = ~holdout & (rng.random(k) < OWN_CONTACT_RATE)
    ep = (base.episode_start[chosen] >= 0) & ~base.false_alarm[chosen]
    accepted = contacted & (rng.random(k) < np.where(ep, OWN_ACCEPTANCE["episode"], OWN_ACCEPTANCE["other"]))
    effect = np.where(offer == fitting, OFFER_EFFECT_FIT[offer], OFFER_EFFECT_MISFIT)
    effect = np.where(accepted, effect, np.where(contacted, CONTACT_EFFECT, 0.0))
    saved = ep & (rng.random(k) < effect)
    base.false_alarm[chosen[saved]] = True  # the episode ends without churn
    base.bill_credit_until[chosen[accepted & (offer == Offer.BILL_CREDIT)]] = m + BILL_CREDIT_MONTHS
    renew = chosen[accepted & (offer == Offer.CONTRACT_RENEWAL)]
    next_start = np.datetime64(month_start(add_months(month, 1)), "M")
    base.contract_end[renew] = (next_start + RENEWAL_MONTHS).astype("datetime64[D]")
    contact_ts = _contact_ts(rng, month, k)
    feedback = _feedback(rng, driver, contacted)
    return {
        "campaign_month": np.full(k, month, dtype=object),
        "subscriber_id": chosen,
        "offer_id": np.where(holdout, "holdout", OFFERS[offer]),
        "channel": np.where(holdout, None, rng.choice(OWN_CHANNELS, k)),
        "contacted": contacted,
        "accepted": accepted,
        "contact_ts": np.where(contacted, contact_ts, -1),
        "feedback_code": feedback,
    }


# the uniforms each listed line draws once, shared by its treated and its control world
DRAWS = ("contact", "accept", "save", "provoke", "provoke_month", "contact_day", "churn_day")


@dataclass(frozen=True)
class CampaignTruth:
    """What a campaign of the pipeline's offer list truly did (see the module's truth model).

    ``offers``: one row per offer id and ``all``; ``lines``: columns with one entry per listed line
    (``campaign_month``, ``subscriber_id``, ``offer_id``, ``treated``, ``churn_if_treated``,
    ``churn_if_control``, ``p_churn_if_treated``, ``p_churn_if_control``, ``true_effect``).
    """

    offers: list[dict[str, Any]]
    lines: dict[str, np.ndarray]


def _contact_rate(offer: np.ndarray, treated: np.ndarray, channel: np.ndarray) -> np.ndarray:
    """The chance each line is (a control line: would have been) reached, by its channel's rate. A control
    line has no channel in the list: it takes the one most of its offer's treated lines have."""
    channel = np.asarray(channel, dtype=object)
    usual: dict[str, Any] = {}
    for name in sorted({str(o) for o in offer[treated]}):
        used = [c for c in channel[treated & (offer == name)] if isinstance(c, str)]
        usual[name] = max(sorted(set(used)), key=used.count) if used else None
    reach = [c if t else usual.get(str(o), c) for o, t, c in zip(offer, treated, channel, strict=True)]
    return np.array([CONTACT_RATE.get(str(c), DEFAULT_CONTACT_RATE) for c in reach])


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


@dataclass(frozen=True)
class _Response:
    """How each listed line responds to its offer (the catalogue's truth for the line)."""

    fit: np.ndarray  # the offer fits the episode's driver
    p_contact: np.ndarray  # chance the line is (a control line: would have been) reached
    acceptance: np.ndarray
    effect: np.ndarray  # chance an accepted offer ends a real episode
    provocation: np.ndarray  # the offer's provocation


def _response(base: SubscriberBase, sub: np.ndarray, offer: np.ndarray, p_contact: np.ndarray) -> _Response:
    truth = [CATALOGUE_TRUTH.get(str(o), UNKNOWN_OFFER) for o in offer]
    driver = base.episode_driver[sub]
    driver_name = np.where(driver >= 0, DRIVERS[np.maximum(driver, 0)], "")
    roamer = base.roamer[sub] > HEAVY_ROAMER
    fit = np.array(
        [
            d in t.fits or ("roaming" in t.fits and r)
            for d, t, r in zip(driver_name, truth, roamer, strict=True)
        ],
        dtype=bool,
    )
    by_value = np.array([t.value_response for t in truth]).reshape(sub.size, 3)
    response = by_value[np.arange(sub.size), value_level(base.plan[sub])]
    effect = np.where(fit, np.array([t.effect for t in truth]), OFFER_EFFECT_MISFIT) * response
    return _Response(
        fit=fit,
        p_contact=p_contact,
        acceptance=np.array([t.acceptance for t in truth]),
        effect=np.clip(effect, 0, 1),
        provocation=np.array([t.provocation for t in truth]),
    )


@dataclass(frozen=True)
class _Worlds:
    """Each listed line's control world (its episode as it is) and treated world (drawn), and their
    expectations: ``churn_if_control`` is whether a real episode churns in the outcome window."""

    churn_if_control: np.ndarray
    due_now: np.ndarray  # the episode churns in the contact month
    churn_date: np.ndarray  # ... on this day (NaT for the others)
    contact_day: np.ndarray  # days from the start of the contact month
    contacted: np.ndarray
    accepted: np.ndarray
    saved: np.ndarray  # a real episode ended
    provoked: np.ndarray  # an episode started that churns in the label window
    provoked_month: np.ndarray  # ... in this month index
    p_churn_if_treated: np.ndarray

    @property
    def churn_if_treated(self) -> np.ndarray:
        return (self.churn_if_control & ~self.saved) | self.provoked

    @property
    def true_effect(self) -> np.ndarray:
        return self.churn_if_control - self.p_churn_if_treated


def _worlds(
    base: SubscriberBase,
    month: str,
    m: int,
    sub: np.ndarray,
    response: _Response,
    u: dict[str, np.ndarray],
    *,
    gap_months: int,
    window_months: int,
) -> _Worlds:
    """Both worlds of each line from its uniforms ``u`` (``DRAWS``) and its hidden state."""
    contact_month = add_months(month, 1)
    contact_start = np.datetime64(month_start(contact_month), "D")
    ndays = days_in_month(contact_month)
    churn_month = base.episode_churn[sub]
    real = base.active[sub] & (base.episode_start[sub] >= 0) & ~base.false_alarm[sub] & (churn_month > m)
    in_window = real & (churn_month <= m + gap_months + window_months)
    due_now = real & (churn_month == m + 1)
    contact_day = (u["contact_day"] * CONTACT_DAYS).astype(np.int64)
    churn_day = (u["churn_day"] * ndays).astype(np.int64)
    saveable = ~due_now | (churn_day > contact_day)
    # chance a day drawn in the month comes after a contact day drawn in its first CONTACT_DAYS
    p_saveable = np.where(due_now, (ndays - 1 - (CONTACT_DAYS - 1) / 2) / ndays, 1.0)
    out_of_contract = base.contract_end[sub] < contact_start  # NaT (no contract) compares false
    provocable = base.active[sub] & ~in_window & base.contact_averse[sub]
    p_provoke = provocable * response.provocation
    p_provoke = p_provoke * np.where(
        out_of_contract, PROVOKE_CHANCE["out_of_contract"], PROVOKE_CHANCE["other"]
    )
    r = response
    contacted = u["contact"] < r.p_contact
    accepted = contacted & (u["accept"] < r.acceptance)
    p_save = r.p_contact * p_saveable * (r.acceptance * r.effect + (1 - r.acceptance) * CONTACT_EFFECT)
    return _Worlds(
        churn_if_control=in_window,
        due_now=due_now,
        churn_date=np.where(due_now, contact_start + churn_day, np.datetime64("NaT")),
        contact_day=contact_day,
        contacted=contacted,
        accepted=accepted,
        saved=real & contacted & saveable & (u["save"] < np.where(accepted, r.effect, CONTACT_EFFECT)),
        provoked=contacted & (u["provoke"] < p_provoke),
        provoked_month=m + gap_months + 1 + (u["provoke_month"] * window_months).astype(np.int64),
        p_churn_if_treated=np.where(in_window, 1 - p_save, r.p_contact * p_provoke),
    )


def expected_effect(
    base: SubscriberBase,
    month: str,
    m: int,
    sub: np.ndarray,
    offer: np.ndarray,
    channel: np.ndarray,
    *,
    gap_months: int,
    window_months: int,
) -> np.ndarray:
    """Each line's true expected churn reduction over the outcome window were it treated with ``offer``
    through ``channel`` in ``month``'s campaign (month index ``m``): ``p_churn_if_control -
    p_churn_if_treated``, the expectation :func:`carry_out` reports as ``true_effect`` for a treated line.

    Read-only: it draws no random numbers and changes no state (the expectations do not depend on the
    draws, so the worlds are built from placeholder uniforms), so asking about any (line, offer) pair,
    listed or not, leaves the simulation exactly as it was. Ask between the month's delivery and its
    campaign: that is the state :func:`carry_out` reads.
    """
    sub = np.asarray(sub, dtype=np.int64)
    offer = np.asarray(offer, dtype=object)
    p_contact = np.array([CONTACT_RATE.get(str(c), DEFAULT_CONTACT_RATE) for c in channel], dtype=float)
    response = _response(base, sub, offer, p_contact.reshape(sub.size))
    u = {name: np.zeros(sub.size) for name in DRAWS}
    worlds = _worlds(base, month, m, sub, response, u, gap_months=gap_months, window_months=window_months)
    return worlds.true_effect.astype(float)


def _realise(base: SubscriberBase, m: int, sub: np.ndarray, treated: np.ndarray, worlds: _Worlds) -> None:
    """The realised world: each line's own arm, and the churn day of an episode due in the contact month
    (the same in both worlds)."""
    base.churn_date[sub[worlds.due_now]] = worlds.churn_date[worlds.due_now]
    base.false_alarm[sub[treated & worlds.saved]] = True
    dog = treated & worlds.provoked
    base.episode_start[sub[dog]] = m + 1  # it shows from the contact month on
    base.episode_churn[sub[dog]] = worlds.provoked_month[dog]
    base.episode_driver[sub[dog]] = PROVOKED_DRIVER
    base.false_alarm[sub[dog]] = False


def _offer_rows(
    month: str, offer: np.ndarray, treated: np.ndarray, response: _Response, worlds: _Worlds
) -> list[dict[str, Any]]:
    """The truth per offer id (and ``all``): counts of the treated lines and the mean true effects."""
    true_effect = worlds.true_effect
    in_window = worlds.churn_if_control
    rows = []
    for name in ["all", *sorted({str(o) for o in offer})]:
        sel = np.ones(offer.size, bool) if name == "all" else offer.astype(str) == name
        t = sel & treated
        rows.append(
            {
                "campaign_month": month,
                "offer_id": name,
                "treated": int(t.sum()),
                "holdout": int((sel & ~treated).sum()),
                "true_effect": _mean(true_effect[t]),
                "true_effect_listed": _mean(true_effect[sel]),
                "saves_in_window": int((t & worlds.saved & in_window).sum()),
                "saves_in_gap": int((t & worlds.saved & worlds.due_now).sum()),
                "provoked": int((t & worlds.provoked).sum()),
                "fit_share": _mean(response.fit[t]),
                "contacted": int(worlds.contacted[t].sum()),
                "accepted": int(worlds.accepted[t].sum()),
            }
        )
    return rows


def carry_out(
    base: SubscriberBase,
    month: str,
    m: int,
    sub: np.ndarray,
    offer: np.ndarray,
    treated: np.ndarray,
    channel: np.ndarray,
    *,
    gap_months: int,
    window_months: int,
) -> tuple[dict[str, np.ndarray], CampaignTruth]:
    """The pipeline's offer list for ``month`` (month index ``m``) carried out: the outcomes, and the truth
    (see the module's truth model and :meth:`pipelines.sample_data.simulate.OperatorSimulation.act_on`).
    """
    rng = base.rng
    k = sub.size
    u = dict(zip(DRAWS, rng.random((len(DRAWS), k)), strict=True))
    response = _response(base, sub, offer, _contact_rate(offer, treated, channel))
    driver = base.episode_driver[sub]  # before a provoked episode replaces it
    worlds = _worlds(base, month, m, sub, response, u, gap_months=gap_months, window_months=window_months)
    _realise(base, m, sub, treated, worlds)
    reached = treated & worlds.contacted
    contact_ts = _contact_ts(rng, month, k, worlds.contact_day)
    outcomes = {
        "campaign_month": np.full(k, month, dtype=object),
        "subscriber_id": sub,
        "offer_id": np.where(treated, offer, "holdout"),
        "channel": np.where(treated, np.asarray(channel, dtype=object), None),
        "contacted": reached,
        "accepted": treated & worlds.accepted,
        "contact_ts": np.where(reached, contact_ts, -1),
        "feedback_code": _feedback(rng, driver, reached),
    }
    lines = {
        "campaign_month": np.full(k, month, dtype=object),
        "subscriber_id": sub,
        "offer_id": offer,
        "treated": treated,
        "churn_if_treated": worlds.churn_if_treated,
        "churn_if_control": worlds.churn_if_control,
        "p_churn_if_treated": worlds.p_churn_if_treated,
        "p_churn_if_control": worlds.churn_if_control.astype(float),
        "true_effect": worlds.true_effect,
    }
    return outcomes, CampaignTruth(_offer_rows(month, offer, treated, response, worlds), lines)
