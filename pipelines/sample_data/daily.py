"""Daily deliveries from the generated months: ``<source>/day=YYYY-MM-DD/`` for cdr, care and port_requests.

The simulator works a month at a time; its CDRs and care contacts are dated to the second, so a month's
delivery is split by the day of each event: the silences, usage drops and complaints that precede a churn
land on the days they happened. A record dated before the month (a late record) or unreadable arrives on
the month's first day, as it would. ``port_requests`` comes from the snapshots: a port-out request one to
seven days before each port-out deactivation, a plan change and a contract-end change on a day of the
month a snapshot first shows them. Every day folder gets its ``_SUCCESS``; all files are CSV.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features import contract as C
from features.calendar import add_months, month_end, month_start

log = logging.getLogger(__name__)

SPLIT_SOURCES = ("cdr", "care")


def read_month_text(landing_root: Path, source: str, month: str) -> pa.Table | None:
    """Every readable file of a source-month as the contract's columns in text (unreadable files skipped)."""
    folder = landing_root / source / f"month={month}"
    if not folder.is_dir():
        return None
    names = list(C.columns(source))
    tables = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(("_", ".")):
            continue
        try:
            if path.name.endswith(".parquet"):
                table = pq.read_table(path, columns=names)
            else:
                table = pacsv.read_csv(
                    path,
                    convert_options=pacsv.ConvertOptions(
                        column_types={n: pa.string() for n in names},
                        include_columns=names,
                        strings_can_be_null=True,
                    ),
                )
        except (pa.ArrowInvalid, OSError, KeyError) as exc:
            log.info("daily split: %s skipped (%s)", path, str(exc).splitlines()[0][:120])
            continue
        tables.append(pa.table({n: _as_text(table[n]) for n in names}))
    return pa.concat_tables(tables) if tables else None


def _as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_timestamp(column.type):
        # to whole seconds first: Arrow's %S prints a finer unit's fraction, which the contract's
        # `YYYY-MM-DD HH:MM:SS` does not admit (nine digits are quarantined as unparseable)
        seconds = pc.cast(column, pa.timestamp("s", tz=column.type.tz), safe=False)
        return pc.strftime(seconds, format="%Y-%m-%d %H:%M:%S")
    if pa.types.is_boolean(column.type):
        return pc.if_else(column, "true", "false")
    return pc.cast(column, pa.string())


def _event_days(table: pa.Table, source: str, month: str) -> list[str]:
    first = month_start(month).isoformat()
    last = month_end(month).isoformat()
    out = []
    for text in table[C.EVENT_COLUMNS[source]].to_pylist():
        day = (text or "")[:10]
        valid = len(day) == 10 and day[4] == "-" and day[7] == "-"
        out.append(day if valid and first <= day <= last else first)
    return out


def _draw(*parts: str) -> int:
    return int(hashlib.sha256("|".join(parts).encode()).hexdigest()[:8], 16)


def _write_day(landing_root: Path, source: str, day: str, table: pa.Table) -> None:
    folder = landing_root / source / f"day={day}"
    folder.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(table, str(folder / f"{source}_{day}.csv"))
    (folder / C.SUCCESS_MARKER).touch()


def status_requests(snapshots: dict[str, pa.Table], month: str) -> list[dict[str, str | None]]:
    """The port-out, plan and contract-end requests dated in ``month``, from the snapshots around it."""
    rows: list[dict[str, str | None]] = []
    first, last = month_start(month), month_end(month)
    for snap_month in (month, add_months(month, 1)):
        snap = snapshots.get(snap_month)
        if snap is None:
            continue
        for r in snap.select(
            ["subscriber_id", "deactivation_date", "deactivation_reason", "port_out_operator"]
        ).to_pylist():
            if r["deactivation_reason"] != "port_out" or not r["deactivation_date"]:
                continue
            try:
                gone = dt.date.fromisoformat(r["deactivation_date"])
            except ValueError:
                continue
            day = gone - dt.timedelta(days=1 + _draw("port", r["subscriber_id"]) % 7)
            if first <= day <= last:
                rows.append(
                    _request(r["subscriber_id"], day, "port_out_request", port=r["port_out_operator"])
                )
    before, now = snapshots.get(add_months(month, -1)), snapshots.get(month)
    if before is not None and now is not None:
        old = {
            r["subscriber_id"]: r
            for r in before.select(["subscriber_id", "plan_id", "contract_end_date"]).to_pylist()
        }
        for r in now.select(["subscriber_id", "plan_id", "contract_end_date"]).to_pylist():
            prev = old.get(r["subscriber_id"])
            if prev is None:
                continue
            day = first + dt.timedelta(days=_draw("status", r["subscriber_id"], month) % (last.day))
            if r["plan_id"] and prev["plan_id"] and r["plan_id"] != prev["plan_id"]:
                rows.append(_request(r["subscriber_id"], day, "plan_change", plan=r["plan_id"]))
            if r["contract_end_date"] and r["contract_end_date"] != prev["contract_end_date"]:
                rows.append(
                    _request(r["subscriber_id"], day, "contract_end_change", end=r["contract_end_date"])
                )
    return rows


def _request(
    subscriber: str,
    day: dt.date,
    kind: str,
    *,
    port: str | None = None,
    plan: str | None = None,
    end: str | None = None,
) -> dict[str, str | None]:
    hour = _draw(kind, subscriber, day.isoformat()) % 10 + 9
    return {
        "request_id": f"PR{subscriber}{day:%Y%m%d}{kind[:2]}",
        "subscriber_id": subscriber,
        "request_ts": f"{day.isoformat()} {hour:02d}:00:00",
        "request_type": kind,
        "plan_id": plan,
        "contract_end_date": end,
        "port_out_operator": port,
    }


def write_daily_deliveries(landing_root: str | Path, months: Sequence[str]) -> dict[str, int]:
    """Split ``months`` of the landing zone into daily deliveries; returns the rows written per source."""
    root = Path(landing_root)
    written = dict.fromkeys((*SPLIT_SOURCES, "port_requests"), 0)
    around = sorted({add_months(m, k) for m in months for k in (-1, 0, 1)})
    snapshots = {m: t for m in around if (t := read_month_text(root, "subscriptions", m)) is not None}
    for month in months:
        for source in SPLIT_SOURCES:
            table = read_month_text(root, source, month)
            if table is None:
                continue
            days = pa.array(_event_days(table, source, month))
            for day in sorted(set(days.to_pylist())):
                part = table.filter(pc.equal(days, day))
                _write_day(root, source, day, part)
                written[source] += part.num_rows
        requests = status_requests(snapshots, month)
        names = list(C.columns("port_requests"))
        by_day: dict[str, list[dict[str, str | None]]] = {}
        for r in requests:
            by_day.setdefault(str(r["request_ts"])[:10], []).append(r)
        day = month_start(month)
        while day <= month_end(month):  # every day has a delivery, empty or not
            rows = by_day.get(day.isoformat(), [])
            table = pa.table({n: pa.array([r[n] for r in rows], pa.string()) for n in names})
            _write_day(root, "port_requests", day.isoformat(), table)
            written["port_requests"] += len(rows)
            day += dt.timedelta(days=1)
    return written
