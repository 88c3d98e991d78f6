import datetime as dt

import pytest

from features.calendar import (
    add_months,
    days_in_month,
    month_end,
    month_start,
    months_between,
    parse_month,
)


@pytest.mark.parametrize(
    ("month", "n", "expected"),
    [
        ("2024-01", 0, "2024-01"),
        ("2024-01", -1, "2023-12"),
        ("2024-11", 2, "2025-01"),
        ("2024-03", -27, "2021-12"),
    ],
)
def test_add_months_crosses_years(month, n, expected):
    assert add_months(month, n) == expected


def test_months_between_is_inclusive_and_empty_when_reversed():
    assert months_between("2023-11", "2024-02") == ["2023-11", "2023-12", "2024-01", "2024-02"]
    assert months_between("2024-03", "2024-03") == ["2024-03"]
    assert months_between("2024-03", "2024-02") == []


def test_month_bounds_and_leap_years():
    assert parse_month("2024-02") == (2024, 2)
    assert month_start("2024-02") == dt.date(2024, 2, 1)
    assert month_end("2024-02") == dt.date(2024, 2, 29) and month_end("2023-02") == dt.date(2023, 2, 28)
    assert (
        days_in_month("2024-02") == 29 and days_in_month("2024-04") == 30 and days_in_month("2024-12") == 31
    )
