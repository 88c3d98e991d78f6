"""Model, scoring, offer and evaluation parameters: types and bounds here, values in ``conf/base.yml``.

The config's ``model``, ``score``, ``offers`` and ``evaluate`` sections are these models; their defaults
come from that file (``features.params.Params``), so each value is written once.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from features.params import BASE, Params, StrTuple


class ModelParams(Params):
    """How a cohort family is fitted (``models.family``); values in ``conf/base.yml`` under ``model``."""

    defaults_section: ClassVar[str | None] = "model"

    # LightGBM parameters (objective, learning rate, leaves, ...); threads, seed and determinism are set
    # by the family so that a fit is reproducible on any machine
    lightgbm: dict[str, float | int | str | bool] = BASE
    num_boost_round: int = Field(default=BASE, ge=1)
    early_stopping_rounds: int = Field(default=BASE, ge=1)
    num_threads: int = Field(default=BASE, ge=0)  # 0: LightGBM's default (all cores)
    seed: int = BASE
    # probability calibration per cohort on the validation rows: Platt (sigmoid) or isotonic. Platt keeps
    # the ranking; isotonic steps tie scores
    calibration: Literal["isotonic", "platt"] = BASE
    # a cohort with fewer training rows or churners than this is served by the pooled model
    min_cohort_rows: int = Field(default=BASE, ge=1)
    min_cohort_positives: int = Field(default=BASE, ge=1)
    # below this many validation churners a cohort's calibrator is the pooled one
    min_calibration_positives: int = Field(default=BASE, ge=1)
    # auto: the pooled model serves a cohort where its validation AUC beats the cohort model's by more
    # than ``pooled_margin``; cohort / pooled force either
    serve: Literal["auto", "cohort", "pooled"] = BASE
    pooled_margin: float = Field(default=BASE, ge=0)
    # training rows beyond this budget: non-churners are downsampled and weighted (calibration holds),
    # which bounds the fit's memory and time
    row_budget: int = Field(default=BASE, ge=1000)
    # the validation share drawn (stratified by cohort and label) when no validation frame is given
    valid_share: float = Field(default=BASE, gt=0, lt=1)
    # shares of the validation rows that early-stop the boosters, choose cohort or pooled model and fit the
    # calibrators: three disjoint slices, so that no choice is judged on the rows it was made on
    validation_split: tuple[float, float, float] = Field(default=BASE, strict=False)
    logistic_c: float = Field(default=BASE, gt=0)
    # the training distribution of the score and of this many top features is kept for drift (PSI)
    monitor_features: int = Field(default=BASE, ge=0, le=100)
    # feature table columns that are never features (identifiers, the hard warning, dates)
    exclude_columns: StrTuple = BASE

    @model_validator(mode="after")
    def _split_sums_to_one(self) -> ModelParams:
        if min(self.validation_split) <= 0 or abs(sum(self.validation_split) - 1) > 1e-9:
            raise ValueError(
                "model.validation_split: three positive shares summing to 1 (stop, choose, calibrate)"
            )
        return self


REASON_FAMILIES = (
    "contract_expiry",
    "usage_decline",
    "price_sensitivity",
    "service_issue",
    "competitor_pull",
    "payment_trouble",
    "low_engagement",
    "roaming_cost",
    "new_customer_fit",
)
RISK_BANDS = ("low", "medium", "high")
VALUE_TIERS = ("high", "medium", "low", "unprofitable")


class ScoreParams(Params):
    """How a scored subscriber is banded, explained, valued and assigned a strategy (``models.scoring``).

    Values in ``conf/base.yml`` under ``score``, where each key is explained.
    """

    defaults_section: ClassVar[str | None] = "score"

    band_high: float = Field(default=BASE, gt=0, le=1)
    band_medium: float = Field(default=BASE, gt=0, le=1)
    reasons_min_band: Literal["low", "medium", "high"] = BASE
    reasons_top_share: float = Field(default=BASE, ge=0, le=1)
    reasons_top: int = Field(default=BASE, ge=1, le=20)
    # feature name patterns (fnmatch) per reason family, first match wins in this order
    reason_families: dict[str, StrTuple] = BASE
    fallback_family: str = BASE
    # features no retention action can change (fnmatch): never a reason, never decide the churn type
    non_actionable: StrTuple = BASE
    value_high: float = BASE
    value_medium: float = BASE
    value_low: float = BASE
    # value tier -> risk band -> action
    strategy: dict[str, dict[str, str]] = BASE
    at_risk_band: Literal["low", "medium", "high"] = BASE
    # drift (models.monitoring): a PSI above these is a warning; a month drifts when its score or one of
    # the drift_top_features best monitored features does; drift_months drifting months in a row retrain
    drift_score_psi: float = Field(default=BASE, gt=0)
    drift_feature_psi: float = Field(default=BASE, gt=0)
    drift_top_features: int = Field(default=BASE, ge=0)
    drift_months: int = Field(default=BASE, ge=1)
    segments: int = Field(default=BASE, ge=2, le=20)

    @model_validator(mode="after")
    def _consistent(self) -> ScoreParams:
        if self.band_medium >= self.band_high:
            raise ValueError("band_medium must be below band_high")
        if not self.value_low <= self.value_medium <= self.value_high:
            raise ValueError("value tiers must satisfy value_low <= value_medium <= value_high")
        unknown = sorted(set(self.reason_families) - set(REASON_FAMILIES))
        if unknown or self.fallback_family not in REASON_FAMILIES:
            raise ValueError(
                f"reason families must be among {', '.join(REASON_FAMILIES)} "
                f"(got {unknown or self.fallback_family})"
            )
        for tier in VALUE_TIERS:
            missing = [b for b in RISK_BANDS if b not in self.strategy.get(tier, {})]
            if missing:
                raise ValueError(f"strategy.{tier} needs an action for bands {', '.join(missing)}")
        return self


CONTRACT_STATES = ("in_contract", "expiring", "out_of_contract", "no_contract")


class OfferEligibility(Params):
    """Who may get an offer; an empty list means any."""

    plan_types: StrTuple = ()
    cohorts: StrTuple = ()
    value_tiers: StrTuple = ()
    churn_types: StrTuple = ()
    contract_states: StrTuple = ()
    usage_segments: StrTuple = ()  # segment names (models.segments) or their prefix, e.g. "roamer"
    strategies: StrTuple = ()  # cells of the value x risk strategy matrix (score.strategy) it serves

    @model_validator(mode="after")
    def _known_values(self) -> OfferEligibility:
        known = {
            "value_tiers": VALUE_TIERS,
            "churn_types": REASON_FAMILIES,
            "contract_states": CONTRACT_STATES,
        }
        for name, allowed in known.items():
            unknown = sorted(set(getattr(self, name)) - set(allowed))
            if unknown:
                raise ValueError(f"eligibility.{name}: unknown {unknown} (known: {', '.join(allowed)})")
        return self


class Offer(Params):
    """A retention action: what it costs, how many the channel can carry, whom it fits, what it does."""

    id: str
    description: str = ""
    channel: str
    cost: float = Field(ge=0)  # committed per assignment (incentive and contact)
    capacity: int | None = Field(None, ge=0)  # per month; None: unlimited
    effect: float = Field(ge=0, le=1)  # prior reduction of the churn probability of those offered
    acceptance: float = Field(0.3, ge=0, le=1)  # prior acceptance rate (reported beside the measurement)
    sales_like: bool = False  # suppressed while a complaint is open
    eligibility: OfferEligibility = Field(default_factory=OfferEligibility)


class ContactPolicy(Params):
    """Who may be contacted at all (``offers.policy`` in ``conf/base.yml``)."""

    defaults_section: ClassVar[str | None] = "offers.policy"

    require_consent: bool = BASE
    cooldown_months: int = Field(default=BASE, ge=0)  # months after a retention contact with no new offer
    suppress_sales_on_open_complaint: bool = BASE
    exclude_unprofitable: bool = BASE


class OfferParams(Params):
    """The offer catalogue, the contact policy, the budget and the control group (``models.offers``).

    Values in ``conf/base.yml`` under ``offers``, where each key is explained.
    """

    defaults_section: ClassVar[str | None] = "offers"

    offers: tuple[Offer, ...] = Field(default=BASE, strict=False)
    policy: ContactPolicy = Field(default_factory=ContactPolicy)
    budget: float = Field(default=BASE, ge=0)  # per month, in the currency of the bills
    value_horizon_months: int = Field(default=BASE, ge=1)
    margin: float = Field(default=BASE, gt=0, le=1)
    min_band: Literal["low", "medium", "high"] = BASE
    holdout_rate: float = Field(default=BASE, ge=0, lt=1)
    holdout_salt: str = BASE
    min_control_lines: int = Field(default=BASE, ge=0)
    max_control_share: float = Field(default=BASE, gt=0, le=0.5)
    programme_holdout_rate: float = Field(default=BASE, ge=0, lt=1)
    programme_holdout_salt: str = BASE
    exploration_rate: float = Field(default=BASE, ge=0, lt=1)
    exploration_max_budget_share: float = Field(default=BASE, ge=0, le=1)
    randomise_by: Literal["subscriber", "household"] = BASE
    exact_max_candidates: int = Field(default=BASE, ge=0)
    lagrangian_iterations: int = Field(default=BASE, ge=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> OfferParams:
        ids = [o.id for o in self.offers]
        if len(set(ids)) != len(ids) or "holdout" in ids:
            raise ValueError("offer ids must be unique and not 'holdout'")
        if self.programme_holdout_salt == self.holdout_salt:
            raise ValueError("programme_holdout_salt must differ from holdout_salt (independent draws)")
        return self


class EvaluateParams(Params):
    """How measured campaign results become offer effects (``models.evaluation``)."""

    defaults_section: ClassVar[str | None] = "evaluate"

    confidence: float = Field(default=BASE, gt=0.5, lt=1)
    prior_sd: float = Field(default=BASE, gt=0)
    min_arm_lines: int = Field(default=BASE, ge=1)
    probability_bins: int = Field(default=BASE, ge=100)


class UpliftParams(Params):
    """Uplift models of the offers and when they replace the rule (``models.uplift``, ``pipelines.uplift``).

    Values in ``conf/base.yml`` under ``uplift``, where each key is explained.
    """

    defaults_section: ClassVar[str | None] = "uplift"

    enabled: bool = BASE
    registered_model: str = BASE
    learner: Literal["x", "t"] = BASE
    # feature name patterns (fnmatch) over the warning list, the feature table and ``contract_state``
    features: StrTuple = BASE
    lightgbm: dict[str, float | int | str | bool] = BASE
    num_boost_round: int = Field(default=BASE, ge=1)
    num_threads: int = Field(default=BASE, ge=0)
    seed: int = BASE
    min_lines_per_arm: int = Field(default=BASE, ge=1)
    fit_months: int = Field(default=BASE, ge=1)
    holdout_months: int = Field(default=BASE, ge=1)
    target_share: float = Field(default=BASE, gt=0, le=1)
    confidence: float = Field(default=BASE, ge=0.5, lt=1)
    resamples: int = Field(default=BASE, ge=0)
