"""Month arithmetic on ``YYYY-MM`` strings (pure; time is always a parameter)."""

from __future__ import annotations

import calendar
import datetime as dt


def parse_month(month: str) -> tuple[int, int]:
    year, mon = month.split("-")
    return int(year), int(mon)


def add_months(month: str, n: int) -> str:
    year, mon = parse_month(month)
    index = year * 12 + (mon - 1) + n
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def months_between(first: str, last: str) -> list[str]:
    """Inclusive list of months from ``first`` to ``last`` (empty when last < first)."""
    out = []
    cur = first
    while cur <= last:
        out.append(cur)
        cur = add_months(cur, 1)
    return out


def month_start(month: str) -> dt.date:
    year, mon = parse_month(month)
    return dt.date(year, mon, 1)


def month_end(month: str) -> dt.date:
    """Last day of the month."""
    year, mon = parse_month(month)
    return dt.date(year, mon, calendar.monthrange(year, mon)[1])


def days_in_month(month: str) -> int:
    year, mon = parse_month(month)
    return calendar.monthrange(year, mon)[1]
