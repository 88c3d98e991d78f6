"""The run manifest: one row per stage run in the ``pipeline_runs`` Delta table."""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from pyspark.sql import types as T

from pipelines.core.config import PROJECT_ROOT, Config
from pipelines.core.interrupt import Terminated
from pipelines.core.lake import Lake

log = logging.getLogger(__name__)

RUNS_SCHEMA = (
    "run_id string, stage string, month string, started_at timestamp, ended_at timestamp, duration_s double, "
    "status string, config_hash string, code_version string, input_versions string, output_versions string, "
    "model_versions string, row_counts string, flags string, error string, scope string, fingerprint string"
)
# what the monthly run fingerprints a stage run with (its inputs), recorded with it to skip identical reruns
_FINGERPRINT: ContextVar[str | None] = ContextVar("stage_fingerprint", default=None)


@contextmanager
def fingerprinted(fingerprint: str) -> Iterator[None]:
    """Runs recorded inside this block carry ``fingerprint`` (the inputs the monthly run saw)."""
    token = _FINGERPRINT.set(fingerprint)
    try:
        yield
    finally:
        _FINGERPRINT.reset(token)


def code_version() -> str:
    """``git describe`` of the checkout when available, else the installed package version."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        try:
            return metadata.version("churnlake")
        except metadata.PackageNotFoundError:
            return "unknown"


@dataclass
class RunRecord:
    """What a stage fills in while it runs; written to ``pipeline_runs`` when it ends."""

    stage: str
    month: str | None
    # what part of the stage ran, when it runs in parts (ingest: the source)
    scope: str | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    input_versions: dict[str, int | None] = field(default_factory=dict)
    output_versions: dict[str, int | None] = field(default_factory=dict)
    model_versions: dict[str, Any] = field(default_factory=dict)
    row_counts: dict[str, int] = field(default_factory=dict)
    flags: dict[str, Any] = field(default_factory=dict)


@contextmanager
def recorded_run(
    lake: Lake, stage: str, month: str | None, *, scope: str | None = None
) -> Iterator[RunRecord]:
    """Record a stage run: success or failure (with the error), timings and table versions."""
    record = RunRecord(stage=stage, month=month, scope=scope)
    started = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    t0 = time.perf_counter()
    status, error = "success", None
    try:
        yield record
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, Terminated) else "failed"
        error = f"{type(exc).__name__}: {exc}"[:2000]
        raise
    finally:
        _write_run(lake, lake.cfg, record, started, time.perf_counter() - t0, status, error)


def record_skip(lake: Lake, stage: str, month: str | None, why: str) -> None:
    """Record that the monthly run skipped a stage (``status = skipped``, the reason in ``flags``)."""
    record = RunRecord(stage=stage, month=month, flags={"skipped": why})
    _write_run(lake, lake.cfg, record, dt.datetime.now(dt.UTC).replace(tzinfo=None), 0.0, "skipped", None)


def record_interrupted(lake: Lake, stage: str, month: str | None, during: str) -> None:
    """Record that a run stopped on SIGTERM (``status = interrupted``; what it was doing in ``flags``)."""
    record = RunRecord(stage=stage, month=month, flags={"interrupted_during": during})
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    _write_run(lake, lake.cfg, record, now, 0.0, "interrupted", "Terminated: stopped by SIGTERM")


def _write_run(
    lake: Lake,
    cfg: Config,
    record: RunRecord,
    started: dt.datetime,
    duration: float,
    status: str,
    error: str | None,
) -> None:
    as_json = ("input_versions", "output_versions", "model_versions", "row_counts", "flags")
    values = {
        k: json.dumps(v, sort_keys=True, default=str) if k in as_json else v for k, v in vars(record).items()
    }
    row = {
        **values,
        "started_at": started,
        "ended_at": started + dt.timedelta(seconds=duration),
        "duration_s": round(duration, 3),
        "status": status,
        "config_hash": cfg.config_hash(),
        "code_version": code_version(),
        "error": error,
        "fingerprint": _FINGERPRINT.get(),
    }
    schema = T._parse_datatype_string(RUNS_SCHEMA)
    try:
        values = [tuple(row[f.name] for f in schema.fields)]
        lake.write_rows(values, schema, "pipeline_runs", merge_schema=True)  # lakes from older versions
    except Exception:  # the manifest must never hide the stage's own error
        log.exception("could not record run %s of %s", record.run_id, record.stage)
