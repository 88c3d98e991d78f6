"""Model parameters (pure, defined once; the config's ``model`` section is this model)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from features.params import Params, StrTuple


def _default_lightgbm() -> dict[str, float | int | str | bool]:
    return {
        "objective": "binary",
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_data_in_leaf": 40,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "max_cat_to_onehot": 8,
        "cat_smooth": 10.0,
    }


class ModelParams(Params):
    """How a cohort family is fitted (``models.family``)."""

    # LightGBM parameters (objective, learning rate, leaves, ...); threads, seed and determinism are set
    # by the family so that a fit is reproducible on any machine
    lightgbm: dict[str, float | int | str | bool] = Field(default_factory=_default_lightgbm)
    num_boost_round: int = Field(500, ge=1)
    early_stopping_rounds: int = Field(40, ge=1)
    num_threads: int = Field(0, ge=0)  # 0: LightGBM's default (all cores)
    seed: int = 7
    # probability calibration per cohort on the validation rows: Platt (sigmoid) or isotonic. Platt keeps
    # the ranking; isotonic steps tie scores and lost 0.008 AUC in the sample-data backtest (README)
    calibration: Literal["isotonic", "platt"] = "platt"
    # a cohort with fewer training rows or churners than this is served by the pooled model
    min_cohort_rows: int = Field(300, ge=1)
    min_cohort_positives: int = Field(20, ge=1)
    # below this many validation churners a cohort's calibrator is the pooled one
    min_calibration_positives: int = Field(10, ge=1)
    # auto: the pooled model serves a cohort where its validation AUC beats the cohort model's by more
    # than ``pooled_margin``; cohort / pooled force either
    serve: Literal["auto", "cohort", "pooled"] = "auto"
    pooled_margin: float = Field(0.0, ge=0)
    # training rows beyond this budget: non-churners are downsampled and weighted (calibration holds).
    # Measured with 100 features on 2 cores: 1M rows fit in ~8 min at a 6.8 GB peak, 250k in ~1.3 min
    row_budget: int = Field(1_000_000, ge=1000)
    # the validation share drawn (stratified by cohort and label) when no validation frame is given
    valid_share: float = Field(0.25, gt=0, lt=1)
    logistic_c: float = Field(0.1, gt=0)
    # the training distribution of the score and of this many top features is kept for drift (PSI)
    monitor_features: int = Field(10, ge=0, le=100)
    # feature table columns that are never features (identifiers, the hard warning, dates)
    exclude_columns: StrTuple = (
        "customer_id",
        "household_id",
        "cohort",
        "hard_warning",
        "port_out_request_date",
        "activation_date",
        "contract_end_date",
    )


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


def _default_reason_map() -> dict[str, tuple[str, ...]]:
    # first matching family wins, in this order; a feature no pattern matches gets ``fallback_family``
    return {
        "contract_expiry": (
            "months_to_contract_end",
            "out_of_contract",
            "has_contract",
            "handset_age_months",
        ),
        "payment_trouble": ("overdue_*", "balance_due_*", "payment_ratio_*", "is_suspended"),
        "roaming_cost": ("roaming_*",),
        "service_issue": ("care_*", "unresolved_*", "days_since_last_care_contact"),
        "competitor_pull": (
            "competitor_*",
            "churned_*",
            "contacts_ratio_*",
            "distinct_contacts_*",
            "frequent_contacts",
        ),
        "usage_decline": ("*_chg_1m", "*_ratio_avg_3m", "max_inactive_run_days_*", "days_on_network_*"),
        "new_customer_fit": ("tenure_*", "usage_history_months", "acquisition_channel", "lifecycle_stage"),
        "price_sensitivity": (
            "bill_shock_*",
            "monthly_fee*",
            "invoice_amount_*",
            "arpu_*",
            "discount_amount_*",
            "plan_*",
            "topup_*",
        ),
    }


def _default_strategy() -> dict[str, dict[str, str]]:
    # value tier -> risk band -> action (../shared/docs/domain.md); retention teams change it
    return {
        "high": {"low": "care_loyalty", "medium": "proactive_retention", "high": "strongest_retention"},
        "medium": {"low": "cross_sell", "medium": "targeted_offer", "high": "retention_offer"},
        "low": {"low": "self_service", "medium": "digital_offer", "high": "low_cost_offer"},
        "unprofitable": {"low": "no_action", "medium": "no_action", "high": "no_action"},
    }


class ScoreParams(Params):
    """How a scored subscriber is banded, explained, valued and assigned a strategy (``models.scoring``)."""

    # risk band by calibrated churn probability: >= band_high is high, >= band_medium medium, else low
    band_high: float = Field(0.15, gt=0, le=1)
    band_medium: float = Field(0.05, gt=0, le=1)
    # reasons (SHAP contributions cost ~300x a prediction) for the rows that can be acted on: a band at or
    # above this, the top share of each cohort by risk, and every hard warning; null for the rest
    reasons_min_band: Literal["low", "medium", "high"] = "medium"
    reasons_top_share: float = Field(0.10, ge=0, le=1)
    reasons_top: int = Field(3, ge=1, le=20)
    # feature name patterns (fnmatch) per reason family, and the family of every other feature
    reason_families: dict[str, StrTuple] = Field(default_factory=_default_reason_map)
    fallback_family: str = "low_engagement"
    # value tier by ARPU over the last 3 months net of discounts (plan fee when there is no bill yet):
    # >= value_high high, >= value_medium medium, >= value_low low, below it unprofitable
    value_high: float = 45.0
    value_medium: float = 20.0
    value_low: float = 5.0
    strategy: dict[str, dict[str, str]] = Field(default_factory=_default_strategy)
    # lines at or above this band count as "at risk" in the customer and household roll-up
    at_risk_band: Literal["low", "medium", "high"] = "medium"
    # population stability index above this is a drift warning (score and each monitored feature)
    psi_warning: float = Field(0.2, gt=0)
    # behavioural segments: k-means clusters of the usage profile, fitted at training time
    segments: int = Field(6, ge=2, le=20)

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
    require_consent: bool = True
    cooldown_months: int = Field(3, ge=0)  # months after a retention contact with no new offer
    suppress_sales_on_open_complaint: bool = True
    exclude_unprofitable: bool = True


def _default_offers() -> tuple[Offer, ...]:
    any_risk = OfferEligibility()
    return (
        Offer(id="data_pack", description="data top-up pack (night or app packs included)", channel="sms",
              cost=3.0, capacity=None, effect=0.10, acceptance=0.35, sales_like=True,
              eligibility=OfferEligibility(
                  churn_types=("usage_decline", "low_engagement", "price_sensitivity"))),
        Offer(id="free_addon", description="a free add-on for three months", channel="app", cost=5.0,
              capacity=None, effect=0.12, acceptance=0.30, sales_like=True, eligibility=any_risk),
        Offer(id="tenure_upgrade", description="tenure upgrade package", channel="sms", cost=8.0,
              capacity=None, effect=0.15, acceptance=0.30,
              eligibility=OfferEligibility(cohorts=("established",), value_tiers=("high", "medium"))),
        Offer(id="renewal_device", description="contract renewal with a device upgrade", channel="call",
              cost=60.0, capacity=300, effect=0.35, acceptance=0.25, sales_like=True,
              eligibility=OfferEligibility(plan_types=("postpaid",), value_tiers=("high",),
                                           contract_states=("expiring", "out_of_contract"))),
        Offer(id="family_plan", description="discounted shared family plan", channel="call", cost=25.0,
              capacity=300, effect=0.25, acceptance=0.20, sales_like=True,
              eligibility=OfferEligibility(value_tiers=("high", "medium"))),
        Offer(id="roaming_pack", description="roaming pack", channel="sms", cost=6.0, capacity=None,
              effect=0.20, acceptance=0.40, sales_like=True,
              eligibility=OfferEligibility(churn_types=("roaming_cost",))),
        Offer(id="bill_credit", description="one-off bill credit", channel="call", cost=15.0, capacity=500,
              effect=0.18, acceptance=0.50,
              eligibility=OfferEligibility(churn_types=("price_sensitivity", "payment_trouble"))),
        Offer(id="service_recovery", description="service-recovery call", channel="call", cost=4.0,
              capacity=500, effect=0.20, acceptance=0.60,
              eligibility=OfferEligibility(churn_types=("service_issue",))),
    )  # fmt: skip


class OfferParams(Params):
    """The offer catalogue, the contact policy, the budget and the control group (``models.offers``)."""

    offers: tuple[Offer, ...] = Field(default_factory=_default_offers, strict=False)
    policy: ContactPolicy = Field(default_factory=ContactPolicy)
    budget: float = Field(5000.0, ge=0)  # per month, in the currency of the bills
    # value at risk = arpu_3m x this many months of revenue a churner takes away
    value_horizon_months: int = Field(12, ge=1)
    # candidates: lines at or above this risk band (others are excluded as below_value, not scored)
    min_band: Literal["low", "medium", "high"] = "medium"
    holdout_rate: float = Field(0.1, ge=0, lt=1)
    holdout_salt: str = "churnlake"
    # up to this many candidates the assignment is solved exactly (scipy HiGHS MILP on the driver);
    # above it by Lagrangian prices in Spark, with a bound on the gap to the optimum
    exact_max_candidates: int = Field(5000, ge=0)
    lagrangian_iterations: int = Field(60, ge=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> OfferParams:
        ids = [o.id for o in self.offers]
        if len(set(ids)) != len(ids) or "holdout" in ids:
            raise ValueError("offer ids must be unique and not 'holdout'")
        return self


class EvaluateParams(Params):
    """How measured campaign results become offer effects (``models.evaluation``)."""

    confidence: float = Field(0.95, gt=0.5, lt=1)
    # the measured effect is shrunk toward the catalogue's prior as if the prior were worth this many
    # lines in each arm: thin evidence moves it little, a large hold-out comparison replaces it
    prior_strength: float = Field(200.0, ge=0)
    # months of revenue a retained line keeps (incremental retained revenue)
    revenue_months: int = Field(3, ge=1)
    # the churn probability is binned at this resolution to compute realised metrics from counts
    probability_bins: int = Field(10_000, ge=100)
