"""The catalogue's codes and labels agree with the landing contract, the models' reason families and the
default offer catalogue: a renamed label or a new offer without a truth fails here, not in a long loop."""

from __future__ import annotations

import numpy as np
import pytest

from features import contract as C
from models.params import REASON_FAMILIES
from pipelines.core.config import load_config
from pipelines.sample_data.catalogue import (
    CARE_CATEGORIES,
    CARE_CHANNELS,
    CATALOGUE_TRUTH,
    CHANNELS,
    DIRECTIONS,
    DRIVER_OFFER,
    DRIVERS,
    EVENT_TYPES,
    OPERATOR_LABELS,
    PLAN_FEES,
    PLAN_IDS,
    PLAN_TYPES,
    REASONS,
    CareCategory,
    Competitor,
    Driver,
    Offer,
    Plan,
    Reason,
    by_driver,
    is_prepaid,
    labels,
)


def _domain(source: str, column: str) -> tuple[str, ...]:
    domain = next(c.domain for c in C.CONTRACT[source] if c.name == column)
    assert domain is not None
    return domain


@pytest.mark.parametrize(
    "codes, expected",
    [
        (REASONS, C.DEACTIVATION_REASONS),
        (CARE_CATEGORIES, C.CARE_CATEGORIES),
        (CHANNELS, _domain("subscriptions", "acquisition_channel")),
        (CARE_CHANNELS, _domain("care", "channel")),
        (EVENT_TYPES, _domain("cdr", "event_type")),
        (DIRECTIONS, _domain("cdr", "direction")),
    ],
)
def test_labels_are_the_contracts_values(codes: np.ndarray, expected: tuple[str, ...]):
    assert sorted(codes) == sorted(expected)


def test_a_code_indexes_its_own_label():
    assert REASONS[Reason.NON_PAYMENT] == "non_payment"
    assert CARE_CATEGORIES[CareCategory.PORT_OUT_REQUEST] == "port_out_request"
    assert labels(Competitor, lower=False).tolist() == ["OP_B", "OP_C", "OP_D"]
    # a ported number's operator code: 1 + the competitor's
    assert OPERATOR_LABELS[1 + Competitor.OP_D] == "OP_D"


def test_prepaid_plans_are_the_pre_plans_and_cost_less_than_the_postpaid_top():
    codes = np.array(list(Plan))
    assert is_prepaid(codes).tolist() == [p.name.startswith("PRE_") for p in Plan]
    assert sorted(set(PLAN_TYPES)) == sorted(_domain("subscriptions", "plan_type"))
    assert (PLAN_TYPES[is_prepaid(codes)] == "prepaid").all()
    assert PLAN_IDS[Plan.POST_XL] == "POST_XL" and PLAN_FEES.size == len(Plan)
    assert PLAN_FEES[is_prepaid(codes)].max() < PLAN_FEES[~is_prepaid(codes)].max()


def test_drivers_are_reason_families_the_models_know():
    assert set(DRIVERS) <= set(REASON_FAMILIES)


def test_every_driver_has_an_own_offer_and_a_table_missing_one_is_refused():
    assert DRIVER_OFFER.size == len(Driver)
    assert DRIVER_OFFER[Driver.CONTRACT_EXPIRY] == Offer.CONTRACT_RENEWAL
    with pytest.raises(KeyError):
        by_driver({Driver.USAGE_DECLINE: Offer.DATA_PACK})


def test_every_default_offer_has_a_truth_that_names_real_drivers():
    offers = [o.id for o in load_config().offers.offers]
    assert set(offers) <= set(CATALOGUE_TRUTH)
    for truth in CATALOGUE_TRUTH.values():
        assert set(truth.fits) <= {*DRIVERS, "roaming"}
        assert 0 < truth.acceptance < 1 and 0 < truth.effect < 1
