"""The closed-loop job's --fresh: it empties only folders the demo created (marked with
:data:`DEMO_MARKER`), refuses any other before deleting anything, and never removes an operator's landing
(no Spark: the refusal comes before the session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.closed_loop import DEMO_MARKER, NotADemoFolderError, reset_demo_roots
from tests.conftest import job_args


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_fresh_creates_and_marks_missing_roots(make_cfg, tmp_path):
    reset_demo_roots(make_cfg())
    assert tree(tmp_path) == sorted(["lake", f"lake/{DEMO_MARKER}", "landing", f"landing/{DEMO_MARKER}"])


def test_fresh_empties_marked_roots_but_keeps_the_lake_logs(make_cfg, tmp_path):
    cfg = make_cfg()
    lake, landing = tmp_path / "lake", tmp_path / "landing"
    (lake / "warning_list" / "_delta_log").mkdir(parents=True)
    (lake / "_logs").mkdir()
    (lake / "_logs" / "closed_loop.log").write_text("kept")
    (landing / "cdr" / "month=2024-01").mkdir(parents=True)
    (landing / "cdr" / "month=2024-01" / "cdr.csv").write_text("msisdn\n")
    for root in (lake, landing):
        (root / DEMO_MARKER).write_text("")
    reset_demo_roots(cfg)
    assert tree(tmp_path) == sorted(
        [
            "lake",
            f"lake/{DEMO_MARKER}",
            "lake/_logs",
            "lake/_logs/closed_loop.log",
            "landing",
            f"landing/{DEMO_MARKER}",
        ]
    )
    assert (lake / "_logs" / "closed_loop.log").read_text() == "kept"


def test_fresh_adopts_an_empty_landing_and_a_lake_holding_only_logs(make_cfg, tmp_path):
    (tmp_path / "lake" / "_logs").mkdir(parents=True)
    (tmp_path / "landing").mkdir()
    reset_demo_roots(make_cfg())
    assert (tmp_path / "lake" / DEMO_MARKER).is_file() and (tmp_path / "landing" / DEMO_MARKER).is_file()


def test_fresh_refuses_a_lake_it_did_not_create(make_cfg, tmp_path):
    (tmp_path / "lake" / "features_monthly").mkdir(parents=True)
    (tmp_path / "landing" / DEMO_MARKER).parent.mkdir()
    (tmp_path / "landing" / DEMO_MARKER).write_text("")
    (tmp_path / "landing" / "cdr").mkdir()
    before = tree(tmp_path)
    with pytest.raises(NotADemoFolderError) as err:
        reset_demo_roots(make_cfg())
    assert str(err.value) == (
        f"refusing to empty {tmp_path / 'lake'}: the demo did not create it (no {DEMO_MARKER}); "
        "point lake.root elsewhere, or empty it yourself"
    )
    assert tree(tmp_path) == before  # not even the marked landing was emptied


def test_fresh_never_deletes_an_operators_landing_whatever_the_lake_looks_like(make_cfg, tmp_path):
    lake, landing = tmp_path / "lake", tmp_path / "landing"
    (lake / "warning_list").mkdir(parents=True)
    (lake / DEMO_MARKER).write_text("")  # a demo lake beside a real delivery
    (landing / "billing" / "month=2024-05").mkdir(parents=True)
    (landing / "billing" / "month=2024-05" / "billing.csv").write_text("real delivery\n")
    before = tree(tmp_path)
    with pytest.raises(NotADemoFolderError, match=f"refusing to empty {landing}: .*point landing.root"):
        reset_demo_roots(make_cfg())
    assert tree(tmp_path) == before
    assert (landing / "billing" / "month=2024-05" / "billing.csv").read_text() == "real delivery\n"


def test_the_job_refuses_in_one_line_with_exit_status_2(make_cfg, tmp_path, capsys):
    from jobs.closed_loop import main

    cfg = make_cfg()
    (tmp_path / "landing" / "care").mkdir(parents=True)
    (tmp_path / "landing" / "care" / "care.csv").write_text("operator's file\n")
    status = main(["--months", "2024-01..2024-02", "--fresh", *job_args(cfg)])
    assert status == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ERROR")]
    assert errors == [
        f"ERROR closed_loop: NotADemoFolderError: refusing to empty {tmp_path / 'landing'}: the demo did not "
        f"create it (no {DEMO_MARKER}); point landing.root elsewhere, or empty it yourself"
    ]
    assert (tmp_path / "landing" / "care" / "care.csv").read_text() == "operator's file\n"
