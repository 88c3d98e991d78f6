"""The Arrow path (``ingest.path=arrow``) against the Spark path: the same checked rows, the same tables.

Values at the edges of each kind go through both checks; the session's generated landing goes through
both whole paths, and silver, quarantine and data_quality must agree row for row.
"""

from __future__ import annotations

import re
import socket

import pyarrow as pa
import pytest
from pyspark.sql import functions as F

from features import contract as C
from features.cleaning import RAW_COL, REASONS_COL, validate_rows
from pipelines.core.spark import FolderNotSharedError
from pipelines.ingest.kernels import check_columns
from pipelines.ingest.stage import PATHS
from pipelines.ingest.tasks import TaskPlan, check_files
from tests.pipelines.ingest.conftest import MONTHS

# text a writer might put in a field: numbers in every form Spark's casts take or refuse, dates and times
# that only look right, booleans in other cases, blanks and undecodable bytes
EDGE_TEXT = [
    None, "", "  ", "1", "-1", "+1", " 1", "1 ", "\t1", "01", "-0", "1.0", "1.", "1.5", ".5", "1e2", "1e-2",
    "0x10", "2147483648", "-2147483648", "9223372036854775808", "00000000000000000000001", "1_0", "1,000",
    "Infinity", "NaN", "99999999999999.99995", "99999999999999.9999", "1.23455", "-1.23455", "1.234550", "1D",
    ".", "-", "true", "TRUE", " false ", "0", "yes", "2024-03-01", "2024-02-30", "2024-3-01", " 2024-03-01",
    "2024-03-01 00:00:00", "2024-03-31 23:59:59", "2024-04-01 00:00:00", "2024-02-23 00:00:00",
    "2024-02-24 00:00:00", "2024-03-01 24:00:00", "2024-03-01 23:59:60", "2024-03-01 12:00:00.123456",
    "2024-03-01 12:00:00.1234567", "2024-03", "2024-13", "voice", "voice ", "out", "ab\ufffdc",
]  # fmt: skip


def _spark_checked(spark, source: str, rows: list[dict]) -> list[tuple]:
    names = C.columns(source)
    df = spark.createDataFrame(
        [tuple(r[c] for c in names) for r in rows], ", ".join(f"{c} string" for c in names)
    )
    out = validate_rows(df, source=source, month="2024-03", late_days=7)
    return [tuple(r) for r in out.select(*names, REASONS_COL, RAW_COL).collect()]


def _arrow_checked(spark, source: str, rows: list[dict]) -> list[tuple]:
    names = C.columns(source)
    raw = {c: pa.array([r[c] for r in rows], pa.string()) for c in names}
    typed, reasons, raw_struct, _ = check_columns(raw, None, source=source, month="2024-03", late_days=7)
    table = pa.table({**{c: typed[c] for c in names}, REASONS_COL: reasons, RAW_COL: raw_struct})
    # through Spark's own conversion, so both sides are the same Python values
    return [
        tuple(r)
        for r in spark.createDataFrame(table.to_pandas(), _validate_rows_schema(spark, source)).collect()
    ]


def _validate_rows_schema(spark, source: str):
    names = C.columns(source)
    df = spark.createDataFrame([], ", ".join(f"{c} string" for c in names))
    return (
        validate_rows(df, source=source, month="2024-03", late_days=7)
        .select(*names, REASONS_COL, RAW_COL)
        .schema
    )


@pytest.mark.parametrize("source", ["cdr", "billing", "subscriptions"])
def test_the_arrow_checks_type_and_reject_every_edge_value_as_the_spark_checks_do(spark, source):
    names = C.columns(source)
    # each edge text in every column, one column at a time, the others holding a valid row's values
    valid = {
        "cdr": _cdr_valid(),
        "billing": {c: "1.5" for c in names} | {"subscriber_id": "S1", "bill_month": "2024-03",
                                                "payment_date": "2024-03-02", "overdue_days": "0",
                                                "topup_count": "1"},
        "subscriptions": _subscription_valid(),
    }[source]  # fmt: skip
    rows = [valid] + [valid | {c: text} for c in names for text in EDGE_TEXT]
    got, expected = _arrow_checked(spark, source, rows), _spark_checked(spark, source, rows)
    assert len(got) == len(expected) == len(rows)
    mismatched = [(rows[i], g, e) for i, (g, e) in enumerate(zip(got, expected, strict=True)) if g != e]
    assert mismatched == [], mismatched[:3]
    assert expected[0][-2] == [], "the valid row is valid"
    assert sum(1 for r in expected if r[-2]) > len(rows) // 3, "the edge values reject rows"


def test_the_arrow_checks_read_sliced_columns_as_whole_ones():
    """A batch's columns can be slices of larger buffers (an offset into them): the checks that read the
    text's bytes directly must start at the slice."""
    names = C.columns("cdr")
    rows = [_cdr_valid() | {c: text} for c in names for text in EDGE_TEXT]
    whole = {c: pa.array(["pad"] * 7 + [r[c] for r in rows], pa.string()) for c in names}
    sliced = {c: v.slice(7) for c, v in whole.items()}
    copied = {c: pa.array([r[c] for r in rows], pa.string()) for c in names}
    got = check_columns(sliced, None, source="cdr", month="2024-03", late_days=7)
    expected = check_columns(copied, None, source="cdr", month="2024-03", late_days=7)
    assert all(got[0][c].equals(expected[0][c]) for c in names)
    assert got[1].equals(expected[1]) and got[2].equals(expected[2])
    assert sum(len(r) > 0 for r in expected[1].to_pylist()) > len(rows) // 3


def test_a_care_contact_more_than_the_late_days_before_its_month_is_too_old_on_both_paths(spark):
    """The contract's rule for every event: care contacts too, not only CDRs (March's delivery, 7 days)."""
    valid = {
        "contact_id": "K1", "subscriber_id": "S1", "contact_ts": "2024-03-02 10:00:00", "channel": "app",
        "category": "billing", "resolved": "true",
    }  # fmt: skip
    dated = ("2024-02-22 23:59:59", "2024-02-23 00:00:00", "2023-06-01 10:00:00", "2024-03-31 23:59:59")
    rows = [valid | {"contact_ts": ts} for ts in dated]
    want = [[C.TOO_OLD_EVENT], [], [C.TOO_OLD_EVENT], []]
    assert [r[-2] for r in _spark_checked(spark, "care", rows)] == want
    assert [r[-2] for r in _arrow_checked(spark, "care", rows)] == want


def _cdr_valid() -> dict[str, str]:
    return {
        "record_id": "R1", "msisdn": "37060000001", "event_ts": "2024-03-02 10:00:00", "event_type": "voice",
        "direction": "out", "duration_s": "10", "volume_kb": "0", "other_party": "x",
        "other_party_operator": "own", "cell_id": "C1", "roaming": "false", "roaming_country": None,
        "charge": "0.1234",
    }  # fmt: skip


def _subscription_valid() -> dict[str, str]:
    return {
        "subscriber_id": "S1", "msisdn": "37060000001", "customer_id": "C1", "household_id": None,
        "segment": "consumer", "plan_type": "prepaid", "plan_id": "P1", "monthly_fee": "9.99",
        "activation_date": "2023-01-01", "contract_end_date": None, "status": "active",
        "deactivation_date": None, "deactivation_reason": None, "port_out_operator": None,
        "acquisition_channel": "store", "region": "R1", "handset_age_months": "12",
        "marketing_consent": "true", "snapshot_date": "2024-03-31",
    }  # fmt: skip


def _rows(lake, table: str) -> list[tuple]:
    df = lake.read(table)
    return sorted(tuple(map(repr, r)) for r in df.select(*sorted(df.columns)).collect())


@pytest.mark.slow
def test_the_arrow_and_spark_paths_load_the_same_tables_row_for_row(ingested, spark, landing, tmp_path):
    """``ingested`` went the configured path; the same months again through the other one."""
    from pipelines.core.lake import Lake
    from pipelines.ingest import ingest_month
    from tests.conftest import cfg_at

    other = "spark" if ingested.lake.cfg.ingest.path == "arrow" else "arrow"
    arrow_side = dict(PATHS)  # the latest ingest of each source-month: the fixture's, on the default path
    cfg = cfg_at(tmp_path / "lake", landing, f"ingest.path={other}")
    for month in MONTHS:
        ingest_month(spark, cfg, month)
    if other == "arrow":
        arrow_side = dict(PATHS)
    # the comparison is between the paths: the CSV deliveries went the Arrow way (none fell back)
    assert {m: arrow_side.get(("cdr", m)) for m in MONTHS} == dict.fromkeys(MONTHS, "arrow")
    assert sum(arrow_side.get((s, m)) == "arrow" for s in C.SOURCES for m in MONTHS) >= 4 * len(MONTHS)
    lake = Lake(spark, cfg)
    for table in (*C.SOURCES, "quarantine", "data_quality"):
        assert _rows(ingested.lake, table) == _rows(lake, table), table
    quarantined = lake.read("quarantine").where(F.col("source") == "cdr").count()
    assert quarantined > 0, "the landing holds rejected CDRs: the comparison covers row numbers and reasons"
    damaged = lake.read("quarantine").where(F.col("source") == "subscriptions").count()
    assert damaged > 0, "quarantined snapshot rows extend the holds the driver builds: compared too"


@pytest.mark.slow
def test_the_paths_pseudonymise_and_resolve_numbers_alike(spark, landing, tmp_path, monkeypatch):
    """With privacy.pseudonymise the Arrow tasks hash the numbers before resolving them: the same CDRs,
    quarantine rows (raw values of unknown numbers included) and reports as the Spark path (the Arrow
    side's repeated keys and number holds found by Spark's shuffles, not in the driver)."""
    from pipelines.core.lake import Lake
    from pipelines.ingest import ingest_month
    from tests.conftest import cfg_at

    monkeypatch.setenv("CHURNLAKE_PSEUDONYM_KEY", "k" * 32)
    lakes = []
    for path in ("arrow", "spark"):
        # the Arrow side's repeated keys and number holds by Spark (the session's other tests: the driver)
        cfg = cfg_at(
            tmp_path / path, landing, f"ingest.path={path}", "privacy.pseudonymise=true",
            "ingest.driver_max_rows=0",
        )  # fmt: skip
        ingest_month(spark, cfg, MONTHS[0], sources=["subscriptions", "cdr"])
        assert PATHS[("cdr", MONTHS[0])] == path
        lakes.append(Lake(spark, cfg))
    arrow, plain = lakes
    for table in ("subscriptions", "cdr", "quarantine", "data_quality"):
        assert _rows(arrow, table) == _rows(plain, table), table
    numbers = [r.msisdn for r in arrow.read("cdr").select("msisdn").limit(5).collect()]
    assert numbers and all(len(n) == 64 for n in numbers), "numbers are pseudonyms"
    quality = arrow.read("data_quality").where(F.col("source") == "cdr").first()
    assert quality.duplicates > 0, "the delivery repeats records: the shuffle's key pass is compared too"
    unknown = arrow.read("quarantine").where(F.col("reason") == C.UNKNOWN_MSISDN).count()
    assert unknown > 0, "the landing holds numbers nobody held: their raw values are compared too"


def test_a_task_that_does_not_see_the_staging_folder_or_its_landing_file_stops_naming_its_host(tmp_path):
    """An executor that joined after the driver's checks: it neither writes a staging folder of its own nor
    reads a file it cannot see, and says which host and path."""
    names = C.columns("care")
    landing = tmp_path / "care.csv"
    landing.write_text(",".join(names) + "\n")
    staging = tmp_path / "staging"
    staging.mkdir()
    ids = pa.RecordBatch.from_pydict({"id": pa.array([0], pa.int64())})

    def run(path, target) -> list[pa.RecordBatch]:
        plan = TaskPlan(
            source="care", month="2024-03", late_days=7, paths=(str(path),), columns=(tuple(names),),
            multiline=(False,), order=(0,), target=str(target),
        )  # fmt: skip
        return list(check_files(plan)(iter([ids])))

    host, tmp = re.escape(f"the executor on {socket.gethostname()} does not see"), re.escape(str(tmp_path))
    with pytest.raises(FolderNotSharedError, match=rf"^{host} {tmp}/gone \(ingest's staging folder\)"):
        run(landing, tmp_path / "gone")
    assert not (tmp_path / "gone").exists()
    with pytest.raises(FolderNotSharedError, match=rf"^{host} {tmp}/absent\.csv \(a landing file the"):
        run(tmp_path / "absent.csv", staging)
    assert list(staging.iterdir()) == []  # the task's own staged file removed
    (out,) = run(landing, staging)  # seen: the header-only file staged, no rows
    assert (out.column("rows").to_pylist(), out.column("error").to_pylist()) == ([0], [""])
