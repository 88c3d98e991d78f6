"""Reading generated landing files back, independently of the writer (pandas and Arrow's CSV reader)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv

from features import contract as C

FILE_FAULTS = ("part-late-fix.csv", "export.xlsx")  # planted bad files, not part of a source's rows


def data_files(root: Path, source: str, month: str) -> list[Path]:
    """The data files of a source-month folder (markers and planted bad files left out)."""
    folder = root / source / f"month={month}"
    return [
        p
        for p in sorted(folder.iterdir())
        if p.name.endswith(C.DATA_SUFFIXES) and not p.name.startswith("_") and p.name not in FILE_FAULTS
    ]


def read_source(root: Path, source: str, month: str, with_file: bool = False) -> pd.DataFrame:
    """Every row of a source-month as text; ``with_file``: with its ``_file`` and ``_row`` (1-based)."""
    frames = []
    for path in data_files(root, source, month):
        if path.name.endswith(".parquet"):
            df = pd.read_parquet(path).astype(str)
        else:
            df = pacsv.read_csv(
                path,
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(C.columns(source), "string"), strings_can_be_null=True
                ),
            ).to_pandas()
        df["_file"] = path.name
        df["_row"] = np.arange(1, len(df) + 1)
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    return out if with_file else out.drop(columns=["_file", "_row"])


def without_faults(df: pd.DataFrame, faults: list[dict], source: str, month: str) -> pd.DataFrame:
    """The rows of ``read_source(..., with_file=True)`` that the manifest does not list as faults."""
    bad = {(f["file"], f["row"]) for f in faults if f["source"] == source and f["month"] == month}
    keep = [(f, r) not in bad for f, r in zip(df["_file"], df["_row"], strict=True)]
    return df[keep]


def tenure_months(subs: pd.DataFrame, month: str) -> pd.Series:
    act = pd.to_datetime(subs["activation_date"], errors="coerce", format="%Y-%m-%d")
    start = pd.Timestamp(month + "-01")
    return (start.year - act.dt.year) * 12 + (start.month - act.dt.month)
