"""Stage: every stage of one month, in order (ingest, features and labels, training when due, scoring,
evaluation of the matured months, the uplift model's fit and decision, offer matching with the effects
measured so far and the promoted uplift model, then housekeeping on its schedule).

Resumable: each stage run is fingerprinted with what it reads (the landing files for ingest, the Delta
versions of its input tables, the champion for scoring, the config hash and the code version) and a stage
whose last run for the month succeeded on the same inputs is skipped (recorded as ``skipped``), unless
``force``. An input counts as the same when its version is the one the last run read, or one written
since by this stage or a later one of the same month (matching rewrites the assignments evaluation read). A
failed stage stops the run: :class:`StageFailedError` carries the stage's exit status.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pyspark.sql import SparkSession

from features import contract as C
from pipelines.build_features import FeatureReport, build_features_month
from pipelines.core.config import Config
from pipelines.core.delta import DamagedTableError, MissingTableError
from pipelines.core.errors import InputNotReadyError
from pipelines.core.interrupt import Terminated, stop_if_requested
from pipelines.core.lake import Lake
from pipelines.core.lease import LeaseHeldError, LeaseKey, hold, hold_stage
from pipelines.core.manifest import code_version, fingerprinted, record_interrupted, record_skip
from pipelines.core.maturity import labelled_months, training_window
from pipelines.core.runner import one_line
from pipelines.evaluate import EvaluateReport, evaluate_month
from pipelines.housekeeping import (
    HousekeepingReport,
    housekeeping_due,
    housekeeping_month,
    housekeeping_tables,
)
from pipelines.ingest import ingest_month
from pipelines.match_offers import MatchReport, match_offers_month
from pipelines.score import ScoreReport, score_month, sustained_drift
from pipelines.train import TrainResult, train_month
from pipelines.uplift import UpliftReport, uplift_month

log = logging.getLogger(__name__)

STAGES = ("ingest", "build_features", "train", "score", "evaluate", "uplift", "match_offers", "housekeeping")
# the exit status of a monthly run that stopped at a stage (1: before any stage, e.g. no Spark); a stage
# added later takes the next free number, so a scheduler's mapping of the others stays
EXIT_STATUS = {
    "ingest": 10,
    "build_features": 11,
    "train": 12,
    "score": 13,
    "evaluate": 14,
    "match_offers": 15,
    "uplift": 16,
    "housekeeping": 17,
}
STAGE_INPUTS = {
    "ingest": (),
    "build_features": ("subscriptions", "cdr", "billing", "care", "campaign_outcomes"),
    "train": ("features_monthly", "labels_monthly"),
    "score": ("features_monthly",),
    "evaluate": ("warning_list", "labels_monthly", "offer_assignments", "campaign_outcomes"),
    "uplift": ("offer_assignments", "labels_monthly", "warning_list", "features_monthly"),
    "match_offers": (
        "warning_list",
        "features_monthly",
        "offer_effects",
        "offer_assignments",
        "campaign_outcomes",
    ),
    "housekeeping": (),  # every table but pipeline_runs: MonthRun.stage fills them in from the config
}


class StageFailedError(RuntimeError):
    """A stage of the monthly run failed; ``exit_status`` says which (:data:`EXIT_STATUS`)."""

    def __init__(self, stage: str, month: str, cause: BaseException) -> None:
        self.stage, self.month, self.exit_status = stage, month, EXIT_STATUS[stage]
        super().__init__(f"stage {stage} of {month} failed: {type(cause).__name__}: {one_line(cause)}")


@dataclass
class StageOutcome:
    month: str
    stage: str
    status: str  # ran, skipped, not_due
    seconds: float = 0.0
    detail: str = ""


def landing_fingerprint(cfg: Config, month: str) -> dict[str, Any]:
    """Every file of ``month``'s delivery folders: name, size and modification time."""
    files = {}
    for source in C.SOURCES:
        folder = Path(cfg.landing_root) / source / f"month={month}"
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                st = path.stat()
                files[f"{source}/{path.name}"] = [st.st_size, st.st_mtime_ns]
    return {"landing": hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]}


def _rewritten_later(runs: list[Any], stage: str, since: Any) -> dict[str, set[int]]:
    """Table versions written since ``since`` by successful runs of ``stage`` or the stages after it
    (matching rewrites the assignments the evaluation read; an earlier stage's rewrite is a change)."""
    later = set(STAGES[STAGES.index(stage) :])
    out: dict[str, set[int]] = {}
    for r in runs:
        if r.stage in later and r.status == "success" and r.ended_at >= since and r.output_versions:
            for table, version in json.loads(r.output_versions).items():
                if version is not None:
                    out.setdefault(table, set()).add(int(version))
    return out


def unchanged_since(runs: list[Any], stage: str, fingerprint: dict[str, Any]) -> str | None:
    """Why ``stage`` can be skipped (every run of its last attempt succeeded on the same inputs), or None.

    An attempt is one call of the stage by the monthly run (ingest records one run per source in it).
    """
    # an interrupted run (SIGTERM) makes its attempt incomplete, like a failure
    done = ("success", "failed", "interrupted")
    own = [r for r in runs if r.stage == stage and r.status in done and r.fingerprint]
    if not own:
        return None
    last = max(own, key=lambda r: r.ended_at)
    before = json.loads(last.fingerprint)
    attempt = [r for r in own if json.loads(r.fingerprint).get("attempt") == before.get("attempt")]
    if any(r.status != "success" for r in attempt):
        return None
    ignored = ("tables", "attempt")
    if {k: v for k, v in before.items() if k not in ignored} != {
        k: v for k, v in fingerprint.items() if k not in ignored
    }:
        return None
    allowed = _rewritten_later(runs, stage, min(r.started_at for r in attempt))
    for table, version in fingerprint["tables"].items():
        if version != before["tables"].get(table) and version not in allowed.get(table, set()):
            return None
    return f"same inputs as run {last.run_id} ({last.ended_at:%Y-%m-%d %H:%M})"


class MonthRun:
    """The stages of one month: fingerprint, skip or run, log progress, stop on failure."""

    def __init__(self, lake: Lake, month: str, *, force: bool, position: str) -> None:
        self.lake, self.month, self.force, self.position = lake, month, force, position
        self.outcomes: list[StageOutcome] = []
        self._code = code_version()
        self._earlier: list[Any] | None = None
        self.current: str | None = None  # the stage running now

    def _runs(self) -> list[Any]:
        """The month's runs recorded before this pass (read once: a stage this pass ran changes the
        inputs of the stages after it, so their fingerprints differ anyway)."""
        if self._earlier is None:
            self._earlier = []
            with run_history_errors():
                runs = self.lake.read_rows("pipeline_runs") if self.lake.exists("pipeline_runs") else []
                if runs and "fingerprint" in runs[0]:
                    self._earlier = [SimpleNamespace(**r) for r in runs if r["month"] == self.month]
        return self._earlier

    def stage(self, stage: str, call: Callable[[], Any], **inputs: Any) -> Any:
        """Run ``call`` as ``stage`` unless its inputs are unchanged since its last successful run."""
        stop_if_requested(f"stage {stage}")
        cfg = self.lake.cfg
        fingerprint = {
            "config": cfg.config_hash(),
            "code": self._code,
            **inputs,
            "tables": self.lake.versions(_inputs(cfg, stage)),
        }
        if not self.force and (why := unchanged_since(self._runs(), stage, fingerprint)):
            record_skip(self.lake, stage, self.month, why)
            log.info("%s %s %s: skipped, %s", self.position, self.month, stage, why)
            self.outcomes.append(StageOutcome(self.month, stage, "skipped", detail=why))
            return None
        log.info("%s %s %s ...", self.position, self.month, stage)
        self.current = stage
        t0 = time.perf_counter()
        attempt = {**fingerprint, "attempt": uuid.uuid4().hex[:12]}
        try:
            with (
                fingerprinted(json.dumps(attempt, sort_keys=True)),
                hold_stage(cfg, stage, self.month, f"monthly {self.month} {stage}"),
            ):
                result = call()
        except LeaseHeldError:
            raise  # another run writes this stage's tables: exit 75 with its holder, not the stage's status
        except Exception as exc:
            raise StageFailedError(stage, self.month, exc) from exc
        seconds = time.perf_counter() - t0
        detail = summary(result)
        log.info(
            "%s %s %s done in %.1fs%s",
            self.position,
            self.month,
            stage,
            seconds,
            f": {detail}" if detail else "",
        )
        self.current = None
        self.outcomes.append(StageOutcome(self.month, stage, "ran", seconds, detail))
        return result

    def not_due(self, stage: str, why: str) -> None:
        log.info("%s %s %s: not run, %s", self.position, self.month, stage, why)
        self.outcomes.append(StageOutcome(self.month, stage, "not_due", detail=why))


def _inputs(cfg: Config, stage: str) -> Sequence[str]:
    """The tables whose versions fingerprint ``stage`` (housekeeping: every table it tidies except the
    run records, which every stage run appends to)."""
    if stage == "housekeeping":
        return [t for t in housekeeping_tables(cfg) if t != "pipeline_runs"]
    return STAGE_INPUTS[stage]


def summary(result: Any) -> str:
    """A short count line of a stage's report for the progress log."""
    match result:
        case dict():  # ingest: source -> report
            return ", ".join(
                f"{s} {r.rows_loaded:,} loaded, {r.rows_quarantined:,} quarantined" for s, r in result.items()
            )
        case FeatureReport():
            return f"{result.subscribers:,} subscribers, {result.hard_warnings:,} hard warnings"
        case TrainResult():
            verdict = (
                f"champion, refitted as version {result.served_version}"
                if result.promoted
                else "not promoted"
            )
            return f"version {result.version} ({verdict}), {sum(result.rows.values()):,} rows"
        case ScoreReport():
            bands = ", ".join(f"{k} {v:,}" for k, v in sorted(result.bands.items()))
            drift = len(result.drift_warnings)
            return (
                f"{result.subscribers:,} scored by version {result.version} ({bands}), {drift} drift warnings"
            )
        case EvaluateReport():
            return (
                f"measured score months {', '.join(result.score_months)}"
                if result.score_months
                else "nothing matured yet"
            )
        case UpliftReport():
            return f"{result.status}: {result.decision[-1]}" if result.decision else result.status
        case HousekeepingReport():
            compacted = sum(t.files_compacted for t in result.tables.values())
            vacuumed = sum(t.files_vacuumed for t in result.tables.values())
            return (
                f"{len(result.tables)} tables: {compacted:,} small files compacted, {vacuumed:,} files "
                f"vacuumed; {len(result.quarantine_months_nulled)} quarantine months nulled, "
                f"{result.logs_removed} log files removed"
            )
        case MatchReport():
            return (
                f"{result.assigned:,} assigned, {result.holdout:,} held out, spend {result.spend:,.0f} of "
                f"{result.budget:,.0f} ({result.method})"
            )
    return ""


def run_monthly(
    spark: SparkSession,
    cfg: Config,
    months: Sequence[str],
    *,
    force: bool = False,
    allow_incomplete: bool = False,
    override_gates: bool = False,
) -> list[StageOutcome]:
    """Run every stage for each month, oldest first; raise :class:`StageFailedError` at the first failure.

    Each month runs under the ``monthly/<month>`` lease and each stage under the leases of what it writes
    (:func:`pipelines.core.lease.hold_stage`): a second monthly run of the month started meanwhile stops
    with :class:`LeaseHeldError` (exit status 75) naming the holder. On SIGTERM the stage in progress
    stops after its current commit and the run is recorded as ``interrupted``.
    """
    from pipelines.core.tracking import open_in_background

    lake = Lake(spark, cfg)
    with run_history_errors():  # before any stage, --force or not: every stage's record goes there
        check_recorded_tables(lake)
    started = dt.datetime.now(dt.UTC)  # the run's time: housekeeping's log retention counts from it
    open_in_background(cfg)  # beside the first ingest: a new store takes seconds to create
    outcomes: list[StageOutcome] = []
    for i, month in enumerate(months, 1):
        run = MonthRun(lake, month, force=force, position=f"[{i}/{len(months)}]")
        try:
            with hold(cfg, [LeaseKey("monthly", month)], None, "monthly"):
                _run_month(spark, cfg, lake, run, month, force, allow_incomplete, override_gates, started)
        except Terminated:
            during = run.current or "between stages"
            record_interrupted(lake, "monthly", month, during)
            log.warning("%s %s: stopped by SIGTERM during %s", run.position, month, during)
            raise
        outcomes.extend(run.outcomes)
    return outcomes


@contextlib.contextmanager
def run_history_errors() -> Iterator[None]:
    """A damaged ``pipeline_runs`` stops the run with its one line and the way out: the history cannot be
    trusted to skip a stage, nor written to record one."""
    try:
        yield
    except DamagedTableError as exc:
        hint = "restore that file, or move the table aside (the history restarts and every stage reruns)"
        raise type(exc)(exc.table, exc.file, f"{exc.reason}; {hint}") from exc


def check_recorded_tables(lake: Lake) -> None:
    """Raise :class:`~pipelines.core.delta.MissingTableError` for a table ``pipeline_runs`` records a
    version of that is gone: a stage would take it for one never written and carry on without its rows."""
    if not lake.exists("pipeline_runs"):
        return
    recorded: dict[str, tuple[int, str, str]] = {}  # table -> its newest recorded version, by whom
    for r in lake.read_rows("pipeline_runs", columns=["stage", "month", "status", "output_versions"]):
        if r["status"] == "success" and r["output_versions"]:
            for table, version in json.loads(r["output_versions"]).items():
                if version is not None and table in lake.cfg.lake.tables:
                    recorded[table] = max(
                        recorded.get(table, (-1, "", "")), (int(version), r["stage"], r["month"])
                    )
    for table, (version, stage, month) in sorted(recorded.items()):
        if not lake.exists(table):
            what = f"no Delta table, but pipeline_runs records its version {version} ({stage} of {month})"
            raise MissingTableError(table, lake.path(table), what)


def _run_month(
    spark: SparkSession,
    cfg: Config,
    lake: Lake,
    run: MonthRun,
    month: str,
    force: bool,
    allow_incomplete: bool,
    override_gates: bool,
    started: dt.datetime,
) -> None:
    """The stages of one month, in order (:func:`run_monthly`)."""
    flags = {"allow_incomplete": allow_incomplete, "override_gates": override_gates}
    run.stage(
        "ingest",
        lambda m=month: ingest_month(
            spark, cfg, m, allow_incomplete=allow_incomplete, override_gates=override_gates
        ),
        **landing_fingerprint(cfg, month),
        flags=flags,
    )
    run.stage("build_features", lambda m=month: build_features_month(spark, cfg, m))
    reason = train_due(lake, month, force=force)
    if reason:
        run.stage("train", lambda m=month, r=reason: train_month(spark, cfg, m, reason=r), due=reason)
    else:
        run.not_due("train", "not due")
    champion = champion_version(cfg)
    if champion is None:
        for stage in ("score", "evaluate", "uplift", "match_offers"):
            run.not_due(stage, "no champion model yet")
    else:
        run.stage("score", lambda m=month: score_month(spark, cfg, m), champion=champion)
        run.stage("evaluate", lambda m=month: evaluate_month(spark, cfg, m))
        if cfg.uplift.enabled:
            run.stage("uplift", lambda m=month: uplift_month(spark, cfg, m))
        else:
            run.not_due("uplift", "uplift.enabled is false")
        run.stage(
            "match_offers",
            lambda m=month: match_offers_month(spark, cfg, m),
            uplift=uplift_version(cfg),
        )
    if due := housekeeping_due(cfg, month):
        run.stage("housekeeping", lambda m=month: housekeeping_month(lake, m, now=started), due=due)
    else:
        run.not_due("housekeeping", "not scheduled this month")


def drift_since(lake: Lake, champion: str, last: str, month: str) -> str | None:
    """``sustained_drift: ...`` when the latest ``score.drift_months`` score months from ``last`` (the last
    training) to before ``month``, scored by the champion, all drifted (``score_monitoring``)."""
    if not lake.exists("score_monitoring"):
        return None
    rows = [
        r
        for r in lake.read_rows(
            "score_monitoring", columns=["score_month", "kind", "warning", "model_version"]
        )
        if last <= r["score_month"] < month
    ]
    return sustained_drift(rows, champion, lake.cfg.score.drift_months)


def champion_version(cfg: Config) -> str | None:
    from pipelines.core.tracking import champion_of

    return champion_of(cfg, cfg.train.registered_model)


def uplift_version(cfg: Config) -> str | None:
    """The uplift model version matching would target by (None: the rule), part of its fingerprint."""
    from pipelines.core.tracking import champion_of

    return champion_of(cfg, cfg.uplift.registered_model) if cfg.uplift.enabled else None


def train_due(lake: Lake, month: str, *, force: bool = False) -> str | None:
    """Why the monthly run trains as of ``month`` (None: not due, or not possible yet)."""
    cfg = lake.cfg
    if cfg.train.every_months == 0:
        return None
    try:
        training_window(month, labelled_months(lake, month), cfg)
    except InputNotReadyError as exc:
        log.info("train not possible yet: %s", exc)
        return None
    champion = champion_version(cfg)
    if champion is None:
        return "no champion yet"
    trained = [
        r["month"]
        for r in lake.read_rows("pipeline_runs", columns=["stage", "status", "scope", "month"])
        if r["stage"] == "train" and r["status"] == "success" and r["scope"] is None
    ]
    last = max(trained, default=None)
    if last is None:
        return "never trained in this lake"
    if last >= month:
        return "forced" if force and last == month else None
    if drift := drift_since(lake, champion, last, month):
        return drift
    from features.calendar import months_between

    if len(months_between(last, month)) - 1 >= cfg.train.every_months:
        return f"last trained as of {last}"
    return None
