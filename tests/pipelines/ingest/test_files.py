"""Listing and checking a delivery: a file that cannot be read fails its source with one line naming it.

Checked before anything is read or written: the ``_SUCCESS`` marker, the format, the header (a byte-order
mark, a column twice, a missing column), a gzip to its end, Parquet column types.
"""

from __future__ import annotations

import gzip
import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from features.errors import MissingColumnsError
from pipelines.core.lake import Lake
from pipelines.ingest import (
    IncompleteDeliveryError,
    UnreadableFileError,
    delivery_text_mb,
    ingest_month,
    list_delivery,
)
from pipelines.ingest.files import extra_columns, has_quoted_line_break
from tests.pipelines.ingest.deliveries import (
    CDR_COLUMNS,
    MONTH,
    cdr_folder,
    cdr_rows,
    csv_delivery,
    ingest_cdr,
    loaded_rows,
    quarantined,
    subscriptions,
    typed_frame,
    write_csv,
)


@pytest.mark.parametrize(
    ("text", "needs_whole_records"),
    [
        (b'"a","b"\n"1","x"\n', False),  # every field quoted, as many exporters write them
        (b'a,b\n1,"he said ""hi"", twice"\n2,3\n', False),  # escaped quotes on one line
        (b"a,b\n1,2", False),
        (b'a,b\n1,"x\ny"\n', True),
        (b'a,b\r\n1,"x\r\ny"\r\n', True),
        (b'a,b\n1,"x ""\ny"""\n', True),  # the break sits after an escaped quote
    ],
)
def test_only_a_line_break_inside_quotes_makes_a_file_unsplittable(tmp_path, text, needs_whole_records):
    path = tmp_path / "f.csv"
    path.write_bytes(text)
    assert has_quoted_line_break(path) is needs_whole_records


def test_a_parquet_column_of_no_contract_type_fails_the_file_naming_the_column(spark, make_cfg, tmp_path):
    landing = tmp_path / "landing"
    subscriptions(landing)
    table = pa.Table.from_pandas(typed_frame(cdr_rows(3)), preserve_index=False)
    nested = pa.array([{"a": 1}] * 3)
    table = table.set_column(table.schema.get_field_index("cell_id"), "cell_id", nested)
    pq.write_table(table, cdr_folder(landing) / "nested.parquet")
    with pytest.raises(UnreadableFileError, match=r"nested\.parquet: column cell_id has type struct"):
        ingest_cdr(spark, make_cfg, landing)


def test_a_byte_order_mark_is_not_part_of_the_first_column_name(spark, make_cfg, tmp_path):
    rows = cdr_rows(4)
    landing, path = csv_delivery(tmp_path, "bom.csv", rows)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    lake, report = ingest_cdr(spark, make_cfg, landing)
    assert report.rows_loaded == 4 and quarantined(lake) == []
    assert sorted(r.record_id for r in lake.read("cdr").collect())[0] == "R000000"


def test_a_column_twice_in_the_header_names_the_file_and_the_column(spark, make_cfg, tmp_path):
    landing = tmp_path / "landing"
    subscriptions(landing)
    write_csv(cdr_folder(landing) / "twice.csv", [], columns=[*CDR_COLUMNS, "charge"])
    with pytest.raises(UnreadableFileError, match=r"twice\.csv: column charge appears twice in the header"):
        ingest_cdr(spark, make_cfg, landing)


@pytest.mark.parametrize("path", ["arrow", "spark"])
def test_an_extra_column_twice_in_the_header_is_ignored_like_any_extra_column(
    spark, make_cfg, tmp_path, path
):
    """Extra columns repeated exactly or in another case (``NOTE``, and ``MSISDN`` beside the contract's
    ``msisdn``), before, between and after the contract's: the rows load as without them."""
    rows = [{**row, "note": f"n{i}", "NOTE": "x", "MSISDN": "999"} for i, row in enumerate(cdr_rows(5))]
    header = ["note", *CDR_COLUMNS[:3], "MSISDN", "NOTE", *CDR_COLUMNS[3:], "note"]
    tables = []
    for name, columns in (("plain", CDR_COLUMNS), ("extra", header)):
        landing = tmp_path / name / "landing"
        subscriptions(landing)
        delivered = [{c: r[c] for c in columns} for r in rows]
        write_csv(cdr_folder(landing) / "part.csv", delivered, columns=columns)
        lake, report = ingest_cdr(
            spark, make_cfg, landing, f"ingest.path={path}", f"lake.root={tmp_path / name}"
        )
        tables.append(loaded_rows(lake))
        assert report.rows_loaded == 5 and report.rows_quarantined == 0
    assert report.extra_columns == {"part.csv": ["MSISDN#2", "NOTE#2", "note", "note#3"]}
    assert tables[1] == tables[0] and len(tables[0]) == 5


def test_a_truncated_gzip_fails_its_source_with_one_line_and_a_data_quality_row(spark, make_cfg, tmp_path):
    landing = tmp_path / "landing"
    subscriptions(landing)
    path = cdr_folder(landing) / "cut.csv.gz"
    write_csv(path, cdr_rows(2000), gz=True)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    cfg = make_cfg(f"landing.root={landing}", "ingest.gates.enabled=false")
    ingest_month(spark, cfg, MONTH, sources=["subscriptions"])
    with pytest.raises(UnreadableFileError) as caught:
        ingest_month(spark, cfg, MONTH, sources=["cdr"])
    message = str(caught.value)
    assert "\n" not in message and len(message) < 400
    assert message.startswith(f"{path}: truncated or corrupt gzip")
    lake = Lake(spark, cfg)
    assert not lake.exists("cdr")
    dq = lake.read("data_quality").where(F.col("source") == "cdr").first()
    assert dq.publishable is False and "cut.csv.gz" in dq.gate_failures


def test_the_job_prints_one_line_for_an_unreadable_file(make_cfg, tmp_path, capsys):
    from jobs.ingest import main
    from tests.conftest import TEST_CONF

    landing = tmp_path / "landing"
    subscriptions(landing)
    path = cdr_folder(landing) / "cut.csv.gz"
    write_csv(path, cdr_rows(2000), gz=True)
    path.write_bytes(path.read_bytes()[:3000])
    code = main(
        [
            "--month",
            MONTH,
            "--conf",
            str(TEST_CONF),
            "--set",
            f"lake.root={tmp_path / 'lake'}",
            "--set",
            f"landing.root={landing}",
            "--sources",
            "cdr",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ERROR ingest: UnreadableFileError: ") and "cut.csv.gz" in err[-1]
    assert len(err[-1]) < 400


def test_missing_success_marker_is_refused(spark, make_cfg, landing, tmp_path):
    copy = tmp_path / "landing"
    shutil.copytree(landing / "billing" / "month=2024-01", copy / "billing" / "month=2024-01")
    (copy / "billing" / "month=2024-01" / "_SUCCESS").unlink()
    cfg = make_cfg(f"landing.root={copy}")
    with pytest.raises(IncompleteDeliveryError, match="no _SUCCESS marker"):
        ingest_month(spark, cfg, "2024-01", sources=["billing"])
    assert not Lake(spark, cfg).exists("billing")
    reports = ingest_month(spark, cfg, "2024-01", sources=["billing"], allow_incomplete=True)
    assert reports["billing"].incomplete_delivery and Lake(spark, cfg).exists("billing")


def test_broken_files_fail_the_source_month_and_write_nothing(spark, make_cfg, landing):
    cfg = make_cfg(f"landing.root={landing}")
    with pytest.raises(MissingColumnsError, match=r"part-late-fix\.csv: missing columns paid_amount"):
        ingest_month(spark, cfg, "2024-07", sources=["billing"])
    with pytest.raises(UnreadableFileError, match=r"export\.xlsx: not a CSV"):
        ingest_month(spark, cfg, "2024-07", sources=["care"])
    lake = Lake(spark, cfg)
    assert not lake.exists("billing") and not lake.exists("care") and not lake.exists("quarantine")
    runs = lake.read("pipeline_runs").collect()
    assert {(r.stage, r.scope, r.status) for r in runs} == {
        ("ingest", "billing", "failed"),
        ("ingest", "care", "failed"),
    }


def test_files_are_listed_in_delivery_order_with_their_extra_columns(tmp_path):
    """Modification time first, then name: a later file's copy of a record wins."""
    folder = cdr_folder(tmp_path / "landing")
    write_csv(folder / "a.csv", cdr_rows(2), columns=[*CDR_COLUMNS, "extract_system"])
    write_csv(folder / "b.csv", cdr_rows(2))
    write_csv(folder / "c.csv", cdr_rows(2))
    (folder / "_manifest.txt").write_text("not data")
    for name, mtime in (("a.csv", 300), ("b.csv", 100), ("c.csv", 100)):
        os.utime(folder / name, (mtime, mtime))
    files, incomplete = list_delivery(folder, "cdr", allow_incomplete=False)
    assert [f.name for f in files] == ["b.csv", "c.csv", "a.csv"] and not incomplete
    assert extra_columns(files, "cdr") == {"a.csv": ["extract_system"]}


def test_a_data_file_named_like_bookkeeping_is_not_read_and_is_named(tmp_path, caplog):
    folder = cdr_folder(tmp_path / "landing")
    write_csv(folder / "b.csv", cdr_rows(2))
    write_csv(folder / "_held_back.csv", cdr_rows(2))
    (folder / ".b.csv.crc").write_bytes(b"crc")
    with caplog.at_level("WARNING", logger="pipelines.ingest.files"):
        files, _ = list_delivery(folder, "cdr", allow_incomplete=False)
    assert [f.name for f in files] == ["b.csv"]
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "_held_back.csv is not read" in warned[0]


def test_the_text_size_of_a_delivery_counts_gzip_and_parquet_as_their_text(tmp_path):
    _, first = csv_delivery(tmp_path, "part-000.csv", cdr_rows(400))
    folder = first.parent
    shutil.copy(first, folder / "part-001.csv")
    with gzip.open(folder / "part-002.csv.gz", "wb") as out:
        out.write(first.read_bytes())
    pq.write_table(pa.Table.from_pandas(typed_frame(cdr_rows(50))), folder / "part-003.parquet")
    files, _ = list_delivery(folder, "cdr", allow_incomplete=True)
    plain = first.stat().st_size
    packed = (folder / "part-002.csv.gz").stat().st_size
    parquet = (folder / "part-003.parquet").stat().st_size
    assert delivery_text_mb(files) == pytest.approx((2 * plain + 5 * packed + 4 * parquet) / 2**20)
