"""What every job shares: arguments, layered config, logging, exit status.

A job is ``main(argv) -> int``: 0 on success; non-zero with a one-line reason on stderr otherwise.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from pipelines.core.config import Config, ConfigError, effective_config_yaml, load_config

log = logging.getLogger("churnlake")

_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_RAISED = re.compile(r"^[\w.]*(Error|Exception|Interrupt|Exit)\b.*")


def configure_logging(level: int = logging.INFO) -> None:
    """Configure stdlib logging once (jobs only); Spark's own log level is set by the session factory."""
    root = logging.getLogger()
    if not any(getattr(h, "_churnlake", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        handler._churnlake = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("py4j", "urllib3", "alembic", "matplotlib", "numba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


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


def job_parser(description: str, *, month: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    if month:
        parser.add_argument("--month", type=month_type, required=True, help="month to process, YYYY-MM")
    parser.add_argument("--conf", action="append", default=[], help="config overlay YAML (repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser


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
    """Parse, load config, run ``body``; map every failure to a one-line reason and exit status 1."""
    args = parser.parse_args(argv)
    configure_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        cfg = load_config(args.conf, args.set)
    except ConfigError as exc:
        print(f"ERROR {stage}: {exc}", file=sys.stderr)
        return 2
    log.info("effective config (hash %s):\n%s", cfg.config_hash(), effective_config_yaml(cfg))
    t0 = time.perf_counter()
    try:
        body(args, cfg)
    except KeyboardInterrupt:
        print(f"ERROR {stage}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        log.debug("stage %s failed", stage, exc_info=True)
        reason = one_line(exc)
        print(f"ERROR {stage}: {type(exc).__name__}: {reason}", file=sys.stderr)
        return 1
    log.info("%s finished in %.1fs", stage, time.perf_counter() - t0)
    return 0
