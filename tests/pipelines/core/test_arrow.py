"""The tasks' own Parquet writer: what they write is what is read back, and nothing else; the scratch
folder it writes into is gone afterwards."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipelines.core.arrow import parquet_writer, write_staged
from pipelines.core.delta import scratch_folder
from pipelines.core.spark import FolderNotSharedError

DDL = "id long, twice double, tag string"


def _twice(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        ids = batch.column(0)
        keep = pc.not_equal(pc.divide(ids, 2), 1)  # the task holding 2 and 3 yields no rows
        ids = ids.filter(keep)
        yield pa.RecordBatch.from_pydict(
            {
                "id": ids,
                "twice": pc.multiply(pc.cast(ids, pa.float64()), 2.0),
                "tag": pa.array([None if i == 5 else f"t{i}" for i in ids.to_pylist()], pa.string()),
            }
        )


def test_rows_written_by_the_tasks_are_read_back_and_nothing_else(spark, tmp_path: Path):
    with scratch_folder(str(tmp_path), "test") as folder:
        target = Path(folder)
        target.mkdir(parents=True)
        # a file in the folder that no task of this run reported (a failed attempt's): never read
        stray = pa.table({"id": [99], "twice": [0.0], "tag": ["stray"]})
        pq.write_table(stray, target / "part-stray.parquet")
        got = write_staged(spark.range(6, numPartitions=3), _twice, DDL, folder)
        assert sorted(tuple(r) for r in got.collect()) == [
            (0, 0.0, "t0"),
            (1, 2.0, "t1"),
            (4, 8.0, "t4"),
            (5, 10.0, None),
        ]
        assert got.schema.simpleString() == "struct<id:bigint,twice:double,tag:string>"
        assert len(list(target.glob("part-0*.parquet"))) == 2  # the task without rows wrote no file
    assert not target.exists()
    with scratch_folder(str(tmp_path), "test"):
        pass  # nothing there: no error


def test_no_rows_at_all_give_an_empty_frame_of_the_schema(spark, tmp_path: Path):
    got = write_staged(spark.range(0), _twice, DDL, str(tmp_path / "scratch"))
    assert got.count() == 0 and got.schema.simpleString() == "struct<id:bigint,twice:double,tag:string>"


def test_the_driver_makes_the_folder_the_tasks_write_into(spark, tmp_path: Path):
    got = write_staged(spark.range(2, numPartitions=1), _twice, DDL, str(tmp_path / "new" / "scratch"))
    assert sorted(tuple(r) for r in got.collect()) == [(0, 0.0, "t0"), (1, 2.0, "t1")]


def test_a_task_that_does_not_see_the_folder_stops_naming_its_host(tmp_path: Path):
    """An executor that joined after the driver's check (the folder the driver made is not on its disk)
    writes nothing there of its own: its rows would be missing when the driver commits."""
    run = parquet_writer(_twice, DDL, f"file://{tmp_path}/gone")
    ids = pa.RecordBatch.from_pydict({"id": pa.array([0, 1], pa.int64())})
    expected = (
        f"the executor on {socket.gethostname()} does not see {tmp_path}/gone (the write's staging folder)"
    )
    with pytest.raises(FolderNotSharedError, match=f"^{re.escape(expected)}"):
        list(run(iter([ids])))
    assert not (tmp_path / "gone").exists()
