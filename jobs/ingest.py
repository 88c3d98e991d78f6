"""Job: ingest one month of landing extracts into the silver Delta tables.

python jobs/ingest.py --month 2024-03 [--sources cdr,billing] [--allow-incomplete] [--override-gates]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.core.runner import job_parser, run_job


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--sources", default=None, help="comma list of sources (default: all)")
    parser.add_argument("--allow-incomplete", action="store_true", help="load month folders without _SUCCESS")
    parser.add_argument("--override-gates", action="store_true", help="publish despite failed quality gates")

    def body(args, cfg):
        from pipelines.core.lease import hold_stage
        from pipelines.core.spark import get_spark
        from pipelines.ingest import ingest_month

        sources = [s.strip() for s in args.sources.split(",")] if args.sources else None
        with hold_stage(cfg, "ingest", args.month):
            ingest_month(
                get_spark(cfg),
                cfg,
                args.month,
                sources=sources,
                allow_incomplete=args.allow_incomplete,
                override_gates=args.override_gates,
            )

    return run_job("ingest", parser, body, argv)


if __name__ == "__main__":
    sys.exit(main())
