"""Daily warnings between the monthly runs (docs/daily-warnings.md).

- ``ingest``: a day's delivery of ``cdr``, ``care`` or ``port_requests`` into its daily table, checked and
  quarantined as a monthly delivery is;
- ``history``: what the triggers read, cut to what was known at the end of the day;
- ``triggers``: the triggers and the roll-up to line, customer and household (pure);
- ``stage``: ``daily_warnings_day``: ingest, triggers, offer and contact policy, the day's rows;
- ``evaluate``: each trigger's precision and lead time once the labels have matured.
"""

from pipelines.daily.evaluate import evaluate_daily
from pipelines.daily.stage import DailyReport, daily_warnings_day

__all__ = ["DailyReport", "daily_warnings_day", "evaluate_daily"]
