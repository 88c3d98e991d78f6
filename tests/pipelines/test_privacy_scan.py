"""Where the generated phone numbers end up after a real multi-month closed loop (issue 31: personal data).

Every table (all columns as text), every log under ``<lake>/_logs``, the MLflow store (its database:
params, tags, metrics, run names; and every artifact file) and the Delta logs (column statistics) are
scanned for the numbers the operator delivered and for their plain SHA-256 (the contract's
``other_party``): found only in silver ``subscriptions`` / ``cdr`` and the assigned rows of
``offer_assignments``; with pseudonymisation on, nowhere at all.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import functions as F

from tests.conftest import LOOP_SETTINGS, TEST_CONF

pytestmark = [pytest.mark.slow, pytest.mark.e2e]  # two closed loops: CI's end-to-end run

MONTHS = "2024-01..2024-06"
KEY = "a-test-pseudonym-key-of-enough-bytes"
# where a number (or its plain hash) may be in clear: (table, column)
ALLOWED = {
    ("subscriptions", "msisdn"),
    ("cdr", "msisdn"),
    ("cdr", "other_party"),
    ("offer_assignments", "msisdn"),  # assigned rows only: checked on its own
}
# written by the six months of the loop whatever matured
REQUIRED_TABLES = {
    "subscriptions",
    "cdr",
    "billing",
    "care",
    "campaign_outcomes",
    "quarantine",
    "data_quality",
    "features_monthly",
    "labels_monthly",
    "warning_list",
    "customer_risk",
    "score_monitoring",
    "offer_assignments",
    "pipeline_runs",
}
SETTINGS = (
    *LOOP_SETTINGS,
    "train.fit_months=2",
    "train.promotion.min_test_churners=3",
)


def _run_loop(root: Path, *extra: str) -> tuple[Path, list[str]]:
    from jobs.closed_loop import main as closed_loop

    settings = [f"lake.root={root / 'lake'}", f"landing.root={root / 'landing'}", *SETTINGS, *extra]
    args = ["--conf", str(TEST_CONF), *(x for s in settings for x in ("--set", s))]
    status = closed_loop(
        ["--months", MONTHS, "--subscribers", "900", "--seed", "5", "--bad-rows", "0.01", *args]
    )
    assert status == 0
    return root, settings


def _delivered_numbers(landing: Path) -> dict[str, str]:
    """month/subscriber -> msisdn as the operator delivered them (the landing CSVs, gzip or not)."""
    frames = [
        pd.read_csv(p, dtype=str, usecols=["subscriber_id", "msisdn"]).assign(
            month=p.parent.name.removeprefix("month=")
        )
        for p in sorted((landing / "subscriptions").glob("month=*/*.csv*"))
    ]
    delivered = pd.concat(frames).dropna()
    # a corrupted value (a planted bad row) is no number
    return delivered[delivered.msisdn.str.fullmatch(r"\d{8,}")]


class _Numbers:
    """Finds any of the numbers, or their plain SHA-256, inside a text (a JSON value, a log, a file)."""

    def __init__(self, numbers: set[str]) -> None:
        self.values = numbers | {hashlib.sha256(n.encode()).hexdigest() for n in numbers}
        self.lengths = sorted({len(n) for n in numbers})
        self.digits = re.compile(rf"\d{{{self.lengths[0]},}}")
        self.hexes = re.compile(r"[0-9a-f]{64,}")

    def _in(self, run: str, length: int) -> bool:
        return any(run[i : i + length] in self.values for i in range(len(run) - length + 1))

    def search(self, text: str) -> bool:
        runs = self.digits.findall(text)
        if any(self._in(run, n) for run in runs for n in self.lengths):
            return True
        return any(self._in(run, 64) for run in self.hexes.findall(text))


def _pattern(numbers: set[str]) -> _Numbers:
    return _Numbers(numbers)


def _table_hits(cfg, pattern: _Numbers) -> set[tuple[str, str]]:
    """(table, column) pairs holding a number, every value read as text (through delta-rs: each table's
    current version, partition columns included). The tables of every stage that ran must be there."""
    from deltalake import DeltaTable

    hits = set()
    scanned = set()
    for table in cfg.lake.tables:
        path = Path(cfg.table_path(table))
        if not (path / "_delta_log").is_dir():  # a table of what had nothing to do yet (evaluation)
            continue
        scanned.add(table)
        frame = DeltaTable(str(path)).to_pyarrow_table()
        for name in frame.column_names:
            values = frame.column(name).to_pandas().dropna().astype(str).unique()
            if any(pattern.search(v) for v in values):
                hits.add((table, name))
    assert scanned >= REQUIRED_TABLES, REQUIRED_TABLES - scanned
    return hits


def _in_delta_log_of(rel: str, tables: set[str]) -> bool:
    """Whether a file (relative to the lake root) is in the Delta log of one of ``tables``."""
    parts = Path(rel).parts
    return parts[0] in tables and "_delta_log" in parts


def _file_hits(lake_root: Path, pattern: _Numbers) -> list[str]:
    """Files under the lake (logs, MLflow database and artifacts, Delta logs) holding a number, relative
    to it; the data files of tables are read as tables instead."""
    found = []
    scanned = 0
    for path in lake_root.rglob("*"):
        if not path.is_file() or path.suffix == ".parquet" or path.name.endswith(".crc"):
            continue
        rel = path.relative_to(lake_root)
        scanned += 1
        text = path.read_bytes().decode("latin-1")
        if pattern.search(text):
            found.append(str(rel))
    assert scanned > 50  # logs, the MLflow store and artifacts, the Delta logs
    return found


@pytest.fixture(scope="module")
def clear_loop(spark, tmp_path_factory):
    return _run_loop(tmp_path_factory.mktemp("privacy_clear"))


@pytest.fixture(scope="module")
def pseudonymised_loop(spark, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("CHURNLAKE_PSEUDONYM_KEY", KEY)
    try:
        yield _run_loop(tmp_path_factory.mktemp("privacy_pseudo"), "privacy.pseudonymise=true")
    finally:
        mp.undo()


def test_numbers_only_in_silver_and_the_assigned_offers(spark, clear_loop):
    from pipelines.core.config import load_config
    from pipelines.core.lake import Lake

    root, settings = clear_loop
    cfg = load_config([TEST_CONF], settings)
    delivered = _delivered_numbers(root / "landing")
    numbers = set(delivered.msisdn)
    lake = Lake(spark, cfg)
    silver = {r.msisdn for r in lake.read("subscriptions").select("msisdn").distinct().collect()}
    assert silver <= numbers and len(silver) > 800
    # the quarantine held bad snapshot and CDR rows: their numbers are masked there
    quarantined = lake.read("quarantine").where(F.col("source").isin("subscriptions", "cdr")).count()
    assert quarantined > 0
    pattern = _pattern(numbers)
    hits = _table_hits(cfg, pattern)
    assert hits - ALLOWED == set()
    # the scan finds the numbers where they are in clear (so an empty result above means something)
    assert hits >= {("subscriptions", "msisdn"), ("cdr", "msisdn"), ("offer_assignments", "msisdn")}
    offers = lake.read("offer_assignments")
    assert offers.where((F.col("status") == "assigned") & F.col("msisdn").isNotNull()).count() > 0
    assert offers.where((F.col("status") != "assigned") & F.col("msisdn").isNotNull()).count() == 0
    assert offers.where(F.col("status") != "assigned").count() > 0
    logs = list((root / "lake" / "_logs").glob("*.log"))
    assert logs
    assert (root / "lake" / "mlflow" / "mlflow.db").is_file()
    everywhere = _file_hits(root / "lake", pattern)
    allowed_logs = {"subscriptions", "cdr", "offer_assignments"}  # their statistics hold allowed columns
    assert [f for f in everywhere if not _in_delta_log_of(f, allowed_logs)] == []
    # ... and in files: the Delta log's column statistics of silver hold them
    assert any(f.startswith("subscriptions/_delta_log/") for f in everywhere)


def test_pseudonymised_numbers_are_nowhere_and_stable(spark, pseudonymised_loop):
    from pipelines.core.config import load_config
    from pipelines.core.lake import Lake
    from pipelines.core.privacy import PseudonymKey, pseudonymise_msisdn

    root, settings = pseudonymised_loop
    cfg = load_config([TEST_CONF], settings)
    delivered = _delivered_numbers(root / "landing")
    pattern = _pattern(set(delivered.msisdn))
    assert _table_hits(cfg, pattern) == set()
    assert _file_hits(root / "lake", pattern) == []
    # the same number maps to the same pseudonym in every month it is delivered
    key = PseudonymKey(KEY.encode())
    lake = Lake(spark, cfg)
    silver = lake.read("subscriptions").select("month", "subscriber_id", "msisdn").toPandas()
    merged = silver.merge(delivered, on=["month", "subscriber_id"], suffixes=("", "_clear"))
    assert len(merged) > 0.95 * len(silver)
    assert (merged.msisdn == merged.msisdn_clear.map(lambda n: pseudonymise_msisdn(n, key))).all()
    per_number = merged.groupby("msisdn_clear").msisdn.nunique()
    assert per_number.max() == 1 and merged.month.nunique() == 6
    # own-network parties still join their subscriber (the social features): SHA-256 of a pseudonym
    own = set(
        lake.read("cdr")
        .where(F.col("other_party_operator") == "own")
        .select("other_party")
        .distinct()
        .toPandas()
        .other_party
    )
    hashed = {hashlib.sha256(p.encode()).hexdigest() for p in merged.msisdn}
    assert len(own & hashed) > 0.9 * len(own)
