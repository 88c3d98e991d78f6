"""The tasks' own Parquet writer: what they write is what is read back, and nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.core.arrow import remove_folder, write_staged

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
    target = tmp_path / "scratch"
    target.mkdir()
    # a file in the folder that no task of this run reported (a failed attempt's): never read
    pq.write_table(pa.table({"id": [99], "twice": [0.0], "tag": ["stray"]}), target / "part-stray.parquet")
    got = write_staged(spark.range(6, numPartitions=3), _twice, DDL, str(target))
    assert sorted(tuple(r) for r in got.collect()) == [
        (0, 0.0, "t0"),
        (1, 2.0, "t1"),
        (4, 8.0, "t4"),
        (5, 10.0, None),
    ]
    assert got.schema.simpleString() == "struct<id:bigint,twice:double,tag:string>"
    assert len(list(target.glob("part-0*.parquet"))) == 2  # the task without rows wrote no file
    remove_folder(str(target))
    assert not target.exists()
    remove_folder(str(target))  # nothing there: no error


def test_no_rows_at_all_give_an_empty_frame_of_the_schema(spark, tmp_path: Path):
    got = write_staged(spark.range(0), _twice, DDL, str(tmp_path / "scratch"))
    assert got.count() == 0 and got.schema.simpleString() == "struct<id:bigint,twice:double,tag:string>"
