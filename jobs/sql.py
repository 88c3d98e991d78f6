"""Job: run SQL over the lake tables (each one a view under its name) and print the result.

python jobs/sql.py --query "SELECT risk_band, count(*) FROM warning_list GROUP BY 1" [--engine spark]
    [--csv out.csv]
python jobs/sql.py --query-env NAME   (the query from an environment variable: ``make sql`` passes Q so)

One read-only query only: anything else (several statements, COPY, SET, ATTACH, a write) exits 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.core.runner import job_parser, run_job


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__, month=False)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--query", "-q", help="one SQL query; tables are views named as in lake.tables")
    source.add_argument("--query-env", metavar="NAME", help="read the query from environment variable NAME")
    parser.add_argument("--engine", choices=["duckdb", "spark"], default="duckdb")
    parser.add_argument("--csv", type=Path, default=None, help="also write the result to this CSV file")
    parser.add_argument("--max-rows", type=int, default=50, help="rows to print (the CSV gets all)")

    def body(args, cfg):
        from pipelines.sql import print_result, query_from_env, run_sql

        query = args.query if args.query is not None else query_from_env(args.query_env)
        print_result(run_sql(cfg, query, engine=args.engine), max_rows=args.max_rows, csv=args.csv)

    return run_job("sql", parser, body, argv)


if __name__ == "__main__":
    sys.exit(main())
