"""What every job shares: arguments, layered config, logging, exit status.

A job is ``main(argv) -> int``: 0 on success; non-zero with a one-line reason on stderr otherwise.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipelines.core import interrupt, lease
from pipelines.core.config import Config, ConfigError, effective_config_yaml, load_config, local_path
from pipelines.core.privacy import PseudonymKeyError, pseudonym_key

log = logging.getLogger("churnlake")

_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_RAISED = re.compile(r"^[\w.]*(Error|Exception|Interrupt|Exit)\b.*")


# loggers whose INFO lines go to the log file only (unless --verbose): one line per Delta commit
FILE_ONLY_LOGGERS = ("pipelines.core.delta",)


class _ConsoleFilter(logging.Filter):
    """Keep the console to progress: no per-commit lines, nothing marked ``extra={"console": False}``."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "console", True):
            return False
        if self.verbose or record.levelno >= logging.WARNING:
            return True
        return not record.name.startswith(FILE_ONLY_LOGGERS)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (a test harness swaps and closes its streams)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(level: int = logging.INFO) -> None:
    """Configure stdlib logging once (jobs only); Spark's own log level is set by the session factory."""
    root = logging.getLogger()
    if not any(getattr(h, "_churnlake", False) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        handler.addFilter(_ConsoleFilter(level <= logging.DEBUG))
        handler._churnlake = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("py4j", "urllib3", "alembic", "matplotlib", "numba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log_file_path(cfg: Config, stage: str) -> Path | None:
    """``<lake.root>/_logs/<stage>-<time>-<pid>.log`` for a lake on a local file system (else None)."""
    root = local_path(str(cfg.lake_root))
    if root is None:
        return None
    folder = Path(root) / "_logs"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return folder / f"{stage}-{stamp}-{os.getpid()}.log"


def attach_log_file(path: Path, level: int) -> logging.Handler | None:
    """Everything the job logs (all loggers, the effective config) also goes to ``path``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path)
    except OSError as exc:
        log.warning("no log file at %s: %s", path, exc)
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level)
    logging.getLogger().addHandler(handler)
    return handler


def apply_file_modes(cfg: Config) -> int:
    """Set the process umask from ``privacy.file_mode`` / ``dir_mode``; returns the previous one.

    Set before the log file and the Spark session exist, it holds for everything the job creates: the
    log, the Delta files Spark stages and the bridge moves, delta-rs commits, the MLflow store (the local
    Spark JVM and its Python workers inherit it). A cluster's executors keep their own umask
    (docs/operations.md#personal-data)."""
    return os.umask(cfg.privacy.umask)


def month_type(text: str) -> str:
    """argparse type for ``YYYY-MM``."""
    if not _MONTH.match(text):
        raise argparse.ArgumentTypeError(f"month must be YYYY-MM, got {text!r}")
    return text


def month_range(text: str) -> list[str]:
    """``2024-01..2024-12`` (inclusive) or a comma list or a single month -> list of months."""
    from features.calendar import months_between

    if ".." in text:
        first, last = text.split("..", 1)
        month_type(first)
        month_type(last)
        months = months_between(first, last)
        if not months:
            raise argparse.ArgumentTypeError(f"empty month range {text!r}")
        return months
    return [month_type(m.strip()) for m in text.split(",") if m.strip()]


def day_range(text: str) -> list[str]:
    """``2024-06-01..2024-06-07`` (inclusive), a comma list or a single day ``YYYY-MM-DD`` -> list of days."""
    import datetime as dt

    def one(day: str) -> dt.date:
        try:
            return dt.date.fromisoformat(day.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"day must be YYYY-MM-DD, got {day!r}") from None

    if ".." in text:
        first, last = (one(t) for t in text.split("..", 1))
        if last < first:
            raise argparse.ArgumentTypeError(f"empty day range {text!r}")
        return [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    return [one(d).isoformat() for d in text.split(",") if d.strip()]


def job_parser(description: str, *, month: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    if month:
        parser.add_argument("--month", type=month_type, required=True, help="month to process, YYYY-MM")
    parser.add_argument("--conf", action="append", default=[], help="config overlay YAML (repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser


def sample_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The generator's options (``generate_sample_data``, ``closed_loop``); None keeps ``sample_data.*``."""
    parser.add_argument("--months", type=month_range, required=True, help="YYYY-MM..YYYY-MM (inclusive)")
    parser.add_argument("--subscribers", type=int, default=None, help="size of the subscriber base")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--bad-rows", type=float, default=None, help="share of rows to corrupt (quarantine)")
    parser.add_argument("--format", choices=["csv", "parquet", "mixed"], default=None)


def one_line(exc: BaseException, limit: int = 600) -> str:
    """The first line of an error (a JVM error's message, not its stack trace), at most ``limit`` chars."""
    lines = [" ".join(line.split()) for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    if "Traceback (most recent call last)" in str(exc):  # a Python worker's error: its own last line
        raised = [line for line in lines if _RAISED.match(line)]
        text = raised[-1] if raised else text
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_job(
    stage: str,
    parser: argparse.ArgumentParser,
    body: Callable[[argparse.Namespace, Config], Any],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse, load config, run ``body``; map every failure to a one-line reason and exit status 1 (or the
    error's ``exit_status``: 75 when a lease is held elsewhere); SIGTERM stops it between commits (143)."""
    args = parser.parse_args(argv)
    interrupt.install()
    lease.set_owner(stage)
    configure_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        cfg = load_config(args.conf, args.set)
    except ConfigError as exc:
        print(f"ERROR {stage}: {exc}", file=sys.stderr)
        return 2
    apply_file_modes(cfg)
    try:
        pseudonym_key(cfg.privacy)  # a missing key stops the job before anything is written
    except PseudonymKeyError as exc:
        print(f"ERROR {stage}: {exc}", file=sys.stderr)
        return 2
    path = log_file_path(cfg, stage)
    handler = attach_log_file(path, logging.DEBUG if args.verbose else logging.INFO) if path else None
    log.info(
        "effective config (hash %s):\n%s",
        cfg.config_hash(),
        effective_config_yaml(cfg),
        extra={"console": False},
    )
    log.info("%s: config hash %s; effective config and full log in %s", stage, cfg.config_hash(), path)
    t0 = time.perf_counter()
    try:
        return _run_body(stage, body, args, cfg, t0)
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()


def _run_body(
    stage: str,
    body: Callable[[argparse.Namespace, Config], Any],
    args: argparse.Namespace,
    cfg: Config,
    t0: float,
) -> int:
    try:
        body(args, cfg)
    except KeyboardInterrupt:
        print(f"ERROR {stage}: interrupted", file=sys.stderr)
        return 130
    except interrupt.Terminated:
        print(
            f"ERROR {stage}: stopped by SIGTERM between commits; the run is recorded as interrupted",
            file=sys.stderr,
        )
        return interrupt.EXIT_TERMINATED
    except Exception as exc:
        log.error("%s failed", stage, exc_info=True, extra={"console": False})  # the traceback: log file
        reason = one_line(exc)
        print(f"ERROR {stage}: {type(exc).__name__}: {reason}", file=sys.stderr)
        return int(getattr(exc, "exit_status", 1))  # the monthly run: which stage stopped it
    log.info("%s finished in %.1fs", stage, time.perf_counter() - t0)
    return 0
