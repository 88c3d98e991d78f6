"""The folder layout is the dependency graph: features/ and models/ are pure (no I/O, no clock)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT

FORBIDDEN = {
    r"^\s*(from|import) pipelines\b": "imports pipelines (imports flow jobs -> pipelines -> features)",
    r"\bimport mlflow\b|\bfrom mlflow\b": "talks to MLflow",
    r"\.write\b|\.saveAsTable\(|\.read\.|\bspark\.read\b": "reads or writes tables",
    r"SparkSession\.builder|getOrCreate\(": "builds a Spark session",
    r"current_date\(|current_timestamp\(|datetime\.now\(|date\.today\(|time\.time\(": "reads the clock",
    r"\bopen\(": "opens files",
}
PURE_FILES = sorted(p for folder in ("features", "models") for p in (ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", PURE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_packages_do_no_io(path):
    text = path.read_text()
    found = [
        f"{path.relative_to(ROOT)}:{i}: {why}"
        for i, line in enumerate(text.splitlines(), 1)
        for pattern, why in FORBIDDEN.items()
        if re.search(pattern, line) and not line.lstrip().startswith("#")
    ]
    assert not found, found


def test_the_scan_finds_a_violation(tmp_path):
    bad = "from pipelines.lake import Lake\ndf.write.parquet('x')\n"
    hits = [p for p in FORBIDDEN if any(re.search(p, line) for line in bad.splitlines())]
    assert len(hits) == 2
