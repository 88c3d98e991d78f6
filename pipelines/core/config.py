"""Layered, strict configuration.

Layers: ``conf/base.yml``, then each ``--conf`` file in order, then ``--set a.b=c`` overrides (values
parsed as YAML scalars). The merged mapping is validated once into frozen, typed objects; unknown keys,
wrong types and missing values raise :class:`ConfigError` naming the file (or ``--set``) and the key.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import unquote, urlparse

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from features.params import BASE, BASE_CONF, ChurnParams, CohortParams, FeatureParams, Params
from models.metrics import ProfitParams
from models.params import EvaluateParams, ModelParams, OfferParams, ScoreParams, UpliftParams
from pipelines.core.privacy import process_umask, redact

PROJECT_ROOT = BASE_CONF.parents[1]


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the file and key."""


class ProjectConf(Params):
    defaults_section: ClassVar[str | None] = "project"

    name: str = BASE


class HousekeepingConf(Params):
    """Vacuum, compaction, log checkpoints and retention (``pipelines.housekeeping``)."""

    defaults_section: ClassVar[str | None] = "lake.housekeeping"

    every_months: int = Field(default=BASE, ge=0)
    vacuum_retention_hours: int = Field(default=BASE, ge=1)
    compact: bool = BASE
    target_file_mb: int = Field(default=BASE, ge=1)
    log_retention_days: int = Field(default=BASE, ge=1)
    quarantine_raw_days: int | None = Field(default=BASE, ge=0)
    keep_logs: int = Field(default=BASE, ge=1)
    keep_logs_days: int | None = Field(default=BASE, ge=1)


class LeaseConf(Params):
    """One writer per table and month (``pipelines.core.lease``)."""

    defaults_section: ClassVar[str | None] = "lake.lease"

    enabled: bool = BASE
    ttl_seconds: float = Field(default=BASE, ge=5)
    wait_seconds: float = Field(default=BASE, ge=0)


class LakeConf(Params):
    defaults_section: ClassVar[str | None] = "lake"

    root: str = BASE
    engine: Literal["auto", "bridge", "native"] = BASE
    tables: dict[str, str] = BASE
    housekeeping: HousekeepingConf = Field(default_factory=HousekeepingConf)
    lease: LeaseConf = Field(default_factory=LeaseConf)


class LandingConf(Params):
    defaults_section: ClassVar[str | None] = "landing"

    root: str = BASE

    @field_validator("root")
    @classmethod
    def _files(cls, root: str) -> str:
        # the jobs list and read the deliveries as files (ingest's tasks with pyarrow's local file system)
        if landing_path(root) is None:
            raise ValueError(
                f"{root!r}: the landing zone must be a plain path or a file:// URI of this machine (on a "
                "cluster, a folder mounted at the same path on every machine); object stores are not read: "
                "copy or mount the deliveries there"
            )
        return root


class SparkConf(Params):
    defaults_section: ClassVar[str | None] = "spark"

    master: str = BASE
    app_name: str = BASE
    driver_memory: str = BASE
    shuffle_partitions: int = Field(default=BASE, ge=1)
    ui_enabled: bool = BASE
    conf: dict[str, str] = BASE


class MlflowRetention(Params):
    """What :func:`pipelines.core.tracking.prune_mlflow` keeps."""

    defaults_section: ClassVar[str | None] = "mlflow.retention"

    run_days: int = Field(default=BASE, ge=1)
    keep_versions: int = Field(default=BASE, ge=1)


class MlflowConf(Params):
    defaults_section: ClassVar[str | None] = "mlflow"

    tracking_uri: str = BASE
    registry_uri: str = BASE
    experiment: str = BASE
    allow_new_store: bool = BASE
    retention: MlflowRetention = Field(default_factory=MlflowRetention)


class PromotionGates(Params):
    """When a new model version becomes ``champion`` (``all`` and every cohort, on the test month;
    ``pipelines.train.gates``)."""

    defaults_section: ClassVar[str | None] = "train.promotion"

    min_auc: float = Field(default=BASE, ge=0, le=1)
    max_relative_ece: float = Field(default=BASE, gt=0)
    min_calibration_slope: float = Field(default=BASE, gt=0)
    max_calibration_slope: float = Field(default=BASE, gt=0)
    auc_tolerance: float = Field(default=BASE, ge=0)
    relative_ece_tolerance: float = Field(default=BASE, ge=0)
    alpha: float = Field(default=BASE, gt=0, lt=0.5)
    bootstrap_rounds: int = Field(default=BASE, ge=100)
    min_test_churners: int = Field(default=BASE, ge=1)

    @model_validator(mode="after")
    def _slope_band(self) -> PromotionGates:
        if not self.min_calibration_slope < 1 < self.max_calibration_slope:
            raise ValueError(
                "the calibration slope band must hold 1: min_calibration_slope < 1 < max_calibration_slope"
            )
        return self


class TrainConf(Params):
    defaults_section: ClassVar[str | None] = "train"

    fit_months: int = Field(default=BASE, ge=1, le=36)
    every_months: int = Field(default=BASE, ge=0)
    registered_model: str = BASE
    promotion: PromotionGates = Field(default_factory=PromotionGates)
    # EMPC economics (models.metrics.ProfitParams)
    profit: ProfitParams = Field(default_factory=ProfitParams)


class GatesConf(Params):
    defaults_section: ClassVar[str | None] = "ingest.gates"

    enabled: bool = BASE
    max_quarantine_rate: float = Field(default=BASE, ge=0, le=1)
    cdr_daily_volume_tolerance: float = Field(default=BASE, gt=0)
    cdr_trailing_months: int = Field(default=BASE, ge=1)
    require_all_cdr_days: bool = BASE
    unique_subscription_snapshot: bool = BASE


class IngestConf(Params):
    defaults_section: ClassVar[str | None] = "ingest"

    late_days: int = Field(default=BASE, ge=0, le=31)
    local_timezone: str = BASE
    parallel_sources: int = Field(default=BASE, ge=1, le=4)
    memory_cache_max_mb: int = Field(default=BASE, ge=0)
    path: Literal["arrow", "spark"] = BASE
    driver_max_rows: int = Field(default=BASE, ge=0)
    gates: GatesConf = Field(default_factory=GatesConf)


class PrivacyConf(Params):
    """Personal data settings (``pipelines.core.privacy``; docs/operations.md#personal-data)."""

    defaults_section: ClassVar[str | None] = "privacy"

    pseudonymise: bool = BASE
    key_env: str = Field(default=BASE, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    quarantine_raw_days: int = Field(default=BASE, ge=0)
    file_mode: str = Field(default=BASE, pattern=r"^0?[0-7]{3}$")
    dir_mode: str = Field(default=BASE, pattern=r"^0?[0-7]{3}$")

    @model_validator(mode="after")
    def _one_umask(self) -> PrivacyConf:
        process_umask(self.file_mode, self.dir_mode)
        return self

    @property
    def umask(self) -> int:
        """The process umask that gives new files ``file_mode`` and new folders ``dir_mode``."""
        return process_umask(self.file_mode, self.dir_mode)


class _Trigger(Params):
    enabled: bool = BASE
    strength: float = Field(default=BASE, ge=0, le=1)


class PortOutTrigger(_Trigger):
    defaults_section: ClassVar[str | None] = "daily.port_out"


class SilenceTrigger(_Trigger):
    defaults_section: ClassVar[str | None] = "daily.silence"

    days: int = Field(default=BASE, ge=1, le=31)
    min_active_share: float = Field(default=BASE, ge=0, le=1)


class UsageDropTrigger(_Trigger):
    defaults_section: ClassVar[str | None] = "daily.usage_drop"

    days: int = Field(default=BASE, ge=1, le=31)
    max_share: float = Field(default=BASE, gt=0, le=1)
    min_baseline_events: float = Field(default=BASE, ge=0)


class OpenComplaintTrigger(_Trigger):
    defaults_section: ClassVar[str | None] = "daily.open_complaint"

    days: int = Field(default=BASE, ge=0, le=60)
    max_age_days: int = Field(default=BASE, ge=1, le=60)


class ContractEndTrigger(_Trigger):
    defaults_section: ClassVar[str | None] = "daily.contract_end"

    days: int = Field(default=BASE, ge=0, le=366)
    usage_days: int = Field(default=BASE, ge=1, le=31)
    max_share: float = Field(default=BASE, gt=0, le=1)


class HouseholdTrigger(_Trigger):
    defaults_section: ClassVar[str | None] = "daily.household_contract_end"


class DailyConf(Params):
    """Daily warnings (``pipelines.daily``; docs/daily-warnings.md)."""

    defaults_section: ClassVar[str | None] = "daily"

    port_out: PortOutTrigger = Field(default_factory=PortOutTrigger)
    silence: SilenceTrigger = Field(default_factory=SilenceTrigger)
    usage_drop: UsageDropTrigger = Field(default_factory=UsageDropTrigger)
    open_complaint: OpenComplaintTrigger = Field(default_factory=OpenComplaintTrigger)
    contract_end: ContractEndTrigger = Field(default_factory=ContractEndTrigger)
    household_contract_end: HouseholdTrigger = Field(default_factory=HouseholdTrigger)
    tier_weights: dict[str, float] = BASE
    horizon_days: int = Field(default=BASE, ge=1, le=366)

    @property
    def lookback_days(self) -> int:
        """Days of daily history the triggers read, ending at the day."""
        return max(
            self.silence.days,
            self.usage_drop.days,
            self.contract_end.usage_days,
            self.open_complaint.max_age_days,
        )


class DriversConf(Params):
    """Strengths of the generator's slow churn drivers (pipelines.sample_data.drivers; 0: off)."""

    defaults_section: ClassVar[str | None] = "sample_data.drivers"

    decline: float = Field(default=BASE, ge=0, le=5)
    competitor_pull: float = Field(default=BASE, ge=0, le=5)
    contagion: float = Field(default=BASE, ge=0, le=5)
    plan_misfit: float = Field(default=BASE, ge=0, le=5)
    bill_shock: float = Field(default=BASE, ge=0, le=5)


class SampleDataConf(Params):
    defaults_section: ClassVar[str | None] = "sample_data"

    subscribers: int = Field(default=BASE, ge=10)
    seed: int = BASE
    format: Literal["csv", "parquet", "mixed"] = BASE
    gzip_share: float = Field(default=BASE, ge=0, le=1)
    cdr_events_per_subscriber: int = Field(default=BASE, ge=1)
    bad_rows: float = Field(default=BASE, ge=0, le=0.5)
    file_faults: bool = BASE
    files_per_month: int = Field(default=BASE, ge=1, le=50)
    drivers: DriversConf = Field(default_factory=DriversConf)


class Config(Params):
    """The effective configuration of one run (frozen).

    Every value comes from the layered files: ``conf/base.yml`` holds each key once with its explanation
    (and is each section's defaults, ``features.params.Params``); the classes here hold types and bounds.
    """

    project: ProjectConf
    lake: LakeConf
    landing: LandingConf
    spark: SparkConf
    mlflow: MlflowConf
    churn: ChurnParams
    cohorts: CohortParams
    features: FeatureParams
    model: ModelParams
    train: TrainConf
    score: ScoreParams
    offers: OfferParams
    evaluate: EvaluateParams
    uplift: UpliftParams
    ingest: IngestConf
    sample_data: SampleDataConf
    daily: DailyConf = Field(default_factory=DailyConf)
    privacy: PrivacyConf = Field(default_factory=PrivacyConf)

    @model_validator(mode="after")
    def _offers_fit_the_rest(self) -> Config:
        """A control line may not be offered anything while its campaign outcome is open; an offer's
        strategies are cells of the strategy matrix."""
        # a line listed for score month S is contacted in S + 1 and its outcome is open to the end of
        # S + gap + window; cooling down for c months, its next contact is at S + c + 2 at the earliest
        needed = self.churn.gap_months + self.churn.window_months - 1
        if self.offers.policy.cooldown_months < needed:
            raise ValueError(
                f"offers.policy.cooldown_months ({self.offers.policy.cooldown_months}) must be at least "
                f"churn.gap_months + churn.window_months - 1 ({needed}): a control line would be offered "
                "something while its outcome is still open"
            )
        cells = {action for by_band in self.score.strategy.values() for action in by_band.values()}
        for offer in self.offers.offers:
            unknown = sorted(set(offer.eligibility.strategies) - cells)
            if unknown:
                raise ValueError(
                    f"offers.offers[{offer.id}].eligibility.strategies: unknown {unknown} "
                    f"(the cells of score.strategy: {', '.join(sorted(cells))})"
                )
        return self

    @property
    def lake_root(self) -> str:
        return _absolute(self.lake.root)

    @property
    def landing_root(self) -> str:
        """The landing zone's local path (a ``file://`` URI as its path)."""
        root = self.landing.root
        return _absolute(landing_path(root) or root)

    def table_path(self, name: str) -> str:
        """Folder of a table under the lake root; unknown table names are errors."""
        try:
            folder = self.lake.tables[name]
        except KeyError:
            raise ConfigError(f"lake.tables: no table named {name!r} in the config") from None
        return f"{self.lake_root.rstrip('/')}/{folder}"

    @property
    def mlflow_artifact_root(self) -> str:
        """Where new experiments keep artifacts (with the default sqlite store: under the lake)."""
        return f"{self.lake_root.rstrip('/')}/mlflow/artifacts"

    @property
    def mlflow_tracking_uri(self) -> str:
        if self.mlflow.tracking_uri:
            return self.mlflow.tracking_uri
        return f"sqlite:///{self.lake_root.rstrip('/')}/mlflow/mlflow.db"

    def config_hash(self) -> str:
        """Stable hash of the effective config, recorded in the run manifest."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def local_path(uri: str) -> str | None:
    """The local file system path of a plain path or ``file://`` URI (no trailing slash); None for any
    other scheme (an object store)."""
    if "://" in uri and not uri.startswith("file://"):
        return None
    return uri.removeprefix("file://").rstrip("/") or "/"


def landing_path(root: str) -> str | None:
    """The local path of a landing root: a plain path as it is, a ``file://`` URI of this machine (no
    host, or ``localhost``) as its path; None for anything else (an object store, another host)."""
    if "://" not in root:
        return root
    url = urlparse(root)
    if url.scheme != "file" or url.netloc not in ("", "localhost"):
        return None
    return local_path(unquote(url.path))


def _absolute(path: str) -> str:
    if "://" in path:
        return path
    return os.path.abspath(path)


def _load_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return data


def _merge(
    base: dict[str, Any], layer: Mapping[str, Any], source: str, origin: dict[str, str], prefix: str = ""
) -> None:
    """Deep-merge ``layer`` into ``base``, remembering which source set each key."""
    for key, value in layer.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(base.get(key), dict) and value:
            _merge(base[key], value, source, origin, dotted + ".")
        else:
            base[key] = copy.deepcopy(value)
            origin[dotted] = source
            if isinstance(value, Mapping):
                for sub in _leaf_keys(value, dotted + "."):
                    origin[sub] = source


def _leaf_keys(mapping: Mapping[str, Any], prefix: str) -> list[str]:
    keys = []
    for k, v in mapping.items():
        keys.append(f"{prefix}{k}")
        if isinstance(v, Mapping):
            keys.extend(_leaf_keys(v, f"{prefix}{k}."))
    return keys


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``a.b.c=value``; the value is read as a YAML scalar (``2`` -> int, ``[a, b]`` -> list)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if not isinstance(value, str | int | float | bool | list | dict | type(None)):
        value = raw  # dates and other YAML types stay text
    return key, value


# Maps whose keys are themselves dotted names: ``--set spark.conf.spark.buffer.pageSize=4m``.
DOTTED_KEY_MAPS = ("spark.conf.",)


def _nest(key: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for prefix in DOTTED_KEY_MAPS:
        if key.startswith(prefix) and len(key) > len(prefix):
            parts = [*prefix.rstrip(".").split("."), key[len(prefix) :]]
            # Spark settings are text: ``true``/``4`` stay as written
            value = (
                value
                if isinstance(value, str)
                else str(value).lower()
                if isinstance(value, bool)
                else str(value)
            )
    for part in parts[:-1]:
        node[part] = {}
        node = node[part]
    node[parts[-1]] = value
    return out


def _source_of(loc: Sequence[Any], origin: Mapping[str, str]) -> tuple[str, str]:
    dotted = ".".join(str(p) for p in loc)
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in origin:
            return origin[candidate], dotted
    return str(BASE_CONF), dotted


def load_config(
    conf_files: Sequence[str | Path] = (),
    overrides: Sequence[str] = (),
    *,
    base: str | Path = BASE_CONF,
) -> Config:
    """Load base, each conf file and the ``key=value`` overrides into one validated :class:`Config`."""
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for path in [Path(base), *(Path(p) for p in conf_files)]:
        _merge(merged, _load_yaml(path), str(path), origin)
    for text in overrides:
        key, value = parse_override(text)
        _merge(merged, _nest(key, value), f"--set {key}", origin)
    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            source, dotted = _source_of(err["loc"], origin)
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            elif err["type"] == "missing":
                msg = "required key is missing"
            else:
                msg = f"{err['msg']} (got {err.get('input')!r})"
            lines.append(f"{source}: {dotted}: {msg}")
        raise ConfigError("invalid configuration: " + "; ".join(lines)) from None


def effective_config_yaml(cfg: Config) -> str:
    """The effective config as YAML, for logging at job start, with secrets as ``***``
    (:func:`pipelines.core.privacy.redact`); :meth:`Config.config_hash` hashes the real values."""
    return yaml.safe_dump(redact(cfg.model_dump(mode="json")), sort_keys=False)
