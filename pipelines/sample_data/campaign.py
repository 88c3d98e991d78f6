"""The operator's campaign system: its own retention list, and the pipeline's offer list carried out.

A contacted line may accept; an accepted offer ends a real risk episode (the line does not churn) with
the offer's true effect, which depends on whether the offer fits the episode's driver. The outcomes
(contacted, accepted, feedback) land in the next month's ``campaign_outcomes``; the true effect of the
pipeline's lists is returned so the closed loop can check what the evaluation measures.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from features.calendar import add_months, month_start
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
    UNKNOWN_OFFER,
    Feedback,
    Offer,
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


def _contact_ts(rng: np.random.Generator, month: str, k: int) -> np.ndarray:
    """When each of ``k`` lines is contacted (seconds): in the first days of the month after ``month``."""
    contact_day = np.datetime64(month_start(add_months(month, 1)), "D") + rng.integers(0, CONTACT_DAYS, k)
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
) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """The pipeline's offer list for ``month`` (month index ``m``) carried out: outcomes and truth.

    See :meth:`pipelines.sample_data.simulate.OperatorSimulation.act_on`.
    """
    rng = base.rng
    k = sub.size
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
    acceptance = np.array([t.acceptance for t in truth])
    effect = np.where(fit, np.array([t.effect for t in truth]), OFFER_EFFECT_MISFIT)
    p_contact = np.array([CONTACT_RATE.get(str(c), DEFAULT_CONTACT_RATE) for c in channel]) * treated
    contacted = rng.random(k) < p_contact
    accepted = contacted & (rng.random(k) < acceptance)
    # only an episode still ahead can be ended: those churning in the gap month are gone by the contact
    # (and carry no label, so they leave both arms of the evaluation)
    episode = base.active[sub] & (base.episode_start[sub] >= 0) & ~base.false_alarm[sub]
    real = episode & (base.episode_churn[sub] >= m + 1 + gap_months)
    labelled = ~(episode & (base.episode_churn[sub] <= m + gap_months))
    saved = real & (rng.random(k) < np.where(accepted, effect, np.where(contacted, CONTACT_EFFECT, 0.0)))
    base.false_alarm[sub[saved]] = True
    in_window = real & (base.episode_churn[sub] <= m + gap_months + window_months)
    expected_save = p_contact * (acceptance * effect + (1 - acceptance) * CONTACT_EFFECT) * in_window
    contact_ts = _contact_ts(rng, month, k)
    outcomes = {
        "campaign_month": np.full(k, month, dtype=object),
        "subscriber_id": sub,
        "offer_id": np.where(treated, offer, "holdout"),
        "channel": np.where(treated, np.asarray(channel, dtype=object), None),
        "contacted": contacted,
        "accepted": accepted,
        "contact_ts": np.where(contacted, contact_ts, -1),
        "feedback_code": _feedback(rng, driver, contacted),
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
    return outcomes, rows
