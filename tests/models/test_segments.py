"""Usage segments on planted profiles: named from their centroids, columns from the trend window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.segments import fit_segments, profile_columns


def _usage(n: int, seed: int, *, trend_months: int = 3) -> tuple[pd.DataFrame, np.ndarray]:
    """Three planted profiles (data-heavy, voice-heavy, roamers), the window-named columns for
    ``trend_months``."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(["data", "voice", "roam"], n, p=[0.5, 0.4, 0.1])
    frame = pd.DataFrame(
        {
            "voice_out_min_m0": np.where(kind == "voice", 300.0, 10.0) * rng.uniform(0.8, 1.2, n),
            "data_mb_m0": np.where(kind == "data", 8000.0, 100.0) * rng.uniform(0.8, 1.2, n),
            "sms_out_m0": rng.poisson(3, n).astype(float),
            f"arpu_avg_{trend_months}m": rng.uniform(20, 30, n),
            "roaming_usage_share_m0": np.where(kind == "roam", 0.6, 0.0),
            "night_usage_share_m0": rng.uniform(0.1, 0.2, n),
            f"out_events_ratio_avg_{trend_months}m": rng.uniform(0.9, 1.1, n),
        }
    )
    return frame, kind


NAMES = {"data": "data-heavy", "voice": "voice-heavy", "roam": "roamer"}


def test_segments_find_planted_profiles_name_them_and_assign_new_rows_the_same_way():
    frame, _kind = _usage(3000, 1)
    segments = fit_segments(frame, trend_months=3, k=3, seed=1)
    assert sorted(segments.names) == ["data-heavy", "roamer", "voice-heavy"]
    test, test_kind = _usage(500, 2)
    got = segments.assign(test)
    assert (got == pd.Series(test_kind).map(NAMES).to_numpy()).mean() > 0.98
    refit = fit_segments(frame, trend_months=3, k=3, seed=1)
    assert list(refit.assign(test)) == list(got)  # the same seed fits the same segments
    # the training shares are the planted ones
    share = segments.centroids.set_index("segment")["share"]
    assert share["data-heavy"] == pytest.approx(0.5, abs=0.03)
    assert share["roamer"] == pytest.approx(0.1, abs=0.02)
    assert fit_segments(frame.drop(columns=["night_usage_share_m0"]), trend_months=3, k=3, seed=1) is None


def test_a_declining_cluster_and_a_light_cluster_are_named_so():
    rng = np.random.default_rng(5)
    n = 3000
    kind = rng.choice(["declining", "light", "data"], n, p=[0.2, 0.3, 0.5])
    frame = pd.DataFrame(
        {
            "voice_out_min_m0": np.where(kind == "light", 2.0, 200.0) * rng.uniform(0.9, 1.1, n),
            "data_mb_m0": np.where(kind == "light", 10.0, np.where(kind == "data", 9000.0, 2000.0))
            * rng.uniform(0.9, 1.1, n),
            "sms_out_m0": np.where(kind == "light", 0.0, 20.0),
            "arpu_avg_3m": np.where(kind == "light", 3.0, 40.0) * rng.uniform(0.9, 1.1, n),
            "roaming_usage_share_m0": np.zeros(n),
            "night_usage_share_m0": rng.uniform(0.1, 0.2, n),
            "out_events_ratio_avg_3m": np.where(kind == "declining", 0.1, 1.0) * rng.uniform(0.95, 1.05, n),
        }
    )
    segments = fit_segments(frame, trend_months=3, k=3, seed=2)
    got = segments.assign(frame)
    want = pd.Series(kind).map({"declining": "declining", "light": "light user", "data": "data-heavy"})
    assert (got == want.to_numpy()).mean() > 0.98


def test_a_trend_window_of_four_months_reads_the_4m_columns():
    assert profile_columns(4)["spend"] == "arpu_avg_4m"
    assert profile_columns(4)["trend"] == "out_events_ratio_avg_4m"
    frame, _ = _usage(3000, 1, trend_months=4)
    assert "arpu_avg_3m" not in frame.columns
    assert fit_segments(frame, trend_months=3, k=3, seed=1) is None  # the 3-month columns are not there
    segments = fit_segments(frame, trend_months=4, k=3, seed=1)
    assert "arpu_avg_4m" in segments.columns and "out_events_ratio_avg_4m" in segments.columns
    assert not any(c.endswith("_3m") for c in segments.columns)
    assert sorted(segments.names) == ["data-heavy", "roamer", "voice-heavy"]
    test, test_kind = _usage(500, 2, trend_months=4)
    got = segments.assign(test[segments.columns])  # the fitted columns are all it reads
    assert (got == pd.Series(test_kind).map(NAMES).to_numpy()).mean() > 0.98
    # the spend column it reads is the 4-month one: a huge spend moves rows out of their planted segment
    rich = segments.assign(test.assign(arpu_avg_4m=1e9))
    assert (rich != got).mean() > 0.5
