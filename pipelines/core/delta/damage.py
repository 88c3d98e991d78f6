"""Opening a Delta table, and the one-line errors of a damaged, missing or read-only one.

Every table of this layer is opened by :func:`open_table`. delta-rs alone is silent or cryptic about a
damaged log: an emptied latest commit file opens as the version before it (that commit's rows are gone
without a word), a garbled one gives ``Kernel error: Json error`` with no table or file named. So the
opener checks the commit files the snapshot is made of (none may be empty, none may be missing) and,
when delta-rs fails, looks at the log itself to name the file at fault: an operator reading the line
knows which table and which file to restore.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass

import pyarrow.fs as pafs
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

LOG_DIR = "_delta_log"
_COMMIT = re.compile(r"^(\d{20})\.json$")
_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint(\..+)?\.(parquet|json)$")
# A writer creating a table makes _delta_log just before its first commit lands: a log folder without
# commits is damaged only once it is older than any such window can be.
YOUNG_LOG_SECONDS = 60


class LakeTableError(Exception):
    """A table the pipeline cannot use as it is: names the table (its logical name where the caller knows
    it, else its folder) and the file at fault, in one line; ``exit_status`` for the job."""

    exit_status = 3
    what = "table"

    def __init__(self, table: str, file: str, reason: str) -> None:
        self.table, self.file, self.reason = table, file, reason
        super().__init__(f"{self.what} {table}: {file}: {reason}")

    def named(self, table: str) -> LakeTableError:
        """The same error under the table's logical name."""
        renamed = type(self)(table, self.file, self.reason)
        renamed.__cause__ = self.__cause__
        return renamed


class DamagedTableError(LakeTableError):
    """The table's log (or a file it refers to) is empty, garbled, unreadable or missing."""

    what = "damaged table"


class MissingTableError(LakeTableError, FileNotFoundError):
    """There is no Delta table where one is expected (no folder, or no ``_delta_log``)."""

    what = "missing table"


class TableNotWritableError(LakeTableError, PermissionError):
    """The table (or the lake root under which it would be created) cannot be written by this user."""

    what = "table not writable"


@dataclass(frozen=True)
class _Log:
    """What ``_delta_log`` lists: commit files and checkpoint files by version, ``_last_checkpoint``."""

    folder: str
    commits: dict[int, pafs.FileInfo]
    checkpoints: set[int]
    last_checkpoint: pafs.FileInfo | None


def _fs(path: str) -> tuple[pafs.FileSystem, str]:
    return pafs.FileSystem.from_uri(path if "://" in path else f"file://{path}")


def table_label(path: str) -> str:
    """The folder name of the table at ``path``: its name where no caller knows a logical one."""
    return path.rstrip("/").rsplit("/", 1)[-1]


def _list_log(fs: pafs.FileSystem, root: str) -> _Log | None:
    folder = f"{root.rstrip('/')}/{LOG_DIR}"
    if fs.get_file_info(folder).type != pafs.FileType.Directory:
        return None
    commits: dict[int, pafs.FileInfo] = {}
    checkpoints: set[int] = set()
    last = None
    for info in fs.get_file_info(pafs.FileSelector(folder)):
        if m := _COMMIT.match(info.base_name):
            commits[int(m.group(1))] = info
        elif m := _CHECKPOINT.match(info.base_name):
            checkpoints.add(int(m.group(1)))
        elif info.base_name == "_last_checkpoint":
            last = info
    return _Log(folder, commits, checkpoints, last)


def check_log_folder(path: str, name: str | None = None) -> None:
    """Raise :class:`DamagedTableError` when ``path`` has a ``_delta_log`` without a single commit or
    checkpoint file (delta-rs calls that "not a table", and a write would start a new table over the old
    files); a log folder younger than :data:`YOUNG_LOG_SECONDS` may be a table being created."""
    fs, root = _fs(path)
    log = _list_log(fs, root)
    if log is None or log.commits or log.checkpoints:
        return
    mtime = fs.get_file_info(log.folder).mtime
    if mtime is not None and time.time() - mtime.timestamp() < YOUNG_LOG_SECONDS:
        return
    raise DamagedTableError(name or table_label(path), log.folder, "no readable commit file in the log")


def open_table(path: str, version: int | None = None, *, name: str | None = None) -> DeltaTable:
    """The Delta table at ``path`` (its current or an older ``version``), checked to be what its log says.

    Raises :class:`MissingTableError`, :class:`DamagedTableError` (naming the log file at fault: empty,
    not JSON, unreadable, a commit or checkpoint missing) instead of delta-rs's errors, and instead of
    opening a snapshot without a commit whose file was emptied.
    """
    label = name or table_label(path)
    fs, root = _fs(path)
    # listed before opening: a commit landing meanwhile is newer than the listing, never missing from it
    log = _list_log(fs, root)
    try:
        table = DeltaTable(path, version=version)
    except (DeltaError, OSError) as exc:
        raise diagnose(path, version, label, exc) from exc
    if log is not None:
        listed = max(log.commits, default=-1)
        problem = _segment_problem(fs, log, min(table.version(), listed), read_files=False)
        if problem is None and version is None and listed > table.version():
            problem = (
                f"{log.folder}/{listed:020d}.json",
                f"commit {listed} is in the log but delta-rs opened version {table.version()}",
            )
        if problem is not None:
            raise DamagedTableError(label, *problem)
    return table


def diagnose(path: str, version: int | None, name: str, exc: BaseException) -> LakeTableError:
    """Why delta-rs could not open the table at ``path``: the file at fault, read from the log itself."""
    fs, root = _fs(path)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return MissingTableError(name, path, "no Delta table (no such folder)")
    log = _list_log(fs, root)
    if log is None:
        return MissingTableError(name, path, f"no Delta table (no {LOG_DIR} folder)")
    if not log.commits and not log.checkpoints:
        return DamagedTableError(name, log.folder, "no readable commit file in the log")
    latest = max([*log.commits, *log.checkpoints])
    earliest = min([*log.commits, *log.checkpoints])
    if version is not None and version < earliest and any(v > version for v in log.checkpoints):
        # the log was cleaned up to a checkpoint after it: history no longer kept, not damage
        return LakeTableError(name, path, f"version {version} is older than the log keeps (from {earliest})")
    target = latest if version is None else min(version, latest)
    problem = _checkpoint_problem(fs, log) or _segment_problem(fs, log, target, read_files=True)
    if problem is not None:
        return DamagedTableError(name, *problem)
    # nothing wrong in the log (a version it does not have, a store that did not answer): the table named,
    # in delta-rs's first line
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return LakeTableError(name, path, f"delta-rs cannot open it: {first}")


def _checkpoint_problem(fs: pafs.FileSystem, log: _Log) -> tuple[str, str] | None:
    """A ``_last_checkpoint`` that cannot be read or names a checkpoint that is not there."""
    if log.last_checkpoint is None:
        return None
    file = log.last_checkpoint.path
    try:
        with fs.open_input_stream(file) as stream:
            hint = json.loads(stream.read().decode() or "null")
        version = int(hint["version"])
    except PermissionError:
        return file, "not readable (permission denied)"
    except (ValueError, KeyError, TypeError):
        return file, "not valid JSON with a version"
    if version not in log.checkpoints:
        return (
            f"{log.folder}/{version:020d}.checkpoint.parquet",
            f"checkpoint of version {version} missing (named by _last_checkpoint)",
        )
    return None


def _segment_problem(
    fs: pafs.FileSystem, log: _Log, target: int, *, read_files: bool
) -> tuple[str, str] | None:
    """The first commit file the snapshot ``target`` is made of (those after its checkpoint) that is
    missing or empty, or with ``read_files`` also unreadable or not JSON lines."""
    base = max((v for v in log.checkpoints if v <= target), default=-1)
    for v in range(base + 1, target + 1):
        file = f"{log.folder}/{v:020d}.json"
        info = log.commits.get(v)
        if info is None:
            return file, f"commit file missing (the log goes up to version {target})"
        if info.size == 0:
            return file, "empty commit file (0 bytes)"
        if read_files:
            try:
                with fs.open_input_stream(file) as stream:
                    text = stream.read().decode()
            except PermissionError:
                return file, "not readable (permission denied)"
            except UnicodeDecodeError:
                return file, "not a commit file (not UTF-8 text)"
            for n, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    json.loads(line)
                except ValueError:
                    return file, f"not a commit file (line {n} is not JSON)"
            if not text.strip():
                return file, "empty commit file"
    return None


def check_writable(path: str, name: str | None = None) -> None:
    """Raise :class:`TableNotWritableError` when this user cannot write the table at ``path`` (a local
    path or ``file://`` URI; other file systems answer at the write): its folder and log if they exist,
    else the nearest existing folder above it (where the table would be created)."""
    if "://" in path and not path.startswith("file://"):
        return
    folder = path.removeprefix("file://").rstrip("/") or "/"
    label = name or table_label(path)
    candidates = [folder, os.path.join(folder, LOG_DIR)]
    if not os.path.isdir(folder):
        parent = os.path.dirname(folder)
        while parent and not os.path.isdir(parent) and parent != os.path.dirname(parent):
            parent = os.path.dirname(parent)
        candidates = [parent]
    for candidate in candidates:
        if os.path.isdir(candidate) and not os.access(candidate, os.W_OK | os.X_OK):
            raise TableNotWritableError(label, candidate, "permission denied (read-only for this user)")


def permission_denied(exc: BaseException) -> bool:
    """True for a write refused by the file system, however the engine reports it (Python's
    ``PermissionError``, delta-rs's or the JVM's "Permission denied" text)."""
    if isinstance(exc, PermissionError):
        return True
    return "permission denied" in str(exc).lower() or "accessdeniedexception" in str(exc).lower()


_MISSING_FILE = re.compile(r"(?:location|File|file) (\S+?) (?:not found|does not exist)")


def vanished_file(exc: BaseException) -> str | None:
    """The data file a read found missing (deleted under it), if ``exc`` says one was."""
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return str(exc.filename)
    missing = isinstance(exc, OSError) or "FileNotFound" in type(exc).__name__
    if missing and (m := _MISSING_FILE.search(str(exc))):
        return m.group(1)
    return None


__all__ = [
    "DamagedTableError",
    "LakeTableError",
    "MissingTableError",
    "TableNotWritableError",
    "check_log_folder",
    "check_writable",
    "diagnose",
    "open_table",
    "permission_denied",
    "vanished_file",
]
