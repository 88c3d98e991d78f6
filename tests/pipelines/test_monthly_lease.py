"""``monthly`` fired twice at once on a small fresh lake: one run completes, the other stops with exit
status 75 and one line naming the lease and its holder (real jobs in subprocesses, real Spark)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from pipelines.core.delta import read_arrow
from tests.conftest import ROOT, cfg_at, job_args

pytestmark = [pytest.mark.slow]


def test_monthly_fired_twice_one_completes_the_other_exits_75_naming_the_holder(tmp_path):
    from pipelines.sample_data.writer import GenerateOptions, generate

    months = ("2024-01", "2024-02")
    generate(tmp_path / "landing", GenerateOptions(months=months, subscribers=300, seed=5))
    cfg = cfg_at(tmp_path / "lake", tmp_path / "landing")
    job = [sys.executable, str(ROOT / "jobs" / "monthly.py")]
    command = [*job, "--months", "2024-01..2024-02", *job_args(cfg)]
    procs = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [p.communicate(timeout=900)[1] for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 75], errs
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    last = errs[loser].strip().splitlines()[-1]
    pattern = (
        rf"^ERROR monthly: LeaseHeldError: monthly/2024-0[12] is held by monthly "
        rf"\(pid {procs[winner].pid} on \S+ since \d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)$"
    )
    assert re.match(pattern, last), last
    # the winner ran every stage of both months once; the loser committed no stage run
    runs = read_arrow(cfg.table_path("pipeline_runs")).to_pylist()
    ran = sorted((r["month"], r["stage"], r["scope"]) for r in runs if r["status"] == "success")
    assert len(ran) == len(set(ran))
    assert {(m, s) for m, s, _ in ran} == {(m, s) for m in months for s in ("ingest", "build_features")}
    assert not [r for r in runs if r["status"] in ("failed", "interrupted")]
    assert not list((tmp_path / "lake" / "_leases").glob("*/*.json"))
