"""Retention offer matching (pure): eligibility, contact policy, expected net value, the optimal assignment.

Per candidate line and offer, the expected net value is

    churn_probability x effect x value_at_risk - cost,     value_at_risk = arpu_3m x value_horizon_months

(``effect``: the offer's reduction of the churn probability, the prior from the catalogue or the effect
measured by the evaluation). The assignment maximises the total expected net value with at most one
offer per line, every offer within its monthly capacity and the total cost within the budget:

- :func:`solve_exact`: the integer programme, solved by HiGHS (``scipy.optimize.milp``);
- :func:`solve_greedy`: the best (line, offer) pairs first, the baseline it must beat;
- :func:`update_prices` / :func:`dual_bound`: the driver's half of the price decomposition the Spark stage
  (``pipelines.match_offers``) runs for large populations: each line picks its best offer at the current
  prices of capacity and budget in Spark, the driver moves the prices from the aggregated usage. Any
  prices give an upper bound on the optimum, so the job reports the gap of the assignment it writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix, vstack

from models.params import RISK_BANDS, OfferParams

# the columns a candidate frame needs (the Spark stage builds them from the warning list and features)
CANDIDATE_COLUMNS = (
    "subscriber_id",
    "churn_probability",
    "risk_band",
    "cohort",
    "value_tier",
    "churn_type",
    "usage_segment",
    "arpu_3m",
    "plan_type",
    "contract_state",
    "marketing_consent",
    "cooling_down",
    "open_complaint",
)


def contract_state(
    has_contract: pd.Series, out_of_contract: pd.Series, months_to_end: pd.Series
) -> np.ndarray:
    """``no_contract``, ``out_of_contract``, ``expiring`` (ends within 3 months) or ``in_contract``."""
    months = pd.to_numeric(months_to_end, errors="coerce")
    return np.select(
        [
            ~has_contract.fillna(False).astype(bool),
            out_of_contract.fillna(False).astype(bool),
            (months <= 3).fillna(False).to_numpy(),
        ],
        ["no_contract", "out_of_contract", "expiring"],
        "in_contract",
    ).astype(object)


def eligible(frame: pd.DataFrame, params: OfferParams) -> np.ndarray:
    """Lines x offers: the offer's eligibility rules hold (the contact policy is applied apart)."""
    out = np.ones((len(frame), len(params.offers)), dtype=bool)
    for j, offer in enumerate(params.offers):
        rules = offer.eligibility
        for column, allowed in (
            ("plan_type", rules.plan_types),
            ("cohort", rules.cohorts),
            ("value_tier", rules.value_tiers),
            ("churn_type", rules.churn_types),
            ("contract_state", rules.contract_states),
        ):
            if allowed:
                out[:, j] &= frame[column].isin(allowed).to_numpy()
        if rules.usage_segments:
            segment = frame["usage_segment"].fillna("").astype(str)
            out[:, j] &= np.logical_or.reduce(
                [segment.str.startswith(s).to_numpy() for s in rules.usage_segments]
            )
    return out


def net_values(
    frame: pd.DataFrame, params: OfferParams, effects: Mapping[str, float] | None = None
) -> np.ndarray:
    """Lines x offers: expected net value (``-inf`` where the offer is not eligible for the line)."""
    effect = np.array([(effects or {}).get(o.id, o.effect) for o in params.offers])
    cost = np.array([o.cost for o in params.offers])
    p = frame["churn_probability"].to_numpy(dtype=float)
    value_at_risk = np.nan_to_num(frame["arpu_3m"].to_numpy(dtype=float)) * params.value_horizon_months
    values = p[:, None] * effect[None, :] * value_at_risk[:, None] - cost[None, :]
    return np.where(eligible(frame, params), values, -np.inf)


def policy_reasons(
    frame: pd.DataFrame, params: OfferParams, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each line's exclusion reason before optimisation (None: a candidate), and the values it may use.

    Order: below the candidate band (``below_value``), ``no_consent``, ``cooling_down``, ``unprofitable``,
    ``not_eligible`` (no offer fits), ``open_complaint`` (only sales-like offers fit and a complaint is
    open), ``below_value`` (no offer is worth its cost).
    """
    policy = params.policy
    n = len(frame)
    reason = np.full(n, None, dtype=object)

    def mark(rows: np.ndarray, why: str) -> None:
        reason[(reason == None) & rows] = why  # noqa: E711 (elementwise)

    band_ok = frame["risk_band"].isin(RISK_BANDS[RISK_BANDS.index(params.min_band) :]).to_numpy()
    mark(~band_ok, "below_value")
    if policy.require_consent:
        mark(~frame["marketing_consent"].fillna(False).astype(bool).to_numpy(), "no_consent")
    mark(frame["cooling_down"].fillna(False).astype(bool).to_numpy(), "cooling_down")
    if policy.exclude_unprofitable:
        mark((frame["value_tier"] == "unprofitable").to_numpy(), "unprofitable")
    fits = np.isfinite(values)
    mark(~fits.any(axis=1), "not_eligible")
    usable = values.copy()
    if policy.suppress_sales_on_open_complaint:
        complaint = frame["open_complaint"].fillna(False).astype(bool).to_numpy()
        sales = np.array([o.sales_like for o in params.offers])
        usable[complaint[:, None] & sales[None, :]] = -np.inf
        mark(np.asarray(~np.isfinite(usable).any(axis=1)), "open_complaint")
    mark(np.asarray(~(usable > 0).any(axis=1)), "below_value")
    usable[reason != None] = -np.inf  # noqa: E711
    return reason, usable


@dataclass
class Assignment:
    """Offer index per line (-1: none), the total value, and how it was solved."""

    offer: np.ndarray
    total: float
    method: str
    bound: float | None = None  # an upper bound on the optimum (Lagrangian), when known

    @property
    def gap(self) -> float | None:
        return None if self.bound is None else max(0.0, self.bound - self.total)


def _capacities(params: OfferParams) -> np.ndarray:
    return np.array([np.inf if o.capacity is None else o.capacity for o in params.offers], dtype=float)


def _costs(params: OfferParams) -> np.ndarray:
    return np.array([o.cost for o in params.offers], dtype=float)


def _total(values: np.ndarray, offer: np.ndarray) -> float:
    rows = offer >= 0
    return float(values[np.flatnonzero(rows), offer[rows]].sum())


def solve_exact(values: np.ndarray, params: OfferParams, budget: float | None = None) -> Assignment:
    """The optimal assignment (HiGHS MILP over the pairs with a positive value)."""
    budget = params.budget if budget is None else budget
    n, m = values.shape
    rows, cols = np.nonzero(values > 0)
    offer = np.full(n, -1)
    if len(rows) == 0:
        return Assignment(offer, 0.0, "exact")
    k = len(rows)
    v, cost, cap = values[rows, cols], _costs(params)[cols], _capacities(params)
    one_per_line = coo_matrix((np.ones(k), (rows, np.arange(k))), shape=(n, k))
    per_offer = coo_matrix((np.ones(k), (cols, np.arange(k))), shape=(m, k))
    spend = coo_matrix((cost, (np.zeros(k, dtype=int), np.arange(k))), shape=(1, k))
    a = vstack([one_per_line, per_offer, spend]).tocsr()
    upper = np.concatenate([np.ones(n), np.where(np.isinf(cap), k, cap), [budget]])
    result = milp(
        -v,
        constraints=LinearConstraint(a, -np.inf, upper),
        integrality=np.ones(k),
        bounds=Bounds(0, 1),
        options={"mip_rel_gap": 1e-6, "time_limit": 300},
    )
    if result.x is None:
        raise RuntimeError(f"offer assignment: HiGHS found no solution ({result.message})")
    chosen = result.x > 0.5
    offer[rows[chosen]] = cols[chosen]
    return Assignment(offer, _total(values, offer), "exact")


def solve_greedy(values: np.ndarray, params: OfferParams, budget: float | None = None) -> Assignment:
    """The best (line, offer) pairs first while the line is free, the offer has room and the budget lasts."""
    budget = params.budget if budget is None else budget
    n, _ = values.shape
    rows, cols = np.nonzero(values > 0)
    order = np.argsort(-values[rows, cols], kind="stable")
    left, spent, cost = _capacities(params).copy(), 0.0, _costs(params)
    offer = np.full(n, -1)
    for i in order:
        r, c = rows[i], cols[i]
        if offer[r] < 0 and left[c] >= 1 and spent + cost[c] <= budget + 1e-9:
            offer[r], spent = c, spent + cost[c]
            left[c] -= 1
    return Assignment(offer, _total(values, offer), "greedy")


def dual_bound(reduced_total: float, prices: np.ndarray, mu: float, params: OfferParams) -> float:
    """Upper bound on the optimum: sum of positive reduced values + prices x capacities + mu x budget."""
    cap = _capacities(params)
    finite = np.isfinite(cap)
    return float(reduced_total + np.sum(prices[finite] * cap[finite]) + mu * params.budget)


def update_prices(
    prices: np.ndarray, mu: float, counts: np.ndarray, spend: float, params: OfferParams, step: float
) -> tuple[np.ndarray, float]:
    """A projected subgradient step: raise the price of what is over-used, lower it where there is room."""
    cap = _capacities(params)
    finite = np.isfinite(cap)
    scale = max(1.0, float(np.max(np.abs(prices))) if len(prices) else 1.0)
    new = prices.copy()
    new[finite] = np.maximum(
        0.0, prices[finite] + step * scale * (counts[finite] - cap[finite]) / np.maximum(cap[finite], 1)
    )
    new[~finite] = 0.0
    new_mu = max(0.0, mu + step * max(mu, 0.01) * (spend - params.budget) / max(params.budget, 1.0))
    return new, new_mu
