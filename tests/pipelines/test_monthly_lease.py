"""``monthly`` fired twice at once on a small fresh lake: one run completes, the other stops with exit
status 75 and one line naming the lease and its holder (real jobs in subprocesses, real Spark).

Whole monthly runs in subprocesses, beside the kill tests: ``make test-e2e``."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from pipelines.core.delta import read_arrow
from tests.conftest import ROOT, cfg_at, job_args

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

STAGES_RUN = ("ingest", "build_features", "housekeeping")  # no champion: nothing else runs


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
    assert {(m, s) for m, s, _ in ran} == {(m, s) for m in months for s in STAGES_RUN}
    assert not [r for r in runs if r["status"] in ("failed", "interrupted")]
    assert not list((tmp_path / "lake" / "_leases").glob("*/*.json"))


def test_monthly_given_sigterm_stops_records_interrupted_and_a_rerun_completes(tmp_path):
    import signal
    import time

    from pipelines.sample_data.writer import GenerateOptions, generate

    generate(tmp_path / "landing", GenerateOptions(months=("2024-01",), subscribers=300, seed=5))
    cfg = cfg_at(tmp_path / "lake", tmp_path / "landing")
    command = [sys.executable, str(ROOT / "jobs" / "monthly.py"), "--month", "2024-01", *job_args(cfg)]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # progress lines: stop it once ingest is under way
        seen.append(line)
        if "2024-01 ingest ..." in line:
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    assert proc.wait(300) == 143, "".join(seen) + rest
    assert rest.strip().splitlines()[-1] == (
        "ERROR monthly: stopped by SIGTERM between commits; the run is recorded as interrupted"
    )
    runs = read_arrow(cfg.table_path("pipeline_runs")).to_pylist()
    interrupted = [(r["stage"], r["flags"]) for r in runs if r["status"] == "interrupted"]
    assert ("monthly", '{"interrupted_during": "ingest"}') in interrupted
    assert not [r for r in runs if r["stage"] == "build_features"]
    # every table written so far opens at a whole commit; nothing is left leased
    tables = [f for f in (tmp_path / "lake").iterdir() if (f / "_delta_log").is_dir()]
    assert "pipeline_runs" in {f.name for f in tables}
    for folder in tables:
        read_arrow(str(folder))  # a damaged table (a half-written commit) raises
    assert not list((tmp_path / "lake" / "_leases").glob("*/*.json"))
    # the rerun finishes the month
    out = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    runs = read_arrow(cfg.table_path("pipeline_runs")).to_pylist()
    assert {r["stage"] for r in runs if r["status"] == "success"} == set(STAGES_RUN)
