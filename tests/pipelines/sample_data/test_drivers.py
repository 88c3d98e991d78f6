"""The slow churn drivers: off is the simulation without them, draw for draw; each one alone plants its
mechanism (the lines it marks leave more often, and the data shows it)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.sample_data.drivers import DriverStrengths
from pipelines.sample_data.simulate import OperatorSimulation

MONTHS = 8


def _run(drivers: DriverStrengths | None, *, emit: bool = False, months: int = MONTHS):
    sim = OperatorSimulation(3_000, 13, "2024-01", events_per_subscriber=5, drivers=drivers)
    outs = [sim.step(emit=emit) for _ in range(months)]
    return sim, outs


def test_all_strengths_zero_is_the_simulation_without_drivers():
    _, plain = _run(None, emit=True, months=2)
    _, zero = _run(DriverStrengths(), emit=True, months=2)
    for a, b in zip(plain, zero, strict=True):
        for source in ("subscriptions", "billing", "care", "cdr"):
            for col, values in getattr(a, source).items():
                assert pd.Series(values).equals(pd.Series(getattr(b, source)[col])), (source, col)


def _churned(sim: OperatorSimulation) -> np.ndarray:
    return ~sim.active[: sim.n]


@pytest.mark.parametrize(
    ("driver", "marked"),
    [
        ("decline", lambda d: d.decline > 0.3),
        ("competitor_pull", lambda d: d.pull > 0.15),
    ],
)
def test_a_building_driver_marks_lines_that_leave_more(driver, marked):
    """Lines deep in a decline (or a pull) at the end leave more over the next months than the rest."""
    sim, _ = _run(DriverStrengths(**{driver: 2.0}))
    assert sim.drivers is not None
    n = sim.n
    at_risk = marked(sim.drivers)[:n] & sim.active[:n]
    calm = sim.active[:n] & ~at_risk
    assert at_risk.sum() > 30
    for _ in range(3):
        sim.step(emit=False)
    left_risk = (~sim.active[:n][at_risk]).mean()
    left_calm = (~sim.active[:n][calm]).mean()
    assert left_risk > 2 * left_calm, (left_risk, left_calm)


def test_drivers_raise_churn_and_show_in_usage_and_bills():
    _, plain = _run(None, emit=True, months=4)
    _, driven = _run(DriverStrengths(1.0, 1.0, 1.0, 1.0, 1.0), emit=True, months=4)
    churn = lambda outs: np.mean([o.stats["churn_postpaid"] + o.stats["churn_prepaid"] for o in outs[1:]])  # noqa: E731
    assert churn(driven) > churn(plain) * 1.2
    # the declines lower usage (CDR rows a line), the shocks raise the largest bills
    rows = lambda outs: len(outs[-1].cdr["record_id"])  # noqa: E731
    assert rows(driven) < rows(plain)
    top = lambda outs: np.quantile(np.asarray(outs[-1].billing["invoice_amount"], float), 0.99)  # noqa: E731
    assert top(driven) > top(plain)
