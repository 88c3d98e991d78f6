"""The closed-loop job's --fresh: it empties a demo lake and refuses any other (no Spark)."""

from __future__ import annotations

import pytest

from pipelines.closed_loop import DEMO_MARKER, reset_demo_roots


def test_fresh_empties_a_demo_lake_but_keeps_its_logs(make_cfg, tmp_path):
    cfg = make_cfg()
    lake = tmp_path / "lake"
    (lake / "warning_list").mkdir(parents=True)
    (lake / "_logs").mkdir()
    (lake / "_logs" / "closed_loop.log").write_text("kept")
    (lake / DEMO_MARKER).write_text("")
    (tmp_path / "landing" / "cdr").mkdir(parents=True)
    reset_demo_roots(cfg)
    assert sorted(p.name for p in lake.iterdir()) == sorted([DEMO_MARKER, "_logs"])
    assert (lake / "_logs" / "closed_loop.log").read_text() == "kept"
    assert not (tmp_path / "landing").exists()


def test_fresh_refuses_a_lake_it_did_not_create(make_cfg, tmp_path):
    cfg = make_cfg()
    (tmp_path / "lake" / "features_monthly").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"refusing to empty .* not a demo lake"):
        reset_demo_roots(cfg)
    assert (tmp_path / "lake" / "features_monthly").is_dir()
