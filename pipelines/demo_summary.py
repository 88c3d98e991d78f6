"""Print where the demo's outputs are and what they hold (``make demo`` ends with this)."""

from __future__ import annotations

import sys

from pipelines.config import load_config
from pipelines.runner import job_parser


def main(argv: list[str] | None = None) -> int:
    args = job_parser("demo summary", month=False).parse_args(argv)
    cfg = load_config(args.conf, args.set)
    from pipelines.sql import duckdb_connect

    con = duckdb_connect()
    print("\nLanding zone:", cfg.landing_root)
    print("Lake (Delta tables):", cfg.lake_root)
    for name in (
        "subscriptions",
        "cdr",
        "billing",
        "care",
        "campaign_outcomes",
        "quarantine",
        "data_quality",
        "pipeline_runs",
    ):
        path = cfg.table_path(name)
        try:
            rows = con.execute(f"SELECT count(*) FROM delta_scan('{path}')").fetchone()[0]
        except Exception:
            rows = "-"
        print(f"  {name:<18} {rows:>10}  {path}")
    try:
        dq = con.execute(
            f"SELECT source, month, rows_read, rows_loaded, rows_quarantined, duplicates, publishable "
            f"FROM delta_scan('{cfg.table_path('data_quality')}') WHERE source = 'cdr' ORDER BY month"
        ).fetchall()
        print("\nCDR data quality by month (read, loaded, quarantined, duplicates, publishable):")
        for row in dq:
            print("  ", *row)
    except Exception:
        pass
    print("\nQuery with SQL, no Spark needed:")
    quarantine = cfg.table_path("quarantine")
    print("  from pipelines.sql import duckdb_connect")
    print(f"  duckdb_connect().sql(\"SELECT * FROM delta_scan('{quarantine}') LIMIT 5\").show()")
    return 0


if __name__ == "__main__":
    sys.exit(main())
