"""One writer per table and month: lease files under ``<lake.root>/_leases/``.

A lease is a small JSON file (owner, pid, host, start time, expiry, a random token) created atomically:
written to a private file, then hard-linked to its name, which fails when the name exists (like
``O_CREAT | O_EXCL``), so of two processes creating the same lease exactly one succeeds and nobody reads
it half written (a local or POSIX file system; an object store needs a conditional put instead). While
held, a heartbeat thread renews the expiry every third of ``lake.lease.ttl_seconds``; it is removed when
the holder is done.

Keys are a table and a month (``warning_list/2024-05``) or a whole table (``cdr/*``, for a write whose
reads span months, such as the cross-delivery de-duplication of CDRs); a table-wide lease conflicts with
every month lease of its table. ``monthly/<month>`` is the monthly run's own lease. A process taking
several acquires them in sorted order, so two processes cannot each hold what the other waits for.

A lease whose expiry passed, or whose pid is dead on this host (a killed run), is *stale*: the next writer
takes it over under a takeover lock (``<lease>.takeover``, created the same way): it reads the lease
again, checks it is still the stale one, removes it and creates its own, and logs a warning naming the
old holder. A process that finds a live lease waits up to ``lake.lease.wait_seconds`` and then raises
:class:`LeaseHeldError` (exit status 75, ``EX_TEMPFAIL``), whose one line names the key and the holder.

Leases are re-entrant within a process (threads of one process share them; the in-process table lock of
the Delta layer orders their writes).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.core.config import Config, local_path

log = logging.getLogger(__name__)

LEASES_DIR = "_leases"
EXIT_LEASE_HELD = 75  # EX_TEMPFAIL: try again later
_TABLE_WIDE = "_table"
_POLL_SECONDS = 0.2
_TAKEOVER_STALE_SECONDS = 30.0  # a takeover lock older than this belongs to a process that died in it


class LeaseHeldError(RuntimeError):
    """Another process holds a lease this one needs; ``exit_status`` is 75 (``EX_TEMPFAIL``)."""

    exit_status = EXIT_LEASE_HELD

    def __init__(self, key: str, holder: dict[str, Any]) -> None:
        self.key, self.holder = key, holder
        held = holder.get("key", key)  # what the other process holds (a month of a table we want whole)
        super().__init__(
            f"{held} is held by {describe(holder)}" + (f" (needed: {key})" if held != key else "")
        )


class LeaseLostError(RuntimeError):
    """This process's lease was taken over (it was not renewed in time): it must not commit."""


class LeaseUnavailableError(RuntimeError):
    """Leases cannot be kept on this lake root (not a local file system)."""


@dataclass(frozen=True, order=True)
class LeaseKey:
    """What a lease covers: ``table`` (or a run such as ``monthly``) and a month; ``month=None``: all."""

    table: str
    month: str | None = None

    @property
    def name(self) -> str:
        return f"{self.table}/{self.month or '*'}"

    def covers(self, other: LeaseKey) -> bool:
        return self.table == other.table and (self.month is None or self.month == other.month)

    def conflicts(self, other: LeaseKey) -> bool:
        return self.table == other.table and (
            self.month is None or other.month is None or self.month == other.month
        )


_OWNER = [os.path.basename(sys.argv[0]) or "python"]


def set_owner(owner: str) -> None:
    """Name this process's leases after ``owner`` (the job: ``score``, ``monthly``) unless told otherwise."""
    _OWNER[0] = owner


def current_owner() -> str:
    return _OWNER[0]


def describe(holder: dict[str, Any]) -> str:
    """``score (pid 123 on host-a since 2026-12-03T23:55:01Z)``: who holds a lease, for one line."""
    return (
        f"{holder.get('owner', '?')} (pid {holder.get('pid', '?')} on {holder.get('host', '?')} "
        f"since {holder.get('since', '?')})"
    )


def lease_root(cfg: Config) -> Path:
    root = local_path(str(cfg.lake_root))
    if root is None:
        raise LeaseUnavailableError(
            f"lake.root {cfg.lake_root} is not a local file system: leases need an atomic create there "
            "(set lake.lease.enabled=false only where the scheduler guarantees one writer)"
        )
    return Path(root) / LEASES_DIR


def _now() -> float:
    return time.time()


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(holder: dict[str, Any], now: float | None = None) -> bool:
    """Expired, or held by a process that no longer exists on this host (a killed run)."""
    now = _now() if now is None else now
    if float(holder.get("expires", 0)) <= now:
        return True
    return holder.get("host") == socket.gethostname() and not _pid_alive(int(holder.get("pid", -1)))


def _read(path: Path) -> dict[str, Any] | None:
    """The lease at ``path`` (None: none there); an unreadable one (damaged by hand or by a disk) counts as
    expiring ten seconds after it was last written."""
    try:
        text = path.read_text()
        written = path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
        if isinstance(data, dict):
            return data
    except ValueError:
        pass
    return {"owner": "unreadable lease file", "pid": -1, "host": "?", "since": "?", "expires": written + 10}


def _create(path: Path, content: dict[str, Any]) -> bool:
    """Create ``path`` holding ``content`` atomically; False when it exists.

    The content is written to a private file first and then hard-linked to ``path``: ``link`` fails when
    ``path`` exists (like ``O_CREAT | O_EXCL``), and a reader never sees the file empty or half written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.new")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(content, f)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@dataclass
class _Held:
    key: LeaseKey
    path: Path
    content: dict[str, Any]
    ttl: float
    count: int = 1
    lost: bool = False


class _Registry:
    """The leases this process holds, and the heartbeat thread that renews them."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.held: dict[Path, _Held] = {}
        self.thread: threading.Thread | None = None
        self.wake = threading.Event()

    def covering(self, root: Path, key: LeaseKey) -> _Held | None:
        with self.lock:
            for h in self.held.values():
                if h.path.parent.parent == root and h.key.covers(key):
                    return h
        return None

    def ours(self, path: Path) -> bool:
        with self.lock:
            return path in self.held

    def start_heartbeat(self) -> None:
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)
                self.thread.start()
            else:  # a beating thread may sleep for a longer TTL's third than the new lease's: wake it
                self.wake.set()

    def _beat(self) -> None:
        while True:
            with self.lock:
                if not self.held:
                    self.thread = None
                    return
                interval = min(h.ttl for h in self.held.values()) / 3
                items = list(self.held.values())
            self.wake.wait(interval)
            self.wake.clear()
            for h in items:
                with self.lock:
                    # the same lease, not one released meanwhile and taken again by another thread
                    if self.held.get(h.path) is h and not h.lost:
                        renew(h)


_REGISTRY = _Registry()


def renew(h: _Held) -> None:
    """Push the expiry of a held lease forward, if it is still ours (else mark it lost)."""
    current = _read(h.path)
    if current is None or current.get("token") != h.content["token"]:
        h.lost = True
        log.error("lease %s was taken over by %s", h.key.name, describe(current or {}))
        return
    h.content = {**h.content, "expires": _now() + h.ttl}
    tmp = h.path.with_name(f".{h.path.name}.{h.content['token']}.tmp")
    tmp.write_text(json.dumps(h.content))
    os.replace(tmp, h.path)


def _path(root: Path, key: LeaseKey) -> Path:
    return root / key.table / f"{key.month or _TABLE_WIDE}.json"


def _live_conflicts(root: Path, key: LeaseKey, own: Path) -> tuple[Path, dict[str, Any]] | None:
    """A live lease of another process that conflicts with ``key`` (the other granularity)."""
    folder = root / key.table
    others = [folder / f"{_TABLE_WIDE}.json"] if key.month is not None else list(folder.glob("*.json"))
    for path in others:
        if path == own or _REGISTRY.ours(path):
            continue
        holder = _read(path)
        if holder is None:
            continue
        if is_stale(holder):
            _take_over(path, holder, None)
            continue
        return path, holder
    return None


def _take_over(path: Path, stale: dict[str, Any], content: dict[str, Any] | None) -> bool:
    """Replace the stale lease at ``path`` with ``content`` (or just remove it when None), under a
    takeover lock so that two processes finding it stale do not both take it."""
    lock = path.with_name(path.name + ".takeover")
    if not _create(lock, {"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}):
        info = _read(lock) or {}
        if _now() - float(info.get("since", 0)) > _TAKEOVER_STALE_SECONDS or is_stale(
            {**info, "expires": float("inf")}
        ):
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
        return False
    try:
        again = _read(path)
        if again is not None and again.get("token") != stale.get("token"):
            return False  # someone else took it over meanwhile
        if again is not None:
            log.warning(
                "lease %s: taking over the stale lease of %s (expired %s)",
                path.relative_to(path.parent.parent),
                describe(stale),
                _iso(float(stale.get("expires", 0))),
            )
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return _create(path, content) if content is not None else True
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


def _try_acquire(root: Path, key: LeaseKey, content: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    """One attempt: (True, ours) or (False, the holder that stops us)."""
    path = _path(root, key)
    created = _create(path, content)
    if not created:
        holder = _read(path)
        if holder is None:
            return False, {"owner": "a process releasing it", "pid": "?", "host": "?", "since": "?"}
        if not is_stale(holder) or not _take_over(path, holder, content):
            return False, holder
    conflict = _live_conflicts(root, key, path)
    if conflict is not None:  # the other granularity is held: back off (it checks us the same way)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return False, conflict[1]
    return True, content


def acquire(cfg: Config, key: LeaseKey, owner: str) -> _Held | None:
    """Take ``key`` (waiting up to ``lake.lease.wait_seconds``); None when leases are disabled or this
    process already holds a covering lease (it then counts one more user)."""
    conf = cfg.lake.lease
    if not conf.enabled:
        return None
    root = lease_root(cfg)
    with _table_lock(root / key.table):  # threads of this process take a table's leases one at a time
        return _acquire(root, key, owner, conf.ttl_seconds, conf.wait_seconds)


_TABLE_LOCKS: dict[Path, threading.Lock] = {}


def _table_lock(folder: Path) -> threading.Lock:
    with _REGISTRY.lock:
        return _TABLE_LOCKS.setdefault(folder, threading.Lock())


def _acquire(root: Path, key: LeaseKey, owner: str, ttl: float, wait: float) -> _Held:
    with _REGISTRY.lock:
        held = _REGISTRY.covering(root, key)
        if held is not None:
            if held.lost:
                raise LeaseLostError(f"lease {held.key.name} was taken over while this run held it")
            held.count += 1
            return held
    deadline = _now() + wait
    while True:
        now = _now()
        content = {
            "key": key.name,
            "owner": owner,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": _iso(now),
            "started": now,
            "expires": now + ttl,
            "token": uuid.uuid4().hex,
        }
        ok, holder = _try_acquire(root, key, content)
        if ok:
            h = _Held(key, _path(root, key), content, ttl)
            with _REGISTRY.lock:
                _REGISTRY.held[h.path] = h
            _REGISTRY.start_heartbeat()
            log.debug("lease %s taken by %s", key.name, describe(content))
            return h
        if _now() >= deadline:
            raise LeaseHeldError(key.name, holder)
        time.sleep(_POLL_SECONDS)


def release(h: _Held | None) -> None:
    """One user fewer; the last removes the file (only if it is still ours)."""
    if h is None:
        return
    with _REGISTRY.lock:
        h.count -= 1
        if h.count > 0:
            return
        _REGISTRY.held.pop(h.path, None)
        current = _read(h.path)
        if current is not None and current.get("token") == h.content["token"]:
            with contextlib.suppress(FileNotFoundError):
                h.path.unlink()


def keys_for(tables: Iterable[str | LeaseKey], month: str | None) -> list[LeaseKey]:
    """Lease keys: a table name gets ``month`` (None: the whole table); a :class:`LeaseKey` is kept."""
    keys = {t if isinstance(t, LeaseKey) else LeaseKey(t, month) for t in tables}
    return sorted(keys, key=lambda k: (k.table, k.month or ""))


@contextlib.contextmanager
def hold(
    cfg: Config, tables: Iterable[str | LeaseKey], month: str | None, owner: str | None = None
) -> Iterator[list[LeaseKey]]:
    """Hold the leases of ``tables`` for ``month`` (a :class:`LeaseKey` in ``tables`` for another month
    or a whole table) while the block runs; acquired in sorted order, released in reverse."""
    keys = keys_for(tables, month)
    taken: list[_Held | None] = []
    try:
        for key in keys:
            taken.append(acquire(cfg, key, owner or current_owner()))
        yield keys
    finally:
        for h in reversed(taken):
            release(h)


def check_held(cfg: Config, keys: Iterable[LeaseKey]) -> None:
    """Raise :class:`LeaseLostError` if a lease this process holds for ``keys`` was taken over."""
    if not cfg.lake.lease.enabled:
        return
    root = lease_root(cfg)
    for key in keys:
        h = _REGISTRY.covering(root, key)
        if h is None:
            continue
        current = _read(h.path)
        if h.lost or current is None or current.get("token") != h.content["token"]:
            h.lost = True
            raise LeaseLostError(f"lease {key.name} was taken over while this run held it: not committing")


def holders(cfg: Config) -> list[dict[str, Any]]:
    """Every lease file under the lake (live or stale), for operators: ``key``, holder, ``stale``."""
    root = lease_root(cfg)
    out = []
    for path in sorted(root.glob("*/*.json")) if root.is_dir() else []:
        holder = _read(path)
        if holder is not None:
            out.append({**holder, "file": str(path), "stale": is_stale(holder)})
    return out


def stage_keys(stage: str, month: str) -> list[LeaseKey]:
    """The leases ``stage`` holds for ``month`` (:data:`pipelines.core.tables.STAGE_OUTPUTS`)."""
    from pipelines.core.tables import STAGE_OUTPUTS, STAGE_OUTPUTS_WHOLE

    return keys_for(
        [
            *(LeaseKey(t, month) for t in STAGE_OUTPUTS.get(stage, ())),
            *(LeaseKey(t) for t in STAGE_OUTPUTS_WHOLE.get(stage, ())),
        ],
        month,
    )


@contextlib.contextmanager
def hold_stage(cfg: Config, stage: str, month: str, owner: str | None = None) -> Iterator[list[LeaseKey]]:
    """Hold every lease ``stage`` needs for ``month`` while it runs: a second run of the same stage and
    month stops at its start (:class:`LeaseHeldError`), not between two of its tables."""
    with hold(cfg, stage_keys(stage, month), None, owner or stage) as keys:
        yield keys
