"""Typed parameters of the pure layer, defined once.

Each model is frozen and strict; the run configuration (``pipelines.core.config.Config``) composes them
as its ``churn``, ``cohorts`` and ``features`` sections and passes them straight through, so a notebook
building features from its own DataFrames and the monthly job use the same defaults. ``conf/base.yml``
restates the defaults for reading (a test keeps the two equal). The model and offer parameters follow
this pattern.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# YAML has lists, not tuples: accept a list for these (items stay strictly typed).
StrTuple = Annotated[tuple[str, ...], Field(strict=False)]
IntTuple = Annotated[tuple[int, ...], Field(strict=False)]


class Params(BaseModel):
    """Base of every parameter and config model: unknown keys and wrong types are errors; frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ChurnParams(Params):
    """The churn label: snapshot M, ``gap_months``, then a window of ``window_months`` (features.labels)."""

    gap_months: int = Field(1, ge=0, le=6)
    window_months: int = Field(1, ge=1, le=6)
    counted_reasons: StrTuple = ("port_out", "voluntary")
    involuntary_reasons: StrTuple = ("non_payment",)
    excluded_reasons: StrTuple = ("fraud", "deceased")
    prepaid_inactivity_days: int | None = Field(None, ge=1)
    # A deactivation in the gap month: "exclude" (label null: neither churner nor stayer) or "count".
    gap_churn: Literal["exclude", "count"] = "exclude"


class CohortParams(Params):
    """Tenure cohorts: ``boundaries`` in months split tenure into ``len(boundaries) + 1`` named cohorts."""

    boundaries: IntTuple = (6, 12)
    names: StrTuple = ("new", "early", "established")

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

    trend_months: int = Field(3, ge=2, le=12)
    contagion_months: int = Field(3, ge=1, le=12)
    frequent_contact_min_calls: int = Field(3, ge=1)
    night_start_hour: int = Field(22, ge=0, le=23)
    night_end_hour: int = Field(6, ge=0, le=23)
    lifecycle_onboarding_months: int = Field(3, ge=1)
    lifecycle_decline_contract_months: int = Field(3, ge=0)
    lifecycle_decline_inactive_days: int = Field(7, ge=1)
    # Tenure (months) below which a subscriber past onboarding is in "growth", else "maturity".
    lifecycle_growth_months: int = Field(12, ge=1)

    @property
    def cdr_months(self) -> int:
        """How many months of CDRs (ending at M) the features read."""
        return max(self.trend_months, self.contagion_months, 2)
