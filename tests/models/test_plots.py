"""Model charts: drawn without pyplot, so nothing accumulates in its global state."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from models import plots


def test_charts_save_as_png_and_leave_no_open_pyplot_figure(tmp_path: Path):
    rng = np.random.default_rng(3)
    y = rng.random(2_000) < 0.1
    p = np.clip(0.1 + 0.3 * y + rng.normal(0, 0.1, len(y)), 0.001, 0.999)
    before = plt.get_fignums()
    figures = {
        "gains": plots.gains_chart(y, {"family": p, "pooled": rng.random(len(y))}),
        "calibration": plots.calibration_chart(y, {"family": p}),
        "scores": plots.score_distribution(y, p),
        "importance": plots.importance_chart({"a": {"x": 2.0, "y": 1.0}, "b": {"x": 1.0}}),
    }
    assert plt.get_fignums() == before
    assert [len(f.axes) for f in figures.values()] == [2, 1, 1, 2]
    lines = figures["gains"].axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["family", "pooled", "random"]
    for name, fig in figures.items():
        fig.savefig(tmp_path / f"{name}.png", dpi=50)
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
