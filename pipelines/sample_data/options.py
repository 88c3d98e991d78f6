"""What the generator is asked for, what it reports, and the manifest of what it planted.

Every injected fault is recorded in ``<landing_root>/_sample_manifest/`` (outside the source folders):
``faults.jsonl`` (source, month, file, row, reason) and ``manifest.json`` (per source-month counts of rows
written, late records, duplicates, and file-level faults), so tests can check ingest caught exactly those.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.sample_data.drivers import DriverStrengths

MANIFEST_DIR = "_sample_manifest"


@dataclass(frozen=True)
class GenerateOptions:
    """What to generate: ``months`` (consecutive) of a base of about ``subscribers`` lines.

    ``bad_rows``: share of rows given a fault; ``file_faults``: plant unreadable files in the last month;
    ``fmt``: ``csv``, ``parquet`` or ``mixed`` (parts cycle through CSV, Parquet, gzip CSV);
    ``gzip_share``: chance a CSV part is gzipped; ``events_per_subscriber``: mean CDRs a line a month;
    ``drivers``: the slow churn drivers' strengths (:mod:`.drivers`; all 0: off).
    """

    months: tuple[str, ...]
    subscribers: int
    seed: int
    bad_rows: float = 0.0
    file_faults: bool = False
    fmt: str = "csv"
    gzip_share: float = 0.3
    files_per_month: int = 2
    events_per_subscriber: int = 40
    drivers: DriverStrengths = field(default_factory=DriverStrengths)


@dataclass
class GenerateReport:
    """Rows written per source, CDR rows, seconds taken, and each month's churn statistics."""

    rows: dict[str, int] = field(default_factory=dict)
    cdr_rows: int = 0
    seconds: float = 0.0
    churn: list[dict[str, float]] = field(default_factory=list)


def write_manifest(landing_root: str | Path, summary: dict[str, Any]) -> None:
    (Path(landing_root) / MANIFEST_DIR / "manifest.json").write_text(
        json.dumps(summary, indent=1, default=str)
    )


def read_faults(landing_root: str | Path) -> list[dict[str, Any]]:
    path = Path(landing_root) / MANIFEST_DIR / "faults.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_manifest(landing_root: str | Path) -> dict[str, Any]:
    return json.loads((Path(landing_root) / MANIFEST_DIR / "manifest.json").read_text())
