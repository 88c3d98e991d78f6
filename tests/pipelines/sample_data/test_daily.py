import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from features import contract as C
from pipelines.sample_data.daily import read_month_text


def test_parquet_timestamps_of_any_unit_split_as_the_contracts_seconds(tmp_path: Path):
    """A month's Parquet part (micro- or nanosecond timestamps) reads back as `YYYY-MM-DD HH:MM:SS` text,
    the contract's form, never with a fraction the daily ingest would quarantine as unparseable."""
    folder = tmp_path / "cdr" / "month=2024-12"
    folder.mkdir(parents=True)
    names = list(C.columns("cdr"))
    when = [dt.datetime(2024, 12, 10, 4, 36, 55), dt.datetime(2024, 12, 31, 23, 59, 59)]
    for unit in ("us", "ns"):
        columns = {n: pa.array(["x", "y"]) for n in names}
        columns["event_ts"] = pa.array(when, pa.timestamp(unit))
        pq.write_table(pa.table(columns), folder / f"part-{unit}.parquet")
    table = read_month_text(tmp_path, "cdr", "2024-12")
    assert table is not None
    assert table["event_ts"].to_pylist() == ["2024-12-10 04:36:55", "2024-12-31 23:59:59"] * 2
