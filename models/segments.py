"""Behavioural usage segments (pure): k-means on the usage profile, named from the centroids.

The profile of a subscriber-month: voice minutes, data MB, SMS (log scale), spend (ARPU averaged over the
feature trend window, ``features.trend_months``), roaming share, night share and the usage trend (this
month's events over the trend window's average). Column names come from :mod:`features.columns` for the
window given at fit time, and the fitted segments keep them, so scoring reads the columns it was fitted
on. It is fitted with scikit-learn at training time and pickled with the model family, so the same
subscriber gets the same segment whenever the month is scored.

Names come from each centroid, in standard deviations from the training mean, checked in this order:
``roamer`` (roaming share > 1 sd), ``declining`` (trend < -1 sd), ``light user`` (volumes and spend on
average < -0.5 sd), else the strongest of ``voice-heavy``, ``data-heavy``, ``sms-heavy``, ``night user``
and ``high spender``. Two clusters with one name are numbered (``data-heavy 2``) by size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from features.columns import avg_col, month_col, ratio_avg_col

# the profile's dimensions, in the order of its columns
DIMENSIONS = ("voice", "data", "sms", "spend", "roaming", "night", "trend")
LOG_SCALE = frozenset({"voice", "data", "sms", "spend"})
HEAVY_NAMES = {
    "voice": "voice-heavy",
    "data": "data-heavy",
    "sms": "sms-heavy",
    "night": "night user",
    "spend": "high spender",
}


def profile_columns(trend_months: int) -> dict[str, str]:
    """The feature column of each profile dimension for a trend window of ``trend_months`` months."""
    n = trend_months
    return {
        "voice": month_col("voice_out_min", 0),
        "data": month_col("data_mb", 0),
        "sms": month_col("sms_out", 0),
        "spend": avg_col("arpu", n),
        "roaming": month_col("roaming_usage_share", 0),
        "night": month_col("night_usage_share", 0),
        "trend": ratio_avg_col("out_events", n),
    }


def _profile(frame: pd.DataFrame, columns: dict[str, str]) -> np.ndarray:
    cols = []
    for dim in DIMENSIONS:
        v = pd.to_numeric(frame[columns[dim]], errors="coerce").to_numpy(dtype=float)
        cols.append(np.log1p(np.clip(v, 0, None)) if dim in LOG_SCALE else v)
    return np.column_stack(cols)


def _name(z: np.ndarray) -> str:
    at = {d: float(z[i]) for i, d in enumerate(DIMENSIONS)}
    if at["roaming"] > 1.0:
        return "roamer"
    if at["trend"] < -1.0:
        return "declining"
    if np.mean([at[d] for d in ("voice", "data", "sms", "spend")]) < -0.5:
        return "light user"
    return HEAVY_NAMES[max(HEAVY_NAMES, key=lambda d: at[d])]


@dataclass
class UsageSegments:
    """Fitted segmentation: ``assign(frame)`` gives each row its segment name."""

    model: Pipeline
    names: list[str]  # per cluster
    centroids: pd.DataFrame  # per segment: the profile in standard deviations, and its training share
    profile: dict[str, str]  # profile dimension -> the feature column it was fitted on

    def __setstate__(self, state: dict[str, object]) -> None:
        # segments pickled before the profile was stored were fitted on the default 3-month columns
        state.setdefault("profile", profile_columns(3))
        self.__dict__.update(state)

    @property
    def columns(self) -> list[str]:
        """The feature columns ``assign`` reads."""
        return [self.profile[d] for d in DIMENSIONS]

    def assign(self, frame: pd.DataFrame) -> np.ndarray:
        if frame.empty:
            return np.empty(0, dtype=object)
        labels = self.model.predict(_profile(frame, self.profile))
        return np.asarray(self.names, dtype=object)[labels]


def fit_segments(
    frame: pd.DataFrame, *, trend_months: int, k: int, seed: int, max_rows: int = 200_000
) -> UsageSegments | None:
    """Fit ``k`` usage segments on ``frame`` (a sample of ``max_rows``); None without the profile columns.

    ``trend_months``: the feature trend window (``features.trend_months``) that names the spend and trend
    columns (``arpu_avg_<n>m``, ``out_events_ratio_avg_<n>m``).
    """
    columns = profile_columns(trend_months)
    if any(c not in frame.columns for c in columns.values()) or len(frame) < k * 10:
        return None
    sample = frame.sample(n=min(max_rows, len(frame)), random_state=seed)
    model = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
            ("kmeans", KMeans(n_clusters=k, n_init=4, random_state=seed)),
        ]
    )
    model.fit(_profile(sample, columns))
    centers = model.named_steps["kmeans"].cluster_centers_
    sizes = np.bincount(model.named_steps["kmeans"].labels_, minlength=k)
    raw = [_name(c) for c in centers]
    names = list(raw)
    for name in set(raw):
        clusters = sorted((i for i, r in enumerate(raw) if r == name), key=lambda i: -sizes[i])
        for n, i in enumerate(clusters[1:], start=2):
            names[i] = f"{name} {n}"
    centroids = pd.DataFrame(centers, columns=list(DIMENSIONS)).round(2)
    centroids.insert(0, "segment", names)
    centroids["share"] = (sizes / sizes.sum()).round(4)
    centroids = centroids.sort_values("share", ascending=False).reset_index(drop=True)
    return UsageSegments(model, names, centroids, columns)
