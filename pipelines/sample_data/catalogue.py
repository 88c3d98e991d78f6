"""What the simulated operator sells and records: plans, codes and their labels, offers and their truth.

The simulation keeps every categorical value as a small integer code (numpy arrays of int8 are cheap)
and the writer turns codes into the contract's labels at the end. Each code is an ``IntEnum`` whose
member names are the labels (lower-cased), so ``reason == Reason.PORT_OUT`` reads as what it means and
the label array is derived from the same names.

The offers' truth (what the pipeline's evaluation has to find; carried out by :mod:`.campaign`): a line
reached by the campaign accepts with the offer's ``acceptance``; an accepted offer ends a real risk
episode with a chance that depends on

- the episode's hidden driver: ``effect`` when the offer ``fits`` it, else ``OFFER_EFFECT_MISFIT``;
- the line's value (:func:`value_level`, by the plan's monthly fee, which the pipeline sees as
  ``monthly_fee`` and through ``arpu_3m``): the chance is multiplied by the offer's ``value_response``
  for the low, middle and high level (``PREMIUM``: high-value lines respond more, low-value ones less;
  ``CHEAP``: the reverse).

A declined contact ends an episode with ``CONTACT_EFFECT``. Some contacts do harm ("sleeping dogs"): a
reached line with the hidden ``contact_averse`` trait (:mod:`.base`, more common among low-usage lines)
and no episode about to churn is pushed out by the contact with chance ``PROVOKE_CHANCE`` (higher for a
line out of contract, the pipeline's ``contract_state = out_of_contract``: its contract ended by the end
of the score month) times the offer's ``provocation`` (sales-like offers provoke, service ones much
less). So a sales-like offer harms out-of-contract lines without an episode about to churn: its average
effect on out-of-contract lines is negative (``NEGATIVE_SEGMENTS``), even among lines in a risk episode;
low-usage lines, where the trait is more common, are harmed more often too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import IntEnum

import numpy as np


def labels(codes: type[IntEnum], *, lower: bool = True) -> np.ndarray:
    """The label of each code of ``codes``, indexable by the code (``labels(Reason)[Reason.FRAUD]``)."""
    return np.array([m.name.lower() if lower else m.name for m in codes])


# ------------------------------------------------------------------------------------ plans
class Plan(IntEnum):
    """Tariff plans; the prepaid ones come first, so a code below ``FIRST_POSTPAID`` is prepaid."""

    PRE_S = 0
    PRE_M = 1
    PRE_L = 2
    POST_S = 3
    POST_M = 4
    POST_L = 5
    POST_XL = 6


FIRST_POSTPAID = Plan.POST_S
PLAN_FEES = np.array([5.0, 10.0, 15.0, 15.0, 25.0, 40.0, 60.0])  # monthly fee, by Plan
PLAN_IDS = labels(Plan, lower=False)


def is_prepaid(plan: np.ndarray) -> np.ndarray:
    """Whether each plan code is a prepaid plan."""
    return plan < FIRST_POSTPAID


PLAN_TYPES = np.where(is_prepaid(np.arange(len(Plan))), "prepaid", "postpaid")


# ------------------------------------------------------------------------------------ the line
class Channel(IntEnum):
    """Acquisition channel of a line."""

    STORE = 0
    ONLINE = 1
    TELESALES = 2
    DEALER = 3


class Region(IntEnum):
    NORTH = 0
    SOUTH = 1
    EAST = 2
    WEST = 3
    CAPITAL = 4


class Competitor(IntEnum):
    """The operators a number can be ported to."""

    OP_B = 0
    OP_C = 1
    OP_D = 2


class Reason(IntEnum):
    """Deactivation reason (the contract's ``deactivation_reason``)."""

    PORT_OUT = 0
    VOLUNTARY = 1
    NON_PAYMENT = 2
    FRAUD = 3
    DECEASED = 4
    OTHER = 5


NO_REASON = -1  # an active line
CHANNELS = labels(Channel)
REGIONS = labels(Region)
COMPETITORS = labels(Competitor, lower=False)
REASONS = labels(Reason)


# ------------------------------------------------------------------------------------ care
class CareCategory(IntEnum):
    BILLING = 0
    NETWORK = 1
    DEVICE = 2
    PLAN_CHANGE = 3
    COMPLAINT = 4
    PORT_OUT_REQUEST = 5
    OTHER = 6


class CareChannel(IntEnum):
    CALL_CENTER = 0
    STORE = 1
    APP = 2
    WEB = 3


CARE_CATEGORIES = labels(CareCategory)
CARE_CHANNELS = labels(CareChannel)


# ------------------------------------------------------------------------------------ usage
class EventType(IntEnum):
    VOICE = 0
    SMS = 1
    DATA = 2


class Direction(IntEnum):
    OUT = 0
    IN = 1


EVENT_TYPES = labels(EventType)
DIRECTIONS = labels(Direction)
# the other party's network: our own, a competitor (``FIRST_COMPETITOR + Competitor``), fixed, abroad
OPERATOR_LABELS = np.array(["own", *COMPETITORS, "fixed", "intl"])
OWN_NETWORK = 0
FIRST_COMPETITOR = 1
COUNTRIES = np.array(["ES", "IT", "DE", "FR", "GR", "HR", "US", "TR", "GB", "PL"])
CELL_LABELS = np.array([f"C{i:03d}" for i in range(500)])
NIGHT_HOURS = np.array([22, 23, 0, 1, 2, 3, 4, 5])


def sha256_hex(numbers: np.ndarray) -> np.ndarray:
    """Lowercase hex SHA-256 of each number's digits (the contract's ``other_party`` hashing)."""
    return np.array([hashlib.sha256(str(int(n)).encode()).hexdigest() for n in numbers], dtype=object)


# ------------------------------------------------------------------------------------ risk episodes
class Driver(IntEnum):
    """What drives a risk episode: the reason families the model should later recover."""

    NEW_CUSTOMER_FIT = 0
    SERVICE_ISSUE = 1
    USAGE_DECLINE = 2
    CONTRACT_EXPIRY = 3
    COMPETITOR_PULL = 4
    PRICE_SENSITIVITY = 5


NO_DRIVER = -1  # no episode
DRIVERS = labels(Driver)


def by_driver(codes: dict[Driver, IntEnum]) -> np.ndarray:
    """A code per driver as an array indexable by the driver's code (every driver must be given)."""
    return np.array([codes[d] for d in Driver])


class Feedback(IntEnum):
    """What an agent codes after a retention call (``feedback_code``)."""

    PRICE = 0
    NETWORK = 1
    COMPETITOR_OFFER = 2
    MOVING = 3
    NO_REASON = 4
    COVERAGE = 5
    DEVICE = 6


FEEDBACK = labels(Feedback)
# the feedback an agent most often codes per driver
DRIVER_FEEDBACK = by_driver(
    {
        Driver.NEW_CUSTOMER_FIT: Feedback.PRICE,
        Driver.SERVICE_ISSUE: Feedback.NETWORK,
        Driver.USAGE_DECLINE: Feedback.NO_REASON,
        Driver.CONTRACT_EXPIRY: Feedback.COMPETITOR_OFFER,
        Driver.COMPETITOR_PULL: Feedback.COMPETITOR_OFFER,
        Driver.PRICE_SENSITIVITY: Feedback.PRICE,
    }
)


# ------------------------------------------------------------------------------------ offers
class Offer(IntEnum):
    """The operator's own retention offers (its campaigns before the pipeline has a model)."""

    CONTRACT_RENEWAL = 0
    DATA_PACK = 1
    BILL_CREDIT = 2
    SERVICE_RECOVERY = 3
    ROAMING_PACK = 4


OFFERS = labels(Offer)
# the offer that fits each driver, and the chance an accepted offer ends a real episode (fit / misfit)
DRIVER_OFFER = by_driver(
    {
        Driver.NEW_CUSTOMER_FIT: Offer.BILL_CREDIT,
        Driver.SERVICE_ISSUE: Offer.SERVICE_RECOVERY,
        Driver.USAGE_DECLINE: Offer.DATA_PACK,
        Driver.CONTRACT_EXPIRY: Offer.CONTRACT_RENEWAL,
        Driver.COMPETITOR_PULL: Offer.BILL_CREDIT,
        Driver.PRICE_SENSITIVITY: Offer.BILL_CREDIT,
    }
)
OFFER_EFFECT_FIT = np.array([0.65, 0.35, 0.45, 0.55, 0.25])  # by Offer
OFFER_EFFECT_MISFIT = 0.1


# how the chance an accepted offer ends an episode scales with the line's value level (low, middle, high)
PREMIUM = (0.5, 1.0, 1.3)  # device renewals, family plans, upgrades: valued by high-value lines
CHEAP = (1.3, 1.0, 0.6)  # packs and add-ons: welcome to low-value lines, small change to high-value ones
NEUTRAL = (1.0, 1.0, 1.0)
# value levels by the plan's monthly fee: at most LOW_VALUE_FEE low, at least HIGH_VALUE_FEE high
LOW_VALUE_FEE = 10.0
HIGH_VALUE_FEE = 40.0


def value_level(plan: np.ndarray) -> np.ndarray:
    """0 (low), 1 (middle) or 2 (high) per plan code, by its monthly fee (an index into a value response)."""
    fee = PLAN_FEES[plan]
    return np.where(fee <= LOW_VALUE_FEE, 0, np.where(fee >= HIGH_VALUE_FEE, 2, 1))


@dataclass(frozen=True)
class OfferTruth:
    """How subscribers truly respond to one of the pipeline's offers (closed loop, known to the test).

    ``acceptance``: chance a contacted line accepts; ``effect``: chance an accepted offer ends a real risk
    episode whose driver it ``fits`` (``roaming``: a heavy roamer), else ``OFFER_EFFECT_MISFIT``; either
    times ``value_response[value_level]``. ``provocation``: how much a contact with this offer provokes a
    contact-averse line (times ``PROVOKE_CHANCE``).
    """

    acceptance: float
    effect: float
    fits: tuple[str, ...] = ()
    value_response: tuple[float, float, float] = NEUTRAL
    provocation: float = 1.0


SALES = 1.0  # a sales-like offer (``sales_like`` in the default catalogue) provokes fully
SERVICE = 0.2  # a service or loyalty gesture rarely does

# The true response to the default catalogue's offers (conf/base.yml ``offers``); an offer id missing
# here gets ``UNKNOWN_OFFER``. Priors in the catalogue are deliberately not these numbers: the loop
# has to measure them.
CATALOGUE_TRUTH = {
    "data_pack": OfferTruth(0.35, 0.45, ("usage_decline",), CHEAP, SALES),
    "free_addon": OfferTruth(0.3, 0.3, ("new_customer_fit", "usage_decline"), CHEAP, SALES),
    "tenure_upgrade": OfferTruth(0.3, 0.4, ("competitor_pull", "contract_expiry"), PREMIUM, SERVICE),
    "renewal_device": OfferTruth(0.25, 0.8, ("contract_expiry",), PREMIUM, SALES),
    "family_plan": OfferTruth(0.2, 0.6, ("competitor_pull", "price_sensitivity"), PREMIUM, SALES),
    "roaming_pack": OfferTruth(0.4, 0.5, ("roaming",), NEUTRAL, SALES),
    "bill_credit": OfferTruth(0.5, 0.5, ("price_sensitivity",), CHEAP, SERVICE),
    "service_recovery": OfferTruth(0.6, 0.6, ("service_issue",), NEUTRAL, SERVICE),
}
UNKNOWN_OFFER = OfferTruth(0.3, OFFER_EFFECT_MISFIT)
# chance a treated line is reached, by the offer list's channel (``DEFAULT_CONTACT_RATE`` otherwise)
CONTACT_RATE = {"sms": 0.9, "app": 0.8, "email": 0.85, "call": 0.65, "call_center": 0.65, "store": 0.5}
DEFAULT_CONTACT_RATE = 0.7
CONTACT_EFFECT = 0.04  # a contact alone (offer declined) sometimes ends an episode too
# sleeping dogs: chance a reached contact-averse line without an episode about to churn is pushed out
# (times the offer's provocation), by whether it is out of contract at the end of the score month
# (a minority, about one line in six: a contact helps the lines in a risk episode on average, while
# sales-like offers to out-of-contract lines, reminded that they are free to go, do harm; a random
# eligible offer to a warning-list candidate does slight harm on average, see docs/loop-study.md)
PROVOKE_CHANCE = {"out_of_contract": 0.9, "other": 0.04}
PROVOKED_DRIVER = Driver.COMPETITOR_PULL  # a provoked line shops around
# (offer, observable segment) pairs with a negative true average effect, on the lines in a risk episode
# as on any (the tests check it): a cheap sales-like offer to lines out of contract
NEGATIVE_SEGMENTS = (("free_addon", "out_of_contract"), ("data_pack", "out_of_contract"))
