"""The monthly job on a real Spark standalone cluster (a master and a worker on 127.0.0.1, started from the
installed pyspark), the package shipped to the executors with --py-files: every table it writes equals the
local-mode run's over the same landing files."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.conftest import LOOP_SETTINGS, ROOT, TEST_CONF

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

MONTHS = "2024-01..2024-05"  # ingest, build features, train as of 05, score, evaluate and match 05
# columns that record when or by which run a row was written, not what it says
LINEAGE = {"ingested_at", "run_id", "scored_at", "assigned_at", "built_at", "evaluated_at", "source_file"}
COMPARED = {  # every table the five months write, as of 05 (the local lake went on to 08)
    "subscriptions": "month <= '2024-05'",
    "cdr": "delivery_month <= '2024-05'",
    "billing": "bill_month <= '2024-05'",
    "care": "month <= '2024-05'",
    "campaign_outcomes": "month <= '2024-05'",
    "quarantine": "month <= '2024-05'",
    "features_monthly": "month <= '2024-05'",
    "labels_monthly": "month <= '2024-03'",  # the months whose labels matured by 05
    "warning_list": "score_month = '2024-05'",
    "customer_risk": "score_month = '2024-05'",
    "score_monitoring": "score_month = '2024-05'",
    "offer_assignments": "score_month = '2024-05'",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def _start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "SPARK_HOME": str(_spark_home()), "PYSPARK_PYTHON": sys.executable}
    return subprocess.Popen(
        [str(_spark_home() / "bin" / "spark-class"), *args],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,  # its own process group: stopped with everything it started
    )


def _alive_workers(ui_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as r:
            return int(json.load(r).get("aliveworkers", 0))
    except OSError:
        return 0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A standalone master and one worker (2 cores, 6 GB); stopped afterwards, even on failure."""
    logs = tmp_path_factory.mktemp("cluster_logs")
    port, ui, worker_ui = _free_port(), _free_port(), _free_port()
    procs = [
        _start(
            [
                "org.apache.spark.deploy.master.Master",
                *("--host", "127.0.0.1", "--port", str(port)),
                *("--webui-port", str(ui)),
            ],
            logs / "master.log",
        )
    ]
    try:
        procs.append(
            _start(
                [
                    "org.apache.spark.deploy.worker.Worker",
                    f"spark://127.0.0.1:{port}",
                    *("--host", "127.0.0.1", "--cores", "2", "--memory", "6g"),
                    *("--webui-port", str(worker_ui), "--work-dir", str(logs / "work")),
                ],
                logs / "worker.log",
            )
        )
        deadline = time.monotonic() + 120
        while _alive_workers(ui) < 1:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                pytest.fail(
                    f"the standalone cluster did not start: {(logs / 'master.log').read_text()[-2000:]}"
                )
            time.sleep(1)
        yield f"spark://127.0.0.1:{port}", logs
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def _package(dest: Path) -> Path:
    """The project's Python packages as one zip for --py-files (what `make package` builds)."""
    out = dest / "churnlake.zip"
    with zipfile.ZipFile(out, "w") as z:
        for package in ("pipelines", "features", "models", "jobs"):
            for path in sorted((ROOT / package).rglob("*.py")):
                z.write(path, path.relative_to(ROOT))
    return out


def _value(v):
    """Doubles to 10 significant digits: sums over differently partitioned rows differ in the last bits."""
    if isinstance(v, float):
        return f"{v:.10g}"
    if isinstance(v, list | tuple):
        return tuple(_value(x) for x in v)
    if hasattr(v, "asDict"):
        return tuple((k, _value(x)) for k, x in v.asDict().items())
    return v


def _rows(lake, table: str, where: str) -> list[tuple]:
    df = lake.read(table).where(where)
    columns = sorted(c for c in df.columns if c not in LINEAGE)
    return sorted((tuple(_value(v) for v in row) for row in df.select(*columns).collect()), key=repr)


def test_the_monthly_job_on_a_standalone_cluster_equals_the_local_run(cluster, loop_lake, spark, tmp_path):
    from pipelines.core.config import load_config
    from pipelines.core.lake import Lake

    master, logs = cluster
    local_lake, local_cfg = loop_lake.lake, loop_lake.cfg
    settings = [f"lake.root={tmp_path / 'lake'}", f"landing.root={local_cfg.landing_root}", *LOOP_SETTINGS]
    submit = [
        str(_spark_home() / "bin" / "spark-submit"),
        "--master",
        master,
        "--py-files",
        str(_package(tmp_path)),
        "--conf",
        "spark.executor.memory=3g",
        "--conf",
        "spark.driver.memory=3g",
        "--conf",
        f"spark.pyspark.python={sys.executable}",
        str(ROOT / "jobs" / "monthly.py"),
        "--months",
        MONTHS,
        "--conf",
        str(TEST_CONF),
        *(x for s in settings for x in ("--set", s)),
    ]
    env = {**os.environ, "SPARK_HOME": str(_spark_home()), "PYSPARK_PYTHON": sys.executable}
    env.pop("PYSPARK_GATEWAY_PORT", None)
    out = subprocess.run(submit, capture_output=True, text=True, timeout=1800, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    # before their Python tasks read the landing files and wrote the lake's, the executors were seen to see
    # both folders
    (job_log,) = (tmp_path / "lake" / "_logs").glob("monthly-*.log")
    seen = f"INFO pipelines.core.spark: executors on {socket.gethostname()} see"
    for folder in (tmp_path / "lake", local_cfg.landing_root):
        assert f"{seen} {folder}\n" in job_log.read_text(), folder
    # the application really ran on the cluster's executors
    apps = list((logs / "work").glob("app-*"))
    assert apps, "no application ran on the worker"
    cluster_lake = Lake(spark, load_config([TEST_CONF], settings))
    for table, where in COMPARED.items():
        assert _rows(cluster_lake, table, where) == _rows(local_lake, table, where), table
