"""Uplift models of the retention offers, learned from the randomised experiment (pure: pandas, numpy,
LightGBM), and the held-out comparison that decides whether they replace the rule.

The matcher's rule values offer o for a line as ``churn_probability x effect_o``: every line responds in
proportion to its risk. An uplift model learns instead, per offer, the line's **conditional effect**

    tau_o(x) = P(churn | x, left alone) - P(churn | x, offered o)          (absolute churn reduction)

from the experiment lines of matured score months: each offer's treated lines and its control group (the
same intended offer, randomised), their features at the score month ``x`` and their campaign outcome
(churn from the contact month). ``tau_o`` is positive for the lines the offer keeps (persuadables) and
negative for those a contact pushes out (sleeping dogs), which ``churn_probability x effect`` cannot be.

Learners (``uplift.learner``), small regularised LightGBMs with a fixed seed and thread count:

- the **control model** ``mu0``: one classifier of churn on the control lines of every offer. They are
  all untreated, randomised candidates, so pooling them gives the control arm (a tenth of each offer's
  lines) the size of the treated one; ``churn_probability`` is its strongest feature.
- **T-learner** (``t``): a classifier ``mu1_o`` on offer o's treated lines; ``tau_o = mu0 - mu1_o``.
- **X-learner** (``x``, the default): the treated lines' imputed effects ``mu0(x) - y`` and the control
  lines' ``y - mu1_o(x)`` are regressed on ``x`` (``tau1_o``, ``tau0_o``), and
  ``tau_o = w tau0_o + (1 - w) tau1_o`` with ``w`` the control share of the offer's lines. Künzel et
  al. weight by the propensity (the treated share) because each imputation uses the *other* arm's
  model; here the control model is shared by every offer, so the treated lines' imputations are as
  good as the controls', and each regression is weighted by the lines it learned from. Regressing the
  effect itself, rather than subtracting two separately regularised risk curves, keeps differences in
  the two curves' smoothing from showing up as effect.

An offer with fewer than ``uplift.min_lines_per_arm`` treated or control lines gets no model: its
column of :meth:`UpliftModel.predict_effect` is NaN and the matcher keeps the rule for it
(:func:`models.offers.net_values`). Pooling such an offer with its family (the other sales-like offers)
was left out on purpose: it would replace the offer's own measured effect with other offers' (a device
renewal's with a data pack's), while the rule keeps the offer's measured or prior effect.

:func:`compare_rankings` scores a model against the rule on held-out months: per offer, the Qini
coefficient of each ranking (:func:`qini_coefficient`, the area between the Qini curve and random
targeting over the perfect ranking's, as scikit-uplift's ``qini_auc_score`` with negative effects) and
the realised net value of targeting the top ``target_share`` of the offer's lines by each ranking's
expected value. Both are unbiased on randomised data; :func:`uplift_decision` promotes the model only
when it beats the rule on both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.errors import MissingColumnsError
from models.encoding import FeatureEncoder
from models.params import UpliftParams

# the columns of an experiment frame besides the features
OFFER, TREATED, OUTCOME = "offer_id", "treated", "churned"
EXPERIMENT_COLUMNS = (OFFER, TREATED, OUTCOME)
RANKINGS = ("uplift", "rule")


def resolve_features(columns: Sequence[str], patterns: Sequence[str]) -> list[str]:
    """The columns matching the patterns (fnmatch), in pattern order, never an experiment column."""
    out: list[str] = []
    for pattern in patterns:
        for column in columns:
            if column not in out and column not in EXPERIMENT_COLUMNS and fnmatchcase(column, pattern):
                out.append(column)
    return out


@dataclass(frozen=True)
class Learner:
    """A fitted LightGBM, or a constant where the rows cannot give one (no rows, a single class)."""

    booster: lgb.Booster | None
    constant: float

    def predict(self, x: np.ndarray, num_threads: int) -> np.ndarray:
        if self.booster is None:
            return np.full(len(x), self.constant)
        return np.asarray(self.booster.predict(x, num_threads=num_threads), dtype=float)


def _lgb_params(params: UpliftParams, objective: str) -> dict[str, Any]:
    return {
        **params.lightgbm,
        "objective": objective,
        "verbosity": -1,
        "seed": params.seed,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": params.num_threads,
        "feature_pre_filter": False,
    }


def fit_learner(
    x: np.ndarray,
    y: np.ndarray,
    encoder: FeatureEncoder,
    params: UpliftParams,
    objective: Literal["binary", "regression"],
) -> Learner:
    """One small regularised LightGBM (binary: churn probabilities; regression: imputed effects)."""
    mean = float(y.mean()) if len(y) else 0.0
    if len(y) < 2 or (objective == "binary" and y.min() == y.max()):
        return Learner(None, mean)
    data = lgb.Dataset(
        x,
        y.astype(float),
        feature_name=list(encoder.features),
        categorical_feature=encoder.categorical,
        params=_lgb_params(params, objective),
        free_raw_data=True,
    )
    booster = lgb.train(_lgb_params(params, objective), data, num_boost_round=params.num_boost_round)
    return Learner(booster, mean)


@dataclass(frozen=True)
class OfferEffectModel:
    """One offer's learned effect: the treated model, and for the X-learner both effect regressions."""

    offer_id: str
    treated_lines: int
    control_lines: int
    learner: Literal["x", "t"]
    treated: Learner  # mu1: churn if offered
    tau_treated: Learner | None = None  # X-learner: regression of mu0(x) - y on the treated lines
    tau_control: Learner | None = None  # X-learner: regression of y - mu1(x) on the control lines

    @property
    def control_weight(self) -> float:
        return self.control_lines / (self.control_lines + self.treated_lines)

    def predict(self, x: np.ndarray, mu0: np.ndarray, num_threads: int) -> np.ndarray:
        """The absolute churn reduction for each row of ``x`` (``mu0``: the control model's risk)."""
        if self.learner == "t" or self.tau_treated is None or self.tau_control is None:
            return mu0 - self.treated.predict(x, num_threads)
        w = self.control_weight
        return w * self.tau_control.predict(x, num_threads) + (1 - w) * self.tau_treated.predict(
            x, num_threads
        )


@dataclass
class UpliftModel:
    """Per offer of the catalogue, the predicted churn reduction of offering it to a line."""

    offer_ids: tuple[str, ...]
    encoder: FeatureEncoder
    control: Learner  # mu0: churn if left alone, from the control lines of every offer
    offers: dict[str, OfferEffectModel]  # the offers with a model of their own
    num_threads: int
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def features(self) -> tuple[str, ...]:
        return self.encoder.features

    def covered(self, offer_ids: Sequence[str] | None = None) -> list[str]:
        """The offers (of ``offer_ids``, default the catalogue at fit time) the model predicts."""
        return [o for o in (offer_ids or self.offer_ids) if o in self.offers]

    def predict_control(self, frame: pd.DataFrame) -> np.ndarray:
        """The control model's churn probability of each line if left alone."""
        return self.control.predict(self.encoder.transform(frame), self.num_threads)

    def predict_effect(self, frame: pd.DataFrame, offer_ids: Sequence[str] | None = None) -> np.ndarray:
        """Lines x offers (``offer_ids``, default the catalogue at fit time): each offer's predicted
        absolute churn reduction (negative: the offer raises churn); NaN for an offer without a model."""
        ids = list(offer_ids) if offer_ids is not None else list(self.offer_ids)
        out = np.full((len(frame), len(ids)), np.nan)
        if not len(frame) or not any(o in self.offers for o in ids):
            return out
        x = self.encoder.transform(frame)
        mu0 = self.control.predict(x, self.num_threads)
        for j, offer in enumerate(ids):
            if offer in self.offers:
                out[:, j] = self.offers[offer].predict(x, mu0, self.num_threads)
        return out


def _check_experiment(frame: pd.DataFrame, features: Sequence[str]) -> None:
    missing = [c for c in (*EXPERIMENT_COLUMNS, *features) if c not in frame.columns]
    if missing:
        raise MissingColumnsError(missing, "the experiment frame of the uplift model")


def fit_uplift(frame: pd.DataFrame, offer_ids: Sequence[str], params: UpliftParams) -> UpliftModel:
    """Fit the uplift model on experiment lines: ``offer_id`` (the intended offer), ``treated`` (offered,
    else its control group), ``churned`` (the campaign outcome) and the features ``params.features``
    match among the frame's columns."""
    features = resolve_features(list(frame.columns), params.features)
    _check_experiment(frame, features)
    encoder = FeatureEncoder.fit(frame, features)
    x = encoder.transform(frame)
    y = frame[OUTCOME].to_numpy(dtype=float)
    treated = frame[TREATED].to_numpy(dtype=bool)
    offer = frame[OFFER].astype(str).to_numpy()
    control = fit_learner(x[~treated], y[~treated], encoder, params, "binary")
    mu0 = control.predict(x, params.num_threads)
    offers: dict[str, OfferEffectModel] = {}
    report: dict[str, Any] = {
        "learner": params.learner,
        "features": list(encoder.features),
        "control_lines": int((~treated).sum()),
        "offers": {},
    }
    for offer_id in offer_ids:
        t_rows, c_rows = (offer == offer_id) & treated, (offer == offer_id) & ~treated
        n_t, n_c = int(t_rows.sum()), int(c_rows.sum())
        entry: dict[str, Any] = {"treated_lines": n_t, "control_lines": n_c}
        report["offers"][offer_id] = entry
        if min(n_t, n_c) < params.min_lines_per_arm:
            entry["model"] = f"none: fewer than {params.min_lines_per_arm} lines in an arm (the rule)"
            continue
        mu1 = fit_learner(x[t_rows], y[t_rows], encoder, params, "binary")
        model = OfferEffectModel(offer_id, n_t, n_c, params.learner, mu1)
        if params.learner == "x":
            tau1 = fit_learner(x[t_rows], mu0[t_rows] - y[t_rows], encoder, params, "regression")
            imputed = y[c_rows] - mu1.predict(x[c_rows], params.num_threads)
            tau0 = fit_learner(x[c_rows], imputed, encoder, params, "regression")
            model = OfferEffectModel(offer_id, n_t, n_c, "x", mu1, tau1, tau0)
        offers[offer_id] = model
        entry["model"] = "own"
    return UpliftModel(tuple(offer_ids), encoder, control, offers, params.num_threads, report)


# ------------------------------------------------------------------------------------ evaluation
def qini_curve(retained: np.ndarray, score: np.ndarray, treated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Qini curve of a ranking (best ``score`` first): at each distinct score, the lines targeted so
    far and the incremental retained lines ``R_t - R_c x N_t / N_c`` among them (from (0, 0))."""
    retained, score = np.asarray(retained, dtype=float), np.asarray(score, dtype=float)
    treated = np.asarray(treated, dtype=float)
    order = np.argsort(score, kind="mergesort")[::-1]
    y, t, s = retained[order], treated[order], score[order]
    ends = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1] if len(s) else np.array([], dtype=int)
    n_t = np.cumsum(t)[ends]
    n_all = (ends + 1).astype(float)
    n_c = n_all - n_t
    y_t = np.cumsum(y * t)[ends]
    y_c = np.cumsum(y * (1 - t))[ends]
    ratio = np.divide(n_t, n_c, out=np.zeros_like(n_t), where=n_c != 0)
    return np.r_[0.0, n_all], np.r_[0.0, y_t - y_c * ratio]


def qini_coefficient(retained: np.ndarray, score: np.ndarray, treated: np.ndarray) -> float:
    """The area between the ranking's Qini curve and random targeting, over the perfect ranking's (treated
    responders first, control responders last: negative effects allowed); 1 perfect, 0 random. NaN when
    an arm is empty or the perfect ranking does no better than random."""
    retained, treated = np.asarray(retained, dtype=float), np.asarray(treated, dtype=float)
    if not len(retained) or treated.all() or not treated.any():
        return math.nan
    x, y = qini_curve(retained, score, treated)
    xp, yp = qini_curve(retained, retained * treated - retained * (1 - treated), treated)
    baseline = xp[-1] * yp[-1] / 2
    perfect = _area(xp, yp) - baseline
    if perfect <= 0:
        return math.nan
    return (_area(x, y) - baseline) / perfect


def _area(x: np.ndarray, y: np.ndarray) -> float:
    """The trapezoidal area under a curve."""
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


def realised_value(
    churned: np.ndarray, treated: np.ndarray, value: np.ndarray, strata: np.ndarray
) -> tuple[float, int]:
    """The incremental value of treating every given line, estimated from the randomised arms: per
    stratum (a score month: its own control share), lines x (mean value lost among the controls - mean
    value lost among the treated); a stratum without both arms adds nothing. (value, lines counted)."""
    total, counted = 0.0, 0
    lost = np.asarray(churned, dtype=float) * np.asarray(value, dtype=float)
    treated = np.asarray(treated, dtype=bool)
    for s in np.unique(strata):
        rows = strata == s
        t, c = rows & treated, rows & ~treated
        if t.any() and c.any():
            total += rows.sum() * (lost[c].mean() - lost[t].mean())
            counted += int(rows.sum())
    return float(total), counted


@dataclass(frozen=True)
class RankingComparison:
    """Per offer (``table``) and over the offers compared: the Qini coefficient of each ranking (mean
    weighted by the offer's held-out lines) and the realised net value of targeting the top
    ``target_share`` of each offer's lines by it (sum); and the lower confidence bound of the uplift
    ranking's gain over the rule's in each (a paired bootstrap of the held-out lines)."""

    table: pd.DataFrame
    qini: dict[str, float]
    net_value: dict[str, float]
    target_share: float
    qini_gain_low: float = math.nan
    value_gain_low: float = math.nan
    confidence: float = math.nan

    @property
    def compared(self) -> list[str]:
        return self.table.loc[self.table["compared"], OFFER].tolist()


@dataclass(frozen=True)
class _Held:
    """The held-out lines as arrays, and how each ranking scores them."""

    offer: np.ndarray
    treated: np.ndarray
    churned: np.ndarray
    stratum: np.ndarray
    value: np.ndarray
    scores: dict[str, np.ndarray]
    cost: Mapping[str, float]
    target_share: float

    def offer_metrics(self, offer_id: str, idx: np.ndarray) -> dict[str, float]:
        """``qini_<ranking>`` and ``value_<ranking>`` of one offer's lines ``idx``."""
        out: dict[str, float] = {}
        k = math.ceil(self.target_share * len(idx))
        for name, score in self.scores.items():
            s = score[idx]
            out[f"qini_{name}"] = qini_coefficient(1 - self.churned[idx], s, self.treated[idx])
            top = idx[np.argsort(-(s * self.value[idx]), kind="stable")[:k]]
            incremental, _ = realised_value(
                self.churned[top], self.treated[top], self.value[top], self.stratum[top]
            )
            out[f"value_{name}"] = incremental - k * float(self.cost.get(offer_id, 0.0))
        return out

    def totals(self, rows: Mapping[str, np.ndarray]) -> tuple[dict[str, float], dict[str, float]]:
        """The Qini (line-weighted mean) and net value (sum) of each ranking over the offers ``rows``."""
        metrics = {o: self.offer_metrics(o, idx) for o, idx in rows.items()}
        qini, net = {}, {}
        for name in self.scores:
            q = np.array([metrics[o][f"qini_{name}"] for o in rows], dtype=float)
            w = np.array([len(idx) for idx in rows.values()], dtype=float)
            ok = ~np.isnan(q)
            qini[name] = float(np.average(q[ok], weights=w[ok])) if ok.any() else math.nan
            net[name] = float(sum(metrics[o][f"value_{name}"] for o in rows))
        return qini, net


def compare_rankings(
    frame: pd.DataFrame,
    scores: Mapping[str, np.ndarray],
    value: np.ndarray,
    cost: Mapping[str, float],
    *,
    target_share: float,
    min_lines_per_arm: int,
    strata: str = "score_month",
    confidence: float = 0.9,
    resamples: int = 200,
    seed: int = 0,
) -> RankingComparison:
    """Each ranking of ``scores`` (predicted churn reduction of the line's intended offer; the rule's is
    ``churn_probability``, which orders an offer's lines as ``churn_probability x effect``) on held-out
    experiment lines: per offer with ``min_lines_per_arm`` lines in both arms, its Qini coefficient (on
    retention) and the realised net value (``value``: of a save per line; ``cost``: per offer) of
    targeting the offer's top ``target_share`` by expected value (score x value).

    With ``uplift`` and ``rule`` among the rankings, the gains of the first over the second are
    bootstrapped (``resamples`` draws of each offer's treated and control lines, with replacement, the
    same draw for both rankings): their lower bounds at ``confidence`` say whether the gain is more than
    the noise of the held-out lines.
    """
    held = _Held(
        offer=frame[OFFER].astype(str).to_numpy(),
        treated=frame[TREATED].to_numpy(dtype=bool),
        churned=frame[OUTCOME].to_numpy(dtype=float),
        stratum=(
            frame[strata].astype(str).to_numpy() if strata in frame else np.zeros(len(frame), dtype=str)
        ),
        value=np.nan_to_num(np.asarray(value, dtype=float)),
        scores={k: np.asarray(v, dtype=float) for k, v in scores.items()},
        cost=cost,
        target_share=target_share,
    )
    rows: list[dict[str, Any]] = []
    compared: dict[str, np.ndarray] = {}
    for offer_id in sorted(set(held.offer)):
        idx = np.flatnonzero(held.offer == offer_id)
        n_t, n_c = int(held.treated[idx].sum()), int((~held.treated[idx]).sum())
        ok = min(n_t, n_c) >= min_lines_per_arm
        if ok:
            compared[offer_id] = idx
        rows.append(
            {OFFER: offer_id, "treated": n_t, "control": n_c, "compared": ok}
            | held.offer_metrics(offer_id, idx)
        )
    columns = [OFFER, "treated", "control", "compared"]
    columns += [f"{m}_{n}" for n in scores for m in ("qini", "value")]
    table = pd.DataFrame(rows, columns=columns)
    qini, net = held.totals(compared)
    comparison = RankingComparison(table, qini, net, target_share)
    if not compared or not set(RANKINGS) <= set(scores) or resamples == 0:
        return comparison
    rng = np.random.default_rng(seed)
    gains = np.empty((resamples, 2))
    for b in range(resamples):
        draw = {}
        for offer_id, idx in compared.items():
            arms = [idx[held.treated[idx]], idx[~held.treated[idx]]]
            draw[offer_id] = np.concatenate([rng.choice(a, size=len(a)) for a in arms])
        q, v = held.totals(draw)
        gains[b] = (q["uplift"] - q["rule"], v["uplift"] - v["rule"])
    low = np.nanquantile(gains, 1 - confidence, axis=0)
    return RankingComparison(table, qini, net, target_share, float(low[0]), float(low[1]), confidence)


def uplift_decision(comparison: RankingComparison) -> tuple[bool, list[str]]:
    """Whether the uplift model replaces the rule in matching, and why: only when it beats the rule on the
    held-out months in both the Qini and the realised net value, each gain's lower confidence bound
    above zero (a gain within the noise of the held-out lines is no evidence)."""
    q, v, c = comparison.qini, comparison.net_value, comparison
    compared = comparison.compared
    if not compared:
        return False, ["no offer has enough held-out lines in both arms to compare: the rule stays"]
    level = f"{c.confidence:.0%}"
    qini_ok = c.qini_gain_low > 0
    value_ok = c.value_gain_low > 0
    reasons = [
        f"compared on {', '.join(compared)}",
        f"Qini {q['uplift']:.4f} against the rule's {q['rule']:.4f} (gain's {level} lower bound "
        f"{c.qini_gain_low:.4f}): {'better' if qini_ok else 'not better'}",
        f"net value of targeting the top {c.target_share:.0%} of each offer's lines {v['uplift']:.1f} "
        f"against the rule's {v['rule']:.1f} (gain's {level} lower bound {c.value_gain_low:.1f}): "
        f"{'better' if value_ok else 'not better'}",
    ]
    ok = qini_ok and value_ok
    reasons.append(
        "promoted: the uplift model beats the rule on both"
        if ok
        else "not promoted: the rule stays (the uplift model must beat it on both, beyond the noise)"
    )
    return ok, reasons
