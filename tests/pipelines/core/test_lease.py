"""Leases (one writer per table and month) and SIGTERM between commits, with real lease files, real
Delta tables in temp folders and real subprocesses (no Spark: the bridge writes driver rows itself)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import types as T

from pipelines.core import interrupt, lease
from pipelines.core.delta import WriteConflictError, read_arrow, table_history
from pipelines.core.lease import LeaseHeldError, LeaseKey
from tests.conftest import ROOT, TEST_CONF

SCHEMA = T.StructType([T.StructField("month", T.StringType()), T.StructField("worker", T.StringType())])


def _cfg(make_cfg, *extra: str):
    return make_cfg("lake.engine=bridge", *extra)


def _lease_file(cfg, key: str) -> Path:
    table, month = key.split("/")
    return Path(cfg.lake_root) / "_leases" / table / f"{'_table' if month == '*' else month}.json"


def _holder_process(cfg, keys: list[tuple[str, str | None]], seconds: float) -> subprocess.Popen:
    """A plain Python process that holds ``keys`` for ``seconds`` (prints ``held`` once it does)."""
    code = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from pipelines.core import lease
        from pipelines.core.config import load_config
        settings = ["lake.root={cfg.lake_root}", "landing.root={cfg.landing_root}"]
        cfg = load_config([{str(TEST_CONF)!r}], settings)
        keys = [lease.LeaseKey(t, m) for t, m in {keys!r}]
        with lease.hold(cfg, keys, None, "holder-job"):
            print("held", flush=True)
            time.sleep({seconds})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_lease_is_created_renewed_and_released(make_cfg):
    cfg = _cfg(make_cfg, "lake.lease.ttl_seconds=6")
    path = _lease_file(cfg, "warning_list/2024-05")
    with lease.hold(cfg, ["warning_list"], "2024-05", "score") as keys:
        assert keys == [LeaseKey("warning_list", "2024-05")]
        first = json.loads(path.read_text())
        assert first["owner"] == "score" and first["pid"] == os.getpid()
        assert first["host"] == socket.gethostname() and first["key"] == "warning_list/2024-05"
        assert 5.5 < first["expires"] - first["started"] <= 6.0
        # re-entrant: a write inside the stage finds the stage's lease and takes no other
        with lease.hold(cfg, ["warning_list"], "2024-05", "a write"):
            assert json.loads(path.read_text())["token"] == first["token"]
        assert path.exists()
        time.sleep(2.6)  # the heartbeat renews every third of the TTL
        renewed = json.loads(path.read_text())
        assert renewed["token"] == first["token"] and renewed["expires"] > first["expires"] + 1.5
    assert not path.exists()
    assert lease.holders(cfg) == []


def test_a_second_process_is_refused_with_the_holder_named(make_cfg):
    cfg = _cfg(make_cfg)
    holder = _holder_process(cfg, [("warning_list", "2024-05")], 30)
    try:
        with pytest.raises(LeaseHeldError) as err, lease.hold(cfg, ["warning_list"], "2024-05", "score"):
            pass
        line = str(err.value)
        assert line.startswith("warning_list/2024-05 is held by holder-job (pid ")
        assert f"pid {holder.pid} on {socket.gethostname()} since 20" in line
        assert err.value.exit_status == 75
        # another month of the same table is free
        with lease.hold(cfg, ["warning_list"], "2024-06", "score"):
            pass
        # the whole table conflicts with the month the other process holds
        with (
            pytest.raises(LeaseHeldError, match=r"warning_list/2024-05 is held by holder-job .*needed: war"),
            lease.hold(cfg, ["warning_list"], None, "ingest"),
        ):
            pass
        assert not _lease_file(cfg, "warning_list/*").exists()  # backed off, nothing left behind
    finally:
        holder.kill()
        holder.wait()


def test_a_table_wide_lease_blocks_every_month_of_its_table(make_cfg):
    cfg = _cfg(make_cfg)
    holder = _holder_process(cfg, [("cdr", None)], 30)
    try:
        with (
            pytest.raises(LeaseHeldError, match=r"^cdr/\* is held by holder-job"),
            lease.hold(cfg, ["cdr"], "2024-03", "ingest"),
        ):
            pass
        assert not _lease_file(cfg, "cdr/2024-03").exists()
        with lease.hold(cfg, ["billing"], "2024-03", "ingest"):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_a_second_writer_waits_up_to_wait_seconds(make_cfg):
    cfg = _cfg(make_cfg, "lake.lease.wait_seconds=30")
    holder = _holder_process(cfg, [("score_monitoring", "2024-05")], 1.5)
    t0 = time.monotonic()
    with lease.hold(cfg, ["score_monitoring"], "2024-05", "score"):
        waited = time.monotonic() - t0
        assert json.loads(_lease_file(cfg, "score_monitoring/2024-05").read_text())["owner"] == "score"
    assert holder.wait(10) == 0
    assert 0.5 < waited < 20


def test_a_killed_holders_lease_is_taken_over_at_once_with_a_warning(make_cfg, caplog):
    cfg = _cfg(make_cfg)
    holder = _holder_process(cfg, [("warning_list", "2024-05"), ("cdr", None)], 600)
    holder.send_signal(signal.SIGKILL)  # nothing runs on SIGKILL: the lease files stay, unexpired
    holder.wait()
    stale = json.loads(_lease_file(cfg, "warning_list/2024-05").read_text())
    assert stale["pid"] == holder.pid and stale["expires"] > time.time() + 60
    with caplog.at_level(logging.WARNING, logger="pipelines.core.lease"):
        with lease.hold(cfg, ["warning_list"], "2024-05", "score"):
            now = json.loads(_lease_file(cfg, "warning_list/2024-05").read_text())
            assert now["pid"] == os.getpid() and now["owner"] == "score"
        # a month of a table the dead process held whole: its table-wide lease is cleared too
        with lease.hold(cfg, ["cdr"], "2024-05", "ingest"):
            pass
    warnings = [r.getMessage() for r in caplog.records if "taking over the stale lease" in r.getMessage()]
    assert len(warnings) == 2
    assert f"holder-job (pid {holder.pid} on {socket.gethostname()}" in warnings[0]
    assert not _lease_file(cfg, "cdr/*").exists()


def test_an_expired_lease_of_another_host_is_taken_over(make_cfg):
    cfg = _cfg(make_cfg)
    path = _lease_file(cfg, "offer_assignments/2024-05")
    path.parent.mkdir(parents=True)
    old = {"owner": "match_offers", "pid": 1, "host": "elsewhere", "since": "x", "expires": time.time() - 1}
    path.write_text(json.dumps({**old, "token": "t"}))
    live = {**old, "expires": time.time() + 600, "token": "u"}
    other = _lease_file(cfg, "offer_assignments/2024-06")
    other.write_text(json.dumps(live))  # unexpired on another host: its pid cannot be checked here
    with lease.hold(cfg, ["offer_assignments"], "2024-05", "match_offers"):
        assert json.loads(path.read_text())["host"] == socket.gethostname()
    with (
        pytest.raises(LeaseHeldError, match="held by match_offers \\(pid 1 on elsewhere since x\\)"),
        lease.hold(cfg, ["offer_assignments"], "2024-06", "match_offers"),
    ):
        pass


_RACER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from pyspark.sql import types as T
from pipelines.core import lease
from pipelines.core.config import load_config
from pipelines.core.lake import Lake
cfg = load_config([{conf!r}], [{settings}])
lake = Lake(None, cfg)
schema = T.StructType([T.StructField("month", T.StringType()), T.StructField("worker", T.StringType())])
sync, name = Path({sync!r}), {name!r}
(sync / f"ready-{{name}}").touch()
for i in range({rounds}):
    month = f"2031-{{i + 1:02d}}" if i < 12 else f"2032-{{i - 11:02d}}"
    go = sync / f"go-{{i}}"
    while not go.exists():
        time.sleep(0.002)
    held = ["campaign_feedback"] if {stage_lease} else []
    try:
        with lease.hold(cfg, held, month, name):
            rows = [(month, name)] * 3
            lake.replace_rows(rows, schema, "campaign_feedback", {{"month": [month]}})
            time.sleep({linger})
        outcome = "won"
    except Exception as exc:
        outcome = f"lost {{type(exc).__name__}}: {{exc}}"
    (sync / f"{{name}}-{{i}}").write_text(outcome)
"""


def _race(cfg, tmp_path: Path, rounds: int, *, stage_lease: bool, linger: float, extra: list[str]):
    sync = tmp_path / "sync"
    sync.mkdir()
    settings = ", ".join(
        repr(s) for s in [f"lake.root={cfg.lake_root}", f"landing.root={cfg.landing_root}", *extra]
    )
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _RACER.format(
                    root=str(ROOT),
                    conf=str(TEST_CONF),
                    settings=settings,
                    sync=str(sync),
                    name=name,
                    rounds=rounds,
                    stage_lease=stage_lease,
                    linger=linger,
                ),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    results = []
    try:
        deadline = time.monotonic() + 120
        while not all((sync / f"ready-{n}").exists() for n in "ab"):  # both imported and waiting
            assert time.monotonic() < deadline, [p.poll() for p in procs]
            time.sleep(0.01)
        for i in range(rounds):
            (sync / f"go-{i}").touch()
            deadline = time.monotonic() + 60
            while not all((sync / f"{n}-{i}").exists() for n in "ab"):
                assert time.monotonic() < deadline, [p.poll() for p in procs]
                time.sleep(0.01)
            time.sleep(0.05)
            results.append({n: (sync / f"{n}-{i}").read_text() for n in "ab"})
    finally:
        for p in procs:
            p.wait(60)
    assert [p.returncode for p in procs] == [0, 0], [p.stderr.read() for p in procs if p.stderr]
    return results


def test_two_processes_racing_for_an_empty_partition_one_wins_one_loses_clearly(make_cfg, tmp_path):
    cfg = _cfg(make_cfg)
    rounds = 20
    results = _race(cfg, tmp_path, rounds, stage_lease=True, linger=0.4, extra=["lake.engine=bridge"])
    rows = read_arrow(cfg.table_path("campaign_feedback")).to_pylist()
    for i, outcome in enumerate(results):
        month = f"2031-{i + 1:02d}" if i < 12 else f"2032-{i - 11:02d}"
        winners = [n for n, o in outcome.items() if o == "won"]
        assert len(winners) == 1, (i, outcome)  # exactly one clear loser each time ...
        (loser,) = [o for o in outcome.values() if o != "won"]
        # ... whose one line names the table, the month and the holder
        expected = f"lost LeaseHeldError: campaign_feedback/{month} is held by {winners[0]} (pid "
        assert loser.startswith(expected), loser
        assert "\n" not in loser
        # 0 duplicate rows: the partition holds the winner's three rows only
        assert sorted(r["worker"] for r in rows if r["month"] == month) == [winners[0]] * 3
    assert len(rows) == 3 * rounds
    assert not list((Path(cfg.lake_root) / "_leases").glob("*/*.json"))


def test_without_leases_a_conflicting_partition_overwrite_fails_instead_of_duplicating(make_cfg, tmp_path):
    cfg = _cfg(make_cfg)
    rounds = 20
    extra = ["lake.engine=bridge", "lake.lease.enabled=false"]
    results = _race(cfg, tmp_path, rounds, stage_lease=False, linger=0, extra=extra)
    rows = read_arrow(cfg.table_path("campaign_feedback")).to_pylist()
    for i, outcome in enumerate(results):
        month = f"2031-{i + 1:02d}" if i < 12 else f"2032-{i - 11:02d}"
        workers = sorted(r["worker"] for r in rows if r["month"] == month)
        assert len(workers) == 3 and len(set(workers)) == 1, (outcome, workers)  # never both sets
        for o in outcome.values():
            assert o == "won" or o.startswith("lost WriteConflictError: write to "), o


def _bridge_write(path: str, rows, mode: str, partitions, stage_hook):
    """A bridge write of driver rows with ``stage_hook`` run after it planned, before it commits (where
    another writer's commit would land)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.core.delta.files import _arrow_schema
    from pipelines.core.delta.table import _fs
    from pipelines.core.delta.write import _plan_write, _write_bridge

    plan = _plan_write(SCHEMA, path, mode, ["month"], partitions, False)
    table = pa.Table.from_pylist([dict(zip(SCHEMA.fieldNames(), r, strict=True)) for r in rows])

    def stage(staging: str, _: str) -> None:
        stage_hook()
        fs = _fs(path)[0]
        for month in sorted({r[0] for r in rows}):
            part = table.filter(pa.compute.equal(table["month"], month)).drop_columns(["month"])
            fs.create_dir(f"{staging}/month={month}", recursive=True)
            part = part.cast(_arrow_schema(T.StructType(SCHEMA.fields[1:])))
            pq.write_table(part, f"{staging}/month={month}/part-0.parquet", filesystem=fs)

    return _write_bridge(path, plan, mode, partitions, None, stage)


def test_an_overwrite_fails_when_another_commit_touched_its_partitions_after_it_planned(tmp_path):
    from pipelines.core.delta import write_rows

    path = str(tmp_path / "t")
    write_rows(None, [("2024-01", "seed")], SCHEMA, path, partition_by=["month"], engine="bridge")

    def other_writer() -> None:  # another process fills the still empty partition meanwhile
        write_rows(None, [("2024-02", "other")], SCHEMA, path, engine="bridge")

    with pytest.raises(WriteConflictError, match=r"month=\['2024-02'\] changed after version 0 \(now 1\)"):
        _bridge_write(path, [("2024-02", "ours")], "overwrite", {"month": ["2024-02"]}, other_writer)
    assert sorted((r["month"], r["worker"]) for r in read_arrow(path).to_pylist()) == [
        ("2024-01", "seed"),
        ("2024-02", "other"),
    ]
    assert DeltaTable(path).version() == 1
    # nothing of the failed write is left in the table's folder
    assert len(list((tmp_path / "t" / "month=2024-02").iterdir())) == 1


def test_the_version_returned_is_our_commit_under_a_concurrent_writer(tmp_path):
    from pipelines.core.delta import write_rows

    path = str(tmp_path / "t")
    write_rows(None, [("2024-01", "seed")], SCHEMA, path, partition_by=["month"], engine="bridge")

    def other_writer() -> None:  # commits to another partition: no conflict, but it takes version 1
        write_rows(None, [("2024-03", "other")], SCHEMA, path, engine="bridge")

    result = _bridge_write(path, [("2024-02", "ours")], "overwrite", {"month": ["2024-02"]}, other_writer)
    assert result.version == 2 and result.rows_added == 1
    ours = next(h for h in table_history(path) if h["version"] == result.version)
    assert ours["operationParameters"]["mode"] == "Overwrite"
    # a commit after ours does not change what our write reports
    later = write_rows(None, [("2024-04", "later")], SCHEMA, path, engine="bridge")
    assert later.version == 3 and result.version == 2
    assert {r["worker"] for r in read_arrow(path).to_pylist()} == {"seed", "ours", "other", "later"}


def test_a_lake_write_takes_the_lease_of_the_month_it_replaces(make_cfg):
    from pipelines.core.lake import Lake, lease_keys

    assert lease_keys("cdr", "append", None) == []
    assert lease_keys("warning_list", "overwrite", {"score_month": ["2024-05"]}) == [
        LeaseKey("warning_list", "2024-05")
    ]
    assert lease_keys("quarantine", "overwrite", {"source": ["cdr"], "month": ["2024-05"]}) == [
        LeaseKey("quarantine", "2024-05")
    ]
    assert lease_keys("labels_monthly", "overwrite", None) == [LeaseKey("labels_monthly")]
    cfg = _cfg(make_cfg)
    holder = _holder_process(cfg, [("campaign_feedback", "2024-05")], 30)
    lake = Lake(None, cfg)
    try:
        with pytest.raises(LeaseHeldError, match="campaign_feedback/2024-05 is held by holder-job"):
            lake.replace_rows([("2024-05", "x")], SCHEMA, "campaign_feedback", {"month": ["2024-05"]})
        assert not lake.exists("campaign_feedback")
        lake.replace_rows([("2024-06", "x")], SCHEMA, "campaign_feedback", {"month": ["2024-06"]})
        lake.write_rows([("2024-05", "appended")], SCHEMA, "campaign_feedback")  # appends need no lease
        assert lake.version("campaign_feedback") == 1
    finally:
        holder.kill()
        holder.wait()


def test_sigterm_inside_a_commit_lets_it_finish_then_stops(tmp_path):
    previous = signal.getsignal(signal.SIGTERM)
    interrupt.install()
    try:
        with pytest.raises(interrupt.Terminated), interrupt.commit_section():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
            finished = True  # still running: the commit goes on to its end
        assert finished
    finally:
        signal.signal(signal.SIGTERM, previous)
        interrupt.reset()


_JOB = """
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from pyspark.sql import types as T
from pipelines.core.lake import Lake
from pipelines.core.manifest import recorded_run
from pipelines.core.runner import job_parser, run_job

schema = T.StructType([T.StructField("month", T.StringType()), T.StructField("worker", T.StringType())])

def body(args, cfg):
    from pipelines.core.spark import get_spark

    lake = Lake(get_spark(cfg), cfg)  # a job's session (the run record's schema is parsed by Spark)
    with recorded_run(lake, "score", args.month):
        for i in range(10_000):
            rows = [(args.month, str(i))] * 2
            lake.replace_rows(rows, schema, "campaign_feedback", {{"month": [args.month]}})
            lake.write_rows([("log", str(i))], schema, "score_monitoring")
            if i == 3:
                print("writing", flush=True)

sys.exit(run_job("score", job_parser("test job"), body, sys.argv[1:]))
"""


def test_a_job_given_sigterm_stops_between_commits_and_records_the_run_as_interrupted(make_cfg):
    cfg = _cfg(make_cfg)
    args = ["--month", "2024-05", "--conf", str(TEST_CONF)]
    args += ["--set", f"lake.root={cfg.lake_root}", "--set", "lake.engine=bridge"]
    proc = subprocess.Popen(
        [sys.executable, "-c", _JOB.format(root=str(ROOT)), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing", proc.stderr
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == (
        "ERROR score: stopped by SIGTERM between commits; the run is recorded as interrupted"
    )
    runs = read_arrow(cfg.table_path("pipeline_runs")).to_pylist()
    assert [(r["stage"], r["status"]) for r in runs] == [("score", "interrupted")]
    assert runs[0]["error"].startswith("Terminated")
    # every commit is whole: the partition holds one write's two rows; both tables readable
    rows = read_arrow(cfg.table_path("campaign_feedback")).to_pylist()
    assert len(rows) == 2 and rows[0]["worker"] == rows[1]["worker"]
    assert len(read_arrow(cfg.table_path("score_monitoring")).to_pylist()) >= 4
    assert not list((Path(cfg.lake_root) / "_leases").glob("*/*.json"))  # released on the way out


def test_sigterm_during_a_write_lets_its_commit_finish_and_keeps_its_files(tmp_path):
    from pipelines.core.delta import write_rows

    path = str(tmp_path / "t")
    write_rows(None, [("2024-01", "seed")], SCHEMA, path, partition_by=["month"], engine="bridge")
    previous = signal.getsignal(signal.SIGTERM)
    interrupt.install()
    try:

        def terminate() -> None:  # SIGTERM arrives while the write stages its files
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)

        with pytest.raises(interrupt.Terminated):
            _bridge_write(path, [("2024-02", "ours")], "overwrite", {"month": ["2024-02"]}, terminate)
    finally:
        signal.signal(signal.SIGTERM, previous)
        interrupt.reset()
    # the commit went through whole, and its files stayed: the table reads at the new version
    assert DeltaTable(path).version() == 1
    assert sorted((r["month"], r["worker"]) for r in read_arrow(path).to_pylist()) == [
        ("2024-01", "seed"),
        ("2024-02", "ours"),
    ]


def test_threads_of_one_process_share_a_lease_none_refused(make_cfg):
    from concurrent.futures import ThreadPoolExecutor

    cfg = _cfg(make_cfg)

    def write(i: int) -> str:  # ingest's sources write quarantine of one month side by side
        key = ["quarantine"] if i % 3 else [LeaseKey("quarantine")]
        with lease.hold(cfg, key, "2024-03", "ingest"):
            time.sleep(0.001)
        return "ok"

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(write, range(400))) == ["ok"] * 400
    assert not list((Path(cfg.lake_root) / "_leases").glob("*/*.json"))
