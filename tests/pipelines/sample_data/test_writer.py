"""The landing files: the contract's layout and text, late and duplicated records, planted faults and the
manifest, each checked by reading the files back independently of the writer."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from features import contract as C
from features.calendar import add_months
from pipelines.sample_data.formatting import format_ids
from pipelines.sample_data.writer import GenerateOptions, generate, read_faults, read_manifest
from tests.conftest import GEN_MONTHS
from tests.pipelines.sample_data.landing_files import data_files, read_source, without_faults

# what each planted fault looks like in the file, per source and reason (None: an empty field / null);
# the month-dependent ones are in ``_planted``
PLANTED = {
    "cdr": {
        "missing_required:event_ts": ("event_ts", None),
        "unparseable:event_ts": ("event_ts", "2024-13-45 25:61:00"),
        "invalid_value:event_type": ("event_type", "video"),
        "invalid_value:duration_s": ("duration_s", "-5"),
        "unparseable:volume_kb": ("volume_kb", "12kb"),
        "unknown_msisdn": ("msisdn", "39990000001"),
        "unparseable:roaming": ("roaming", "maybe"),
    },
    "subscriptions": {
        "invalid_value:segment": ("segment", "retail"),
        "unparseable:activation_date": ("activation_date", "31/01/2020"),
        "missing_required:plan_id": ("plan_id", None),
    },
    "billing": {
        "unparseable:invoice_amount": ("invoice_amount", "12,50"),
        "invalid_value:overdue_days": ("overdue_days", "-3"),
    },
    "care": {
        "invalid_value:category": ("category", "spam"),
        "missing_required:contact_ts": ("contact_ts", None),
        "unparseable:resolved": ("resolved", "perhaps"),
    },
    "campaign_outcomes": {
        "unparseable:contacted": ("contacted", "yes?"),
        "missing_required:subscriber_id": ("subscriber_id", None),
    },
}


def _planted(source: str, month: str) -> dict[str, tuple[str, str | None]]:
    planted = dict(PLANTED[source])
    if source == "cdr":
        planted["future_event"] = ("event_ts", f"{add_months(month, 2)}-01 10:00:00")
        old = (pd.Timestamp(month + "-01") - pd.Timedelta(days=20)).strftime("%Y-%m-%d")
        planted["too_old_event"] = ("event_ts", f"{old} 10:00:00")
    if source == "billing":
        planted["month_mismatch"] = ("bill_month", add_months(month, -5))
    return planted


def _matches(values: pd.Series, expected: str | None) -> pd.Series:
    if expected is None:  # Parquet read as text turns nulls into these
        return values.isna() | values.isin(["None", "NaT", "nan"])
    return values == expected


def _check_planted_faults(root: Path) -> int:
    """Each recorded fault is in its file at its row, and no other row carries a planted value."""
    faults = read_faults(root)
    checked = 0
    for key in read_manifest(root)["source_months"]:
        source, month = key.split("/")
        rows = read_source(root, source, month, with_file=True)
        recorded = {
            (f["file"], f["row"]): f["reason"]
            for f in faults
            if f["source"] == source and f["month"] == month
        }
        found: dict[tuple[str, int], str] = {}
        for reason, (column, value) in _planted(source, month).items():
            hits = rows[_matches(rows[column], value)]
            found.update({(f, r): reason for f, r in zip(hits["_file"], hits["_row"], strict=True)})
        # a row planted as unparseable:event_ts is not also a future event, so the reasons are unique
        assert found == recorded, (key, set(found.items()) ^ set(recorded.items()))
        checked += len(recorded)
    return checked


def test_layout_columns_and_success_markers(landing: Path):
    for source in C.SOURCES:
        for month in GEN_MONTHS:
            folder = landing / source / f"month={month}"
            if source == "campaign_outcomes" and not folder.exists():
                continue
            assert (folder / "_SUCCESS").exists(), folder
            data = data_files(landing, source, month)
            assert data, folder
            for path in data:
                opener = gzip.open if path.name.endswith(".gz") else open
                with opener(path, "rt") as f:
                    header = [h.strip('"') for h in f.readline().strip().split(",")]
                assert set(C.columns(source)) <= set(header), (path, set(C.columns(source)) - set(header))
    assert (landing / "campaign_outcomes" / "month=2024-04").exists()


def test_codes_and_formats_follow_the_contract(landing: Path):
    faults = read_faults(landing)
    month = "2024-03"
    cdr = without_faults(read_source(landing, "cdr", month, True), faults, "cdr", month)
    assert set(cdr["event_type"]) == {"voice", "sms", "data"}
    assert set(cdr["direction"]) == {"out", "in"}
    assert set(cdr.loc[cdr.event_type == "data", "direction"]) == {"out"}
    assert set(cdr["roaming"]) == {"true", "false"}
    assert cdr["event_ts"].str.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d").all()
    assert (cdr.loc[cdr.event_type != "data", "volume_kb"] == "0").all()
    assert (cdr.loc[cdr.event_type == "sms", "duration_s"] == "0").all()
    own = cdr[cdr.other_party_operator == "own"]["other_party"]
    assert own.str.fullmatch(r"[0-9a-f]{64}").all()
    assert cdr.loc[cdr.event_type == "data", "other_party"].isna().all()
    assert cdr["record_id"].str.fullmatch(r"R\d{12}").all()
    roam = cdr[cdr.roaming == "true"]
    assert len(roam) > 0 and roam["roaming_country"].notna().all()
    subs = without_faults(read_source(landing, "subscriptions", month, True), faults, "subscriptions", month)
    assert subs["subscriber_id"].is_unique
    assert subs["subscriber_id"].str.fullmatch(r"S\d{9}").all()
    assert subs["household_id"].dropna().str.fullmatch(r"H\d{9}").all() and subs["household_id"].isna().any()
    assert (subs["snapshot_date"] == "2024-03-31").all()
    deact = subs[subs.status == "deactivated"]
    assert deact["deactivation_date"].str.startswith("2024-03").all()
    assert set(deact["deactivation_reason"]) <= set(C.DEACTIVATION_REASONS)
    assert deact.loc[deact.deactivation_reason == "port_out", "port_out_operator"].notna().all()
    assert subs.loc[subs.status == "active", "deactivation_date"].isna().all()
    bills = without_faults(read_source(landing, "billing", month, True), faults, "billing", month)
    assert (bills["bill_month"] == month).all()
    raw_subs = read_source(landing, "subscriptions", month)
    assert set(bills["subscriber_id"].dropna()) <= set(raw_subs["subscriber_id"])
    assert len(bills) > 0.95 * len(raw_subs)


def test_ids_are_fixed_width_and_refuse_to_overflow():
    ids = format_ids("S", np.array([-1, 3, 999_999_999]))
    assert ids.to_pylist() == [None, "S000000003", "S999999999"]
    assert format_ids("R", np.array([7]), 12).to_pylist() == ["R000000000007"]
    with pytest.raises(ValueError, match="more than 9 digits"):
        format_ids("S", np.array([10**9]))


def test_the_same_seed_writes_the_same_files_and_another_seed_does_not(tmp_path: Path):
    opts = GenerateOptions(months=("2024-01", "2024-02"), subscribers=200, seed=5, bad_rows=0.01)
    generate(tmp_path / "a", opts)
    generate(tmp_path / "b", opts)
    generate(tmp_path / "c", GenerateOptions(**{**opts.__dict__, "seed": 6}))
    for source in ("subscriptions", "cdr", "billing", "care"):
        for month in opts.months:
            files = data_files(tmp_path / "a", source, month)
            names = [p.relative_to(tmp_path / "a") for p in files]
            assert names and names == [
                p.relative_to(tmp_path / "b") for p in data_files(tmp_path / "b", source, month)
            ]
            for path in files:
                same = tmp_path / "b" / path.relative_to(tmp_path / "a")
                read = gzip.open if path.name.endswith(".gz") else open
                with read(path, "rb") as x, read(same, "rb") as y:
                    assert x.read() == y.read(), path
    assert read_faults(tmp_path / "a") == read_faults(tmp_path / "b")
    a, c = (read_source(tmp_path / r, "cdr", "2024-01") for r in ("a", "c"))
    assert len(a) != len(c)


def _data_rows(path: Path) -> int:
    """Rows of a data file counted without a CSV reader: lines after the header, or Parquet's footer."""
    if path.name.endswith(".parquet"):
        return pq.read_metadata(path).num_rows
    with (gzip.open if path.name.endswith(".gz") else open)(path, "rt") as f:
        return sum(1 for _ in f) - 1


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    """Two small months in mixed formats (CSV, gzip CSV, Parquet in two styles) with bad rows."""
    root = tmp_path_factory.mktemp("mixed")
    generate(
        root,
        GenerateOptions(months=("2024-01", "2024-02"), subscribers=400, seed=3, bad_rows=0.01, fmt="mixed"),
    )
    return root


@pytest.mark.parametrize("root", ["landing", "mixed"])
def test_the_manifest_counts_the_rows_in_the_files(root: str, request: pytest.FixtureRequest):
    root_path = request.getfixturevalue(root)
    manifest = read_manifest(root_path)["source_months"]
    counted = {}
    for source in C.SOURCES:
        for folder in sorted((root_path / source).glob("month=*")):
            month = folder.name.removeprefix("month=")
            counted[f"{source}/{month}"] = sum(_data_rows(p) for p in data_files(root_path, source, month))
    assert {k: v["rows"] for k, v in manifest.items()} == counted


@pytest.mark.parametrize("root", ["landing", "mixed"])
def test_every_planted_fault_is_at_its_recorded_row_and_nowhere_else(
    root: str, request: pytest.FixtureRequest
):
    root_path = request.getfixturevalue(root)
    checked = _check_planted_faults(root_path)
    assert checked > 50
    reasons = {f["reason"] for f in read_faults(root_path)}
    # every kind of fault of the big sources was planted somewhere (text ones only where the file is text)
    big = ("cdr", "subscriptions", "billing", "care")
    assert reasons >= {r for s in big for r in PLANTED[s] if not r.startswith("unparseable")}


def test_bad_files_are_planted_in_the_last_month(landing: Path):
    last = GEN_MONTHS[-1]
    assert {(f["source"], f["file"], f["fault"]) for f in read_manifest(landing)["file_faults"]} == {
        ("billing", "part-late-fix.csv", "missing_columns"),
        ("care", "export.xlsx", "unreadable_file"),
    }
    with open(landing / "billing" / f"month={last}" / "part-late-fix.csv") as f:
        header = [h.strip('"') for h in f.readline().strip().split(",")]
    assert set(C.columns("billing")) - set(header) == {"paid_amount"}
    assert not (landing / "care" / f"month={last}" / "export.xlsx").read_bytes().startswith(b'"contact_id"')
    assert not (landing / "billing" / f"month={GEN_MONTHS[-2]}" / "part-late-fix.csv").exists()


def test_late_and_duplicate_cdrs(landing: Path):
    manifest = read_manifest(landing)
    month = "2024-04"
    cdr = read_source(landing, "cdr", month)
    ts = pd.to_datetime(cdr["event_ts"], errors="coerce")
    late = cdr[
        (ts < pd.Timestamp(month + "-01")) & (ts >= pd.Timestamp(month + "-01") - pd.Timedelta(days=7))
    ]
    info = manifest["source_months"][f"cdr/{month}"]
    # late records of March delivered in April's folder (plus duplicates of March records)
    assert len(late) >= info["late_in"] > 0
    assert len(late) <= info["late_in"] + info["duplicates_from_previous"] + info["faults"]
    dup_same = cdr["record_id"].duplicated().sum()
    assert dup_same == info["duplicates_same_month"] > 0
    march = set(read_source(landing, "cdr", "2024-03")["record_id"])
    assert len(march & set(cdr["record_id"])) == info["duplicates_from_previous"] > 0


def test_parquet_option_has_natural_types(tmp_path: Path):
    generate(
        tmp_path, GenerateOptions(months=("2024-01",), subscribers=100, seed=1, fmt="parquet", bad_rows=0.01)
    )
    files = sorted((tmp_path / "cdr" / "month=2024-01").glob("*.parquet"))
    schema = pq.read_schema(files[0])
    assert str(schema.field("event_ts").type) == "timestamp[us]"
    assert str(schema.field("roaming").type) == "bool"
    assert str(schema.field("duration_s").type) == "int32"
    assert all(f["reason"].split(":")[0] != "unparseable" for f in read_faults(tmp_path))
