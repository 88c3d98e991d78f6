"""Housekeeping: files no retained version needs, and leftovers of writes that never committed."""

from __future__ import annotations

import time

import pyarrow.fs as pafs

from pipelines.core.delta.damage import open_table
from pipelines.core.delta.table import STAGING_DIR, _fs


def vacuum(path: str, *, retention_hours: int = 168, dry_run: bool = False) -> list[str]:
    """Delete files no version within ``retention_hours`` needs, and leftovers of failed writes.

    Leftover staging folders (``_staging``) of writes that never committed are removed whatever their
    age when ``retention_hours`` is 0, else when older than the retention.
    """
    fs, root = _fs(path)
    removed: list[str] = []
    staging_root = f"{root.rstrip('/')}/{STAGING_DIR}"
    cutoff = time.time() - retention_hours * 3600
    info = fs.get_file_info(staging_root)
    if info.type == pafs.FileType.Directory:
        for sub in fs.get_file_info(pafs.FileSelector(staging_root)):
            if retention_hours == 0 or (sub.mtime is not None and sub.mtime.timestamp() < cutoff):
                removed.append(sub.path)
                if not dry_run:
                    fs.delete_dir(sub.path)
    removed += open_table(path).vacuum(
        retention_hours=retention_hours, dry_run=dry_run, enforce_retention_duration=False, full=True
    )
    return removed
