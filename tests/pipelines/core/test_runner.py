import argparse

import pytest

from pipelines.core.runner import month_range, month_type, one_line


def test_month_range_forms():
    assert month_range("2023-12..2024-02") == ["2023-12", "2024-01", "2024-02"]
    assert month_range("2024-01, 2024-03") == ["2024-01", "2024-03"]
    assert month_range("2024-05") == ["2024-05"]


@pytest.mark.parametrize("text", ["2024-03..2024-01", "2024-13", "2024-1", "24-01..24-02", "2024-01..x"])
def test_month_range_refuses_bad_text(text):
    with pytest.raises(argparse.ArgumentTypeError):
        month_range(text)


def test_month_type_is_strict():
    assert month_type("2024-09") == "2024-09"
    with pytest.raises(argparse.ArgumentTypeError):
        month_type("2024-00")


def test_one_line_keeps_the_first_line_capped():
    exc = RuntimeError("first line\n  at java.Thing\n  at more")
    assert one_line(exc) == "first line"
    assert len(one_line(RuntimeError("x" * 5000))) <= 600
