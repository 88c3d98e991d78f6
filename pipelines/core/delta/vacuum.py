"""Housekeeping: files no retained version needs, and leftovers of writes that never committed.

Safe beside a running write. delta-rs's full vacuum deletes a file that no version references when its
modification time is older than the retention (a removed file: when its removal is), so a write's file
that was moved into the table but not yet committed is at risk only once it looks old. The bridge sets
each file's modification time when it moves it into the table (a rename would keep the time Spark wrote
it, possibly long before), the retention may not be under :data:`MIN_RETENTION_HOURS`, and a write's
staging folder (``_staging/<txn>``) counts as in flight while anything in it is younger than the
retention: neither it nor the table's files named after its transaction are touched then.
"""

from __future__ import annotations

import logging
import math
import time

import pyarrow.fs as pafs

from pipelines.core.delta.damage import open_table
from pipelines.core.delta.table import STAGING_DIR, _fs

log = logging.getLogger("pipelines.core.delta")

# a write moves its files into the table and commits them within seconds; an hour leaves room for a
# stalled file system and for clocks that differ between the writer and the vacuum
MIN_RETENTION_HOURS = 1


class RetentionTooShortError(ValueError):
    """A vacuum retention shorter than an in-flight write can take between its file moves and commit."""


def vacuum(path: str, *, retention_hours: float = 168, dry_run: bool = False) -> list[str]:
    """Delete files no version within ``retention_hours`` needs, and leftovers of failed writes.

    Leftover staging and scratch folders (``_staging/*``) are removed when everything in them is older
    than the retention. A retention under :data:`MIN_RETENTION_HOURS` raises
    :class:`RetentionTooShortError`: it could delete the files of a write between their move and commit.
    Returns what was (``dry_run``: would be) removed, relative to the table for data files.
    """
    if retention_hours < MIN_RETENTION_HOURS:
        raise RetentionTooShortError(
            f"vacuum {path}: retention {retention_hours} h is under {MIN_RETENTION_HOURS} h: files of a "
            "write between its file moves and its commit could be deleted"
        )
    fs, root = _fs(path)
    cutoff = time.time() - retention_hours * 3600
    removed, in_flight = _old_staging(fs, f"{root.rstrip('/')}/{STAGING_DIR}", cutoff)
    if not dry_run:
        for leftover in removed:
            if fs.get_file_info(leftover).type == pafs.FileType.Directory:
                fs.delete_dir(leftover)
            else:
                fs.delete_file(leftover)
    table = open_table(path)
    hours = math.ceil(retention_hours)
    options = {"retention_hours": hours, "enforce_retention_duration": False, "full": True}
    if in_flight:  # only a file of a write still moving in could be listed; that write commits soon
        listed = table.vacuum(dry_run=True, **options)  # type: ignore[arg-type]
        theirs = [f for f in listed if any(txn in f.rsplit("/", 1)[-1] for txn in in_flight)]
        if theirs:
            log.warning("vacuum %s: deferred, %s belongs to a write in flight", path, theirs[0])
            return removed
    return removed + table.vacuum(dry_run=dry_run, **options)  # type: ignore[arg-type]


def _old_staging(fs: pafs.FileSystem, staging_root: str, cutoff: float) -> tuple[list[str], set[str]]:
    """Staging folders whose newest entry is older than ``cutoff`` (to remove) and the names of the others
    (writes possibly in flight: the folder's own time can be old while Spark writes deep inside it)."""
    old: list[str] = []
    young: set[str] = set()
    if fs.get_file_info(staging_root).type != pafs.FileType.Directory:
        return old, young
    for sub in fs.get_file_info(pafs.FileSelector(staging_root)):
        times = [sub.mtime.timestamp()] if sub.mtime is not None else []
        if sub.type == pafs.FileType.Directory:
            inside = fs.get_file_info(pafs.FileSelector(sub.path, recursive=True))
            times += [i.mtime.timestamp() for i in inside if i.mtime is not None]
        if times and max(times) < cutoff:
            old.append(sub.path)
        else:
            young.add(sub.base_name.split("-")[-1])  # a write's txn (a scratch folder: prefix-uuid)
    return old, young
