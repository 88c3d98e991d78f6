"""The feature encoder: planted categories get stable codes, unseen and null values are missing, numbers
of every kind Spark hands over become floats, and codes map back to the values they encode."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from features.errors import MissingColumnsError, SchemaMismatchError
from models.encoding import FeatureEncoder

PLANS = ["prepaid", "postpaid", "business"]


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "plan_type": ["postpaid", "prepaid", None, "business", "postpaid"],
            "arpu_3m": [10.5, None, 3.0, 0.0, 7.25],
            "is_roamer": [True, False, True, False, False],
            # as Spark gives a decimal column with a null: Python Decimals and None in an object column
            "bill": pd.Series(
                [Decimal("1.10"), None, Decimal("2.5"), Decimal("0"), Decimal("-3")], dtype=object
            ),
            "activation_date": [dt.date(2020, 1, 1)] * 5,
            "region": pd.Categorical(["north", "south", "north", None, "east"]),
        }
    )


def test_fit_learns_sorted_categories_and_drops_dates():
    frame = _frame()
    encoder = FeatureEncoder.fit(
        frame, ["plan_type", "arpu_3m", "is_roamer", "bill", "activation_date", "region"]
    )
    assert encoder.features == ("plan_type", "arpu_3m", "is_roamer", "bill", "region")
    assert encoder.categories == {"plan_type": tuple(sorted(PLANS)), "region": ("east", "north", "south")}
    assert encoder.categorical == [0, 4]


def test_transform_codes_numbers_and_missing_values():
    encoder = FeatureEncoder.fit(_frame(), ["plan_type", "arpu_3m", "is_roamer", "bill"])
    scoring = pd.DataFrame(
        {
            "plan_type": ["business", "enterprise", None, "prepaid"],  # enterprise: never seen at fit
            "arpu_3m": [1.0, np.nan, 2.0, 3.0],
            "is_roamer": pd.Series([True, None, False, True], dtype=object),
            "bill": pd.Series([Decimal("4.75"), None, Decimal("-1"), Decimal("0.5")], dtype=object),
            "ignored": ["a", "b", "c", "d"],
        }
    )
    matrix = encoder.transform(scoring, extra_columns=2)
    codes = {plan: i for i, plan in enumerate(sorted(PLANS))}  # business 0, postpaid 1, prepaid 2
    want = np.array(
        [
            [codes["business"], 1.0, 1.0, 4.75, np.nan, np.nan],
            [np.nan, np.nan, np.nan, np.nan, np.nan, np.nan],
            [np.nan, 2.0, 0.0, -1.0, np.nan, np.nan],
            [codes["prepaid"], 3.0, 1.0, 0.5, np.nan, np.nan],
        ]
    )
    np.testing.assert_array_equal(matrix, want)
    assert matrix.flags.f_contiguous


def test_codes_map_back_to_the_values_whatever_the_row_order():
    frame = _frame()
    encoder = FeatureEncoder.fit(frame, ["plan_type", "region"])
    shuffled = frame.sample(frac=1, random_state=4).reset_index(drop=True)
    matrix = encoder.transform(shuffled)
    for j, name in enumerate(encoder.features):
        decoded = [None if np.isnan(c) else encoder.categories[name][int(c)] for c in matrix[:, j]]
        original = [None if pd.isna(v) else str(v) for v in shuffled[name]]
        assert decoded == original, name
    # a refit on the same values in another order learns the same codes
    again = FeatureEncoder.fit(shuffled, ["plan_type", "region"])
    assert again == encoder
    np.testing.assert_array_equal(again.transform(frame), encoder.transform(frame))


def test_missing_and_unsupported_columns_are_named():
    frame = _frame()
    with pytest.raises(MissingColumnsError, match="fit_family: missing columns tenure"):
        FeatureEncoder.fit(frame, ["plan_type", "tenure"])
    encoder = FeatureEncoder.fit(frame, ["plan_type", "arpu_3m"])
    with pytest.raises(MissingColumnsError, match="predict_proba: missing columns arpu_3m"):
        encoder.transform(frame.drop(columns=["arpu_3m"]))
    odd = pd.DataFrame(
        {"blob": [1 + 2j, 3j]}
    )  # complex numbers: neither a number LightGBM takes nor a category
    with pytest.raises(SchemaMismatchError, match="column blob has unsupported type"):
        FeatureEncoder.fit(odd, ["blob"])
