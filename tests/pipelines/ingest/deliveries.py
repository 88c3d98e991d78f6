"""Small CDR deliveries written by hand for the ingest tests: rows as contract text, files as writers do.

Also the ingest of such a delivery (subscriptions first) and what it left, read back from the tables.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
from pathlib import Path

import pandas as pd
from pyspark.sql import functions as F

from features import contract as C
from pipelines.core.lake import Lake
from pipelines.ingest import SourceReport, ingest_month

MONTH = "2024-03"
NUMBERS = [f"3706{i:05d}" for i in range(6)]
CDR_COLUMNS = list(C.columns("cdr"))


def cdr_rows(n: int = 48) -> list[dict[str, str]]:
    """Valid CDR rows as contract text: every type, nulls in the nullable columns, edge values."""
    rows = []
    for i in range(n):
        kind = ("voice", "sms", "data")[i % 3]
        ts = dt.datetime(2024, 3, 1) + dt.timedelta(days=i % 31, seconds=i * 3607 % 86400)
        rows.append(
            {
                "record_id": f"R{i:06d}",
                "msisdn": NUMBERS[i % len(NUMBERS)],
                "event_ts": ts.strftime("%Y-%m-%d %H:%M:%S"),
                "event_type": kind,
                "direction": "out" if kind == "data" or i % 2 else "in",
                "duration_s": str(0 if kind == "sms" else 1 + i * 37),
                "volume_kb": str(i * 1_000_003 if kind == "data" else 0),
                "other_party": None if kind == "data" else f"{i:064x}",
                "other_party_operator": None if kind == "data" else ("own", "OP_B", "fixed")[i % 3],
                "cell_id": None if i % 7 == 0 else f"C{i % 11}",
                "roaming": "true" if i % 5 == 0 else "false",
                "roaming_country": "LV" if i % 5 == 0 else None,
                "charge": f"{(i * 0.1234) % 7:.4f}",
            }
        )
    return rows


def typed_frame(rows: list[dict[str, str]]) -> pd.DataFrame:
    """The rows as pandas would hold them (datetime64[ns], int64, float64, bool, object)."""
    df = pd.DataFrame(rows, columns=CDR_COLUMNS)
    df["event_ts"] = pd.to_datetime(df["event_ts"])
    for c in ("duration_s", "volume_kb"):
        df[c] = df[c].astype("int64")
    df["charge"] = df["charge"].astype("float64")
    df["roaming"] = df["roaming"] == "true"
    return df


def write_csv(
    path: Path,
    rows: list[dict[str, str]],
    *,
    columns=CDR_COLUMNS,
    gz: bool = False,
    quoting=csv.QUOTE_MINIMAL,
) -> None:
    opener = gzip.open if gz else open
    with opener(path, "wt", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, quoting=quoting)
        writer.writeheader()
        writer.writerows(rows)


def subscriptions(root: Path) -> None:
    """The subscriptions of MONTH: one live subscriber for each of NUMBERS."""
    folder = root / "subscriptions" / f"month={MONTH}"
    folder.mkdir(parents=True)
    rows = [
        {
            "subscriber_id": f"S{i}",
            "msisdn": number,
            "customer_id": f"C{i}",
            "segment": "consumer",
            "plan_type": "postpaid",
            "plan_id": "P1",
            "monthly_fee": "20.00",
            "activation_date": "2022-01-01",
            "status": "active",
            "acquisition_channel": "store",
            "region": "north",
            "marketing_consent": "true",
            "snapshot_date": "2024-03-31",
        }
        for i, number in enumerate(NUMBERS)
    ]
    write_csv(folder / "part-0.csv", rows, columns=list(C.columns("subscriptions")))
    (folder / "_SUCCESS").touch()


def cdr_folder(root: Path) -> Path:
    folder = root / "cdr" / f"month={MONTH}"
    folder.mkdir(parents=True)
    (folder / "_SUCCESS").touch()
    return folder


def csv_delivery(tmp_path: Path, name: str, rows: list[dict[str, str]]) -> tuple[Path, Path]:
    """A landing zone with the subscriptions and one CDR CSV file; returns the landing root and the file."""
    landing = tmp_path / "landing"
    subscriptions(landing)
    path = cdr_folder(landing) / name
    write_csv(path, rows)
    return landing, path


def ingest_cdr(spark, make_cfg, landing: Path, *overrides: str) -> tuple[Lake, SourceReport]:
    """Ingest MONTH's subscriptions, then its CDRs (gates off); the lake and the CDR report."""
    cfg = make_cfg(f"landing.root={landing}", "ingest.gates.enabled=false", *overrides)
    ingest_month(spark, cfg, MONTH, sources=["subscriptions"])
    report = ingest_month(spark, cfg, MONTH, sources=["cdr"])["cdr"]
    return Lake(spark, cfg), report


def loaded_rows(lake: Lake) -> list[tuple]:
    df = lake.read("cdr")
    return sorted((tuple(r) for r in df.select(*sorted(df.columns)).collect()), key=repr)


def quarantined(lake: Lake) -> list[tuple]:
    q = lake.read("quarantine").where(F.col("source") == "cdr")
    return sorted((r.file, r.row_number, r.reason) for r in q.collect())
