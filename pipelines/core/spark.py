"""The one Spark session factory, driven by config.

Locally it starts ``local[2]`` with settings sized for a small machine. Under ``spark-submit`` (or any
already running session) it keeps the master and resources that were set there and only applies the
SQL settings the pipeline relies on (UTC, Arrow, microsecond Parquet timestamps).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import uuid

from pyspark.sql import SparkSession

from pipelines.core.config import PROJECT_ROOT, Config, local_path

log = logging.getLogger(__name__)

# Settings the pipeline's correctness depends on, applied in every mode.
_REQUIRED_SQL_CONF = {
    "spark.sql.session.timeZone": "UTC",
    # Landing Parquet from pandas/pyarrow holds nanosecond timestamps, which Spark cannot read as
    # timestamps: read them as epoch longs, which ingest converts (pipelines.ingest).
    "spark.sql.legacy.parquet.nanosAsLong": "true",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
    # Delta readers expect INT64 microsecond timestamps, not Spark's legacy INT96.
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.parquet.compression.codec": "snappy",
    "spark.sql.sources.partitionOverwriteMode": "static",
    "spark.sql.ansi.enabled": "false",
    # A union of children partitioned alike would otherwise run all of them in one task (partition i
    # of every child), adding up their memory consumers: the feature families' union
    # (features.build.combine_families) must run each family in its own tasks.
    "spark.sql.unionOutputPartitioning": "false",
}


def under_spark_submit() -> bool:
    """True when this Python process was launched by spark-submit (the JVM started first)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


# Spark's whole-stage code generation writes one method per query stage; a wide stage (ingest's
# validation of a dozen columns) exceeds HotSpot's 8,000-byte limit for compiling a method, so by
# default it runs interpreted, several times slower than compiled.
JIT_HUGE_METHODS = "-XX:-DontCompileHugeMethods"


def _driver_java_options() -> str:
    """Huge generated methods compiled; Derby out of the working folder; Spark's console log quiet
    (``conf/log4j2.properties``)."""
    options = f"{JIT_HUGE_METHODS} -Dderby.system.home=/tmp/derby"
    log4j = PROJECT_ROOT / "conf" / "log4j2.properties"
    return f"{options} -Dlog4j2.configurationFile={log4j}" if log4j.exists() else options


def get_spark(cfg: Config) -> SparkSession:
    """Build (or join) the Spark session described by ``cfg.spark``."""
    # Python workers must run this interpreter: system Pythons may lack pyarrow for Arrow UDFs.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(cfg.spark.app_name)
    local = not under_spark_submit() and SparkSession.getActiveSession() is None
    if local:
        builder = (
            builder.master(cfg.spark.master)
            .config("spark.driver.memory", cfg.spark.driver_memory)
            .config("spark.ui.enabled", str(cfg.spark.ui_enabled).lower())
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.pyspark.python", sys.executable)
            .config("spark.driver.extraJavaOptions", _driver_java_options())
            .config("spark.sql.warehouse.dir", "/tmp/spark-warehouse")
            # PySpark otherwise records the Python call site of every DataFrame call for error messages:
            # 7,000 of a demo month's 17,000 JVM round trips in the feature build (a static setting)
            .config("spark.python.sql.dataFrameDebugging.enabled", "false")
        )
    settings = {
        "spark.sql.shuffle.partitions": str(cfg.spark.shuffle_partitions),
        **_REQUIRED_SQL_CONF,
        # Hadoop file systems set the modes of what Spark writes from their own umask (022 by default), not
        # the process's: the one of privacy.file_mode / dir_mode, copied into every write's Hadoop conf
        "fs.permissions.umask-mode": f"{cfg.privacy.umask:03o}",
        **cfg.spark.conf,
    }
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    _apply_settings(spark, settings)
    spark.sparkContext.setLogLevel("WARN")
    log.info("Spark %s, master=%s", spark.version, spark.sparkContext.master)
    return spark


def _apply_settings(spark: SparkSession, settings: dict[str, str]) -> None:
    """Make sure every setting holds on the session; warn (naming it) where one cannot be applied.

    ``getOrCreate`` on a running session (spark-submit, a notebook, the test fixture) ignores builder
    settings, and core settings such as ``spark.buffer.pageSize`` are read only when the JVM starts:
    those must be passed to spark-submit (``--conf key=value``). A silently ignored setting is how a
    memory fix quietly stops applying, so it is never silent.
    """
    for key, value in settings.items():
        current = spark.conf.get(key, None)
        if current is not None and current.lower() == str(value).lower():
            continue
        try:
            spark.conf.set(key, value)
        except Exception as exc:  # static or core settings of a running session cannot change
            log.warning(
                "Spark setting %s=%s not applied (the running session has %s: %s); pass it when the "
                "session starts, e.g. spark-submit --conf %s=%s",
                key,
                value,
                current,
                str(exc).splitlines()[0][:120],
                key,
                value,
            )


class FolderNotSharedError(RuntimeError):
    """The driver and Spark's executors do not see the same folder (a cluster with a lake on the driver's
    own disk)."""


def hosts_seeing(spark: SparkSession, path: str) -> dict[str, bool]:
    """Per executor host, whether the local file ``path`` exists there (on every task that ran there); a
    few tasks per core, so that every executor most likely runs one."""
    slots = max(1, spark.sparkContext.defaultParallelism)

    def seen(_: object) -> tuple[str, bool]:
        return socket.gethostname(), os.path.exists(path)

    hosts: dict[str, bool] = {}
    for host, found in spark.sparkContext.parallelize(range(2 * slots), 2 * slots).map(seen).collect():
        hosts[host] = hosts.get(host, True) and found
    return dict(sorted(hosts.items()))


def on_cluster(spark: SparkSession) -> bool:
    """True when Spark's executors may run on other machines than the driver (a non-local master)."""
    return not spark.sparkContext.master.startswith("local")


def check_seen(spark: SparkSession, path: str, what: str) -> None:
    """On a cluster, raise :class:`FolderNotSharedError` unless the executors see the local file ``path``
    the driver sees (``what``: the folder it stands for, named in the message). A local master or an
    object store path needs no check."""
    local = local_path(path)
    if local is None or not on_cluster(spark):
        return
    hosts = hosts_seeing(spark, local)
    missing = [host for host, seen in hosts.items() if not seen]
    if missing:
        raise FolderNotSharedError(
            f"{what} is on the driver's disk only: executors on {', '.join(missing)} do not see {local}. "
            "On a cluster, landing.root and lake.root must be folders every node mounts at the same path "
            "(NFS, a shared volume); lake.root may also be an object store URI"
        )
    log.info("executors on %s see %s", ", ".join(hosts), what)


def require_seen(path: str, what: str) -> None:
    """In a Python task: raise :class:`FolderNotSharedError` unless this machine sees ``path`` (a local
    file or folder the driver made or listed before the tasks started; ``what`` says which, for the
    message). The driver's checks probe the executors running when a job starts; this one covers those
    that joined later, which would otherwise read nothing or write on their own disk."""
    if not os.path.exists(path):
        raise FolderNotSharedError(
            f"the executor on {socket.gethostname()} does not see {path} ({what}). On a cluster, "
            "landing.root and lake.root must be folders every node mounts at the same path (NFS, a shared "
            "volume); lake.root may also be an object store URI"
        )


def check_folder_shared(spark: SparkSession, folder: str) -> None:
    """On a cluster, raise :class:`FolderNotSharedError` unless the executors see the local ``folder``
    (a path or ``file://`` URI) as the driver does: a probe file the driver writes there, looked for by a
    few tasks per core.

    Python tasks write the lake's staged files with pyarrow's local filesystem and the driver commits
    them: files written to an executor's own disk would surface as a missing path at commit. Checked at
    each call (executors can join later), not cached; the tasks check again for executors that join after
    it (:func:`require_seen`). Local masters and object stores need no check.
    """
    local = local_path(folder)
    if local is None or not on_cluster(spark):
        return
    os.makedirs(local, exist_ok=True)
    probe = os.path.join(local, f"_shared-probe-{uuid.uuid4().hex}")
    try:
        with open(probe, "w") as out:
            out.write("written by the driver\n")
        check_seen(spark, probe, local)
    finally:
        with contextlib.suppress(OSError):  # never masks the check's own error
            os.remove(probe)
