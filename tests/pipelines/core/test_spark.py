"""The session factory: settings that cannot apply to a running session are never silently dropped."""

from __future__ import annotations

import logging
import socket

import pytest

from pipelines.core import spark as session
from pipelines.core.config import load_config
from pipelines.core.spark import (
    FolderNotSharedError,
    _apply_settings,
    check_folder_shared,
    check_seen,
    hosts_seeing,
)
from tests.conftest import TEST_CONF


def test_the_local_session_starts_with_the_small_page(spark):
    assert spark.sparkContext.getConf().get("spark.buffer.pageSize") == "4m"
    assert spark.conf.get("spark.sql.unionOutputPartitioning") == "false"


def test_a_setting_that_cannot_change_on_a_running_session_is_a_named_warning(spark, caplog):
    partitions = spark.conf.get("spark.sql.shuffle.partitions")
    try:
        with caplog.at_level(logging.WARNING, logger="pipelines.core.spark"):
            _apply_settings(spark, {"spark.buffer.pageSize": "8m", "spark.sql.shuffle.partitions": "3"})
        assert spark.conf.get("spark.sql.shuffle.partitions") == "3"
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", partitions)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith(
        "Spark setting spark.buffer.pageSize=8m not applied (the running session has 4m"
    )
    assert "spark-submit --conf spark.buffer.pageSize=8m" in warnings[0]


def test_spark_settings_can_be_set_from_the_command_line():
    cfg = load_config([TEST_CONF], ["spark.conf.spark.sql.adaptive.enabled=true", "spark.conf.spark.x=4"])
    assert cfg.spark.conf["spark.sql.adaptive.enabled"] == "true"
    assert cfg.spark.conf["spark.x"] == "4"
    assert cfg.spark.conf["spark.buffer.pageSize"] == "4m"  # base.yml's entry stays


def test_the_executors_report_whether_they_see_a_file(spark, tmp_path):
    here = tmp_path / "written-by-the-driver"
    here.write_text("x")
    assert hosts_seeing(spark, str(here)) == {socket.gethostname(): True}
    assert hosts_seeing(spark, str(tmp_path / "absent")) == {socket.gethostname(): False}


def test_a_local_master_needs_no_shared_folder_check(spark, tmp_path):
    """One machine's executors share its disk: no probe job, no probe file (a cluster's is checked in
    tests/pipelines/test_cluster.py)."""
    folder = tmp_path / "lake"
    check_folder_shared(spark, str(folder))
    assert not folder.exists()


def test_on_a_cluster_the_executors_must_see_the_lake_and_the_landing_files(
    spark, tmp_path, monkeypatch, caplog
):
    """The local session's tasks taken for a cluster's (the one predicate replaced): the probe the driver
    writes is seen and removed; a file they do not see stops the job, naming the host."""
    monkeypatch.setattr(session, "on_cluster", lambda _: True)
    lake = tmp_path / "lake"
    with caplog.at_level(logging.INFO, logger="pipelines.core.spark"):
        check_folder_shared(spark, f"file://{lake}/")
    assert [r.getMessage() for r in caplog.records] == [f"executors on {socket.gethostname()} see {lake}"]
    assert lake.is_dir() and not list(lake.iterdir())  # the probe removed
    with pytest.raises(
        FolderNotSharedError, match=r"^/landing is on the driver's disk only: executors on "
    ) as e:
        check_seen(spark, str(tmp_path / "landing" / "absent.csv"), "/landing")
    assert f"executors on {socket.gethostname()} do not see {tmp_path}/landing/absent.csv. " in str(e.value)
    check_seen(spark, "s3://bucket/landing/x.csv", "s3://bucket/landing")  # an object store: not checked
