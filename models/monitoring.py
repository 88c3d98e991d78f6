"""Population stability (pure): reference bins from the training rows, PSI of a scored month against them.

``DriftProfile.fit`` takes the training distribution of the score and of a few numeric features: bin
edges at the training deciles (fewer where values repeat) plus one bin for nulls, and the training share
in each bin. ``bins(columns)`` maps new values to those bins, so a distributed job counts rows per bin
in parallel and ``psi(counts)`` compares the shares:

    PSI = sum over bins of (actual - expected) * ln(actual / expected)

with empty bins floored at ``1e-4``. Rule of thumb: < 0.1 stable, 0.1-0.2 moderate shift, > 0.2 major.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

FLOOR = 1e-4


@dataclass
class DriftProfile:
    edges: dict[str, np.ndarray]  # per monitored column: inner bin edges
    expected: dict[str, np.ndarray]  # per column: training share per bin (the last bin is null)
    rows: int

    @classmethod
    def fit(cls, columns: Mapping[str, np.ndarray], bins: int = 10) -> DriftProfile:
        edges, expected = {}, {}
        rows = 0
        for name, values in columns.items():
            v = np.asarray(values, dtype=float)
            rows = len(v)
            finite = v[~np.isnan(v)]
            inner = (
                np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))
                if len(finite)
                else np.array([])
            )
            edges[name] = inner
            expected[name] = _shares(_bin(v, inner), len(inner) + 2)
        return cls(edges, expected, rows)

    @property
    def columns(self) -> list[str]:
        return list(self.edges)

    def bins(self, name: str, values: np.ndarray) -> np.ndarray:
        """Bin index of each value (``len(edges) + 1`` for null)."""
        return _bin(np.asarray(values, dtype=float), self.edges[name])

    def n_bins(self, name: str) -> int:
        return len(self.edges[name]) + 2

    def psi(self, name: str, counts: np.ndarray) -> float:
        """PSI of a month's row counts per bin (``n_bins`` long) against the training shares."""
        actual = np.asarray(counts, dtype=float)
        if actual.sum() == 0:
            return float("nan")
        return psi(self.expected[name], actual / actual.sum())


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins."""
    e = np.clip(np.asarray(expected, dtype=float), FLOOR, None)
    a = np.clip(np.asarray(actual, dtype=float), FLOOR, None)
    return float(np.sum((a - e) * np.log(a / e)))


def _bin(v: np.ndarray, inner: np.ndarray) -> np.ndarray:
    out = np.searchsorted(inner, v, side="right")
    return np.where(np.isnan(v), len(inner) + 1, out).astype(np.int32)


def _shares(index: np.ndarray, n: int) -> np.ndarray:
    counts = np.bincount(index, minlength=n).astype(float)
    return counts / max(counts.sum(), 1.0)
