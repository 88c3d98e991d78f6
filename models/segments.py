"""Behavioural usage segments (pure): k-means on the usage profile, named from the centroids.

The profile of a subscriber-month: voice minutes, data MB, SMS (log scale), spend (ARPU over 3 months),
roaming share, night share and the usage trend (this month's events over the 3-month average). It is
fitted with scikit-learn at training time and pickled with the model family, so the same subscriber
gets the same segment whenever the month is scored.

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

# profile dimension -> (feature column, log scale)
PROFILE: dict[str, tuple[str, bool]] = {
    "voice": ("voice_out_min_m0", True),
    "data": ("data_mb_m0", True),
    "sms": ("sms_out_m0", True),
    "spend": ("arpu_avg_3m", True),
    "roaming": ("roaming_usage_share_m0", False),
    "night": ("night_usage_share_m0", False),
    "trend": ("out_events_ratio_avg_3m", False),
}
HEAVY_NAMES = {
    "voice": "voice-heavy",
    "data": "data-heavy",
    "sms": "sms-heavy",
    "night": "night user",
    "spend": "high spender",
}


def profile_columns() -> list[str]:
    return [column for column, _ in PROFILE.values()]


def _profile(frame: pd.DataFrame) -> np.ndarray:
    cols = []
    for column, log in PROFILE.values():
        v = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        cols.append(np.log1p(np.clip(v, 0, None)) if log else v)
    return np.column_stack(cols)


def _name(z: np.ndarray) -> str:
    dims = list(PROFILE)
    at = {d: float(z[i]) for i, d in enumerate(dims)}
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

    def assign(self, frame: pd.DataFrame) -> np.ndarray:
        if frame.empty:
            return np.empty(0, dtype=object)
        labels = self.model.predict(_profile(frame))
        return np.asarray(self.names, dtype=object)[labels]


def fit_segments(
    frame: pd.DataFrame, *, k: int = 6, seed: int = 7, max_rows: int = 200_000
) -> UsageSegments | None:
    """Fit ``k`` usage segments on ``frame`` (a sample of ``max_rows``); None without the profile columns."""
    if any(c not in frame.columns for c in profile_columns()) or len(frame) < k * 10:
        return None
    sample = frame.sample(n=min(max_rows, len(frame)), random_state=seed)
    model = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
            ("kmeans", KMeans(n_clusters=k, n_init=4, random_state=seed)),
        ]
    )
    model.fit(_profile(sample))
    centers = model.named_steps["kmeans"].cluster_centers_
    sizes = np.bincount(model.named_steps["kmeans"].labels_, minlength=k)
    raw = [_name(c) for c in centers]
    names = list(raw)
    for name in set(raw):
        clusters = sorted((i for i, r in enumerate(raw) if r == name), key=lambda i: -sizes[i])
        for n, i in enumerate(clusters[1:], start=2):
            names[i] = f"{name} {n}"
    centroids = pd.DataFrame(centers, columns=list(PROFILE)).round(2)
    centroids.insert(0, "segment", names)
    centroids["share"] = (sizes / sizes.sum()).round(4)
    return UsageSegments(model, names, centroids.sort_values("share", ascending=False).reset_index(drop=True))
