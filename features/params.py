"""Typed parameters of the pure layer: types and bounds here, default values in ``conf/base.yml`` only.

Each model is frozen and strict; the run configuration (``pipelines.core.config.Config``) composes them
as its ``churn``, ``cohorts`` and ``features`` sections and passes them straight through. A model that
names its ``defaults_section`` takes its field defaults from that section of ``conf/base.yml`` when the
class is created, so a notebook calling ``FeatureParams()`` and the monthly job loading the config get
the same values from the one file an operator reads. Where the file is absent (the package zipped for
Spark executors, which only unpickle parameter objects) the fields are simply required.
The model and offer parameters follow this pattern.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticUndefined

BASE_CONF = Path(__file__).resolve().parents[1] / "conf" / "base.yml"


class _FromBase:
    def __repr__(self) -> str:
        return "<value from conf/base.yml>"


# The default of a field whose value is written in conf/base.yml (typed Any so that type checkers see a
# default and ``FeatureParams()`` checks as a valid call).
BASE: Any = _FromBase()

# YAML has lists, not tuples: accept a list for these (items stay strictly typed).
StrTuple = Annotated[tuple[str, ...], Field(strict=False)]
IntTuple = Annotated[tuple[int, ...], Field(strict=False)]


@functools.cache
def base_defaults() -> dict[str, Any]:
    """``conf/base.yml`` as a mapping (empty where the file is not shipped)."""
    if not BASE_CONF.is_file():
        return {}
    return yaml.safe_load(BASE_CONF.read_text()) or {}


def _section(dotted: str) -> dict[str, Any]:
    node: Any = base_defaults()
    for part in dotted.split("."):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node if isinstance(node, dict) else {}


class Params(BaseModel):
    """Base of every parameter and config model: unknown keys and wrong types are errors; frozen.

    A field declared ``= BASE`` (or ``Field(default=BASE, ...)``) takes its default from the section
    ``defaults_section`` (a dotted key) of ``conf/base.yml``; with no value there it is required.
    Defaults are validated like any input (``validate_default``): a wrong value in the file fails where
    it is used.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, validate_default=True)
    defaults_section: ClassVar[str | None] = None

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        fields = cls.__pydantic_fields__
        from_base = [name for name, info in fields.items() if info.default is BASE]
        if not from_base:
            return
        section = _section(cls.defaults_section) if cls.defaults_section else {}
        for name in from_base:
            fields[name].default = section.get(name, PydanticUndefined)
        cls.model_rebuild(force=True)


class ChurnParams(Params):
    """The churn label: snapshot M, ``gap_months``, then a window of ``window_months`` (features.labels)."""

    defaults_section: ClassVar[str | None] = "churn"

    gap_months: int = Field(default=BASE, ge=0, le=6)
    window_months: int = Field(default=BASE, ge=1, le=6)
    counted_reasons: StrTuple = BASE
    involuntary_reasons: StrTuple = BASE
    excluded_reasons: StrTuple = BASE
    prepaid_inactivity_days: int | None = Field(default=BASE, ge=1)
    gap_churn: Literal["exclude", "count"] = BASE


class CohortParams(Params):
    """Tenure cohorts: ``boundaries`` in months split tenure into ``len(boundaries) + 1`` named cohorts."""

    defaults_section: ClassVar[str | None] = "cohorts"

    boundaries: IntTuple = BASE
    names: StrTuple = BASE

    @field_validator("boundaries")
    @classmethod
    def _increasing(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if list(v) != sorted(set(v)) or any(b <= 0 for b in v):
            raise ValueError("boundaries must be positive and strictly increasing")
        return v

    @model_validator(mode="after")
    def _one_name_per_cohort(self) -> CohortParams:
        if len(self.names) != len(self.boundaries) + 1:
            raise ValueError(f"names needs {len(self.boundaries) + 1} entries (one more than boundaries)")
        return self


class FeatureParams(Params):
    """Feature windows and rules (features.build and the families)."""

    defaults_section: ClassVar[str | None] = "features"

    trend_months: int = Field(default=BASE, ge=2, le=12)
    contagion_months: int = Field(default=BASE, ge=1, le=12)
    frequent_contact_min_calls: int = Field(default=BASE, ge=1)
    night_start_hour: int = Field(default=BASE, ge=0, le=23)
    night_end_hour: int = Field(default=BASE, ge=0, le=23)
    lifecycle_onboarding_months: int = Field(default=BASE, ge=1)
    lifecycle_decline_contract_months: int = Field(default=BASE, ge=0)
    lifecycle_decline_inactive_days: int = Field(default=BASE, ge=1)
    lifecycle_growth_months: int = Field(default=BASE, ge=1)
    recency_lookback_months: int = Field(default=BASE, ge=1, le=12)
    history_windows: IntTuple = BASE
    baseline_windows: IntTuple = BASE
    care_category_windows: IntTuple = BASE

    @field_validator("history_windows", "baseline_windows", "care_category_windows")
    @classmethod
    def _windows(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or list(v) != sorted(set(v)) or v[0] < 1 or v[-1] > 12:
            raise ValueError("windows must be strictly increasing months between 1 and 12")
        return v

    @model_validator(mode="after")
    def _baselines_within_history(self) -> FeatureParams:
        # the baselines' max and ratio columns are computed over the history windows themselves
        if not set(self.baseline_windows) <= set(self.history_windows) or min(self.baseline_windows) < 2:
            raise ValueError("baseline_windows: 2 months or more, each one of history_windows")
        if max(self.history_windows) < 2:
            raise ValueError("history_windows needs a window of 2 months or more")
        return self

    @property
    def cdr_months(self) -> int:
        """How many months of CDRs (ending at M) the features read."""
        return max(self.trend_months, self.contagion_months, 2)
