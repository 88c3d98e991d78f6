"""Churn drivers that build over months, each with its own strength (0: off), on top of the risk episodes.

The risk episodes (:mod:`.simulate`) show for one to three months before churn; an operator's real
churners also drift away slowly, and a feature decision made on a simulator can only find the signals
the simulator carries. Each driver here is a mechanism a feature family is meant to read:

- ``decline``: usage falls month after month against the line's own long baseline (a decline starts
  with a small monthly chance and deepens by 8-15% a month); the deeper, the likelier the line leaves;
- ``competitor_pull``: the share of calls to other networks grows month after month; the leaving chance
  grows with it;
- ``contagion``: each contact of the calling circle who left adds to the leaving chance (decaying);
- ``plan_misfit``: a line whose usage is far from its plan's typical usage leaves more often;
- ``bill_shock``: a postpaid bill far above the fee, then a higher leaving chance for two months.

A strength scales a driver's chances (1: as documented here). Every draw comes from the drivers' own
random stream, so the other draws of a month do not depend on which drivers are on, and with every
strength 0 the simulation is the one without drivers, draw for draw.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from pipelines.sample_data.catalogue import PLAN_FEES, is_prepaid

DRIVER_STREAM = 0xD21E  # the drivers' random stream, apart from the simulation's and the traits'

DECLINE_START = 0.02  # monthly chance a steady line starts declining
DECLINE_STEP = (0.08, 0.15)  # usage lost per month of decline, of the baseline
MAX_DECLINE = 0.85
DECLINE_HAZARD = 0.12  # monthly leaving chance per unit of decline depth
PULL_START = 0.015
PULL_STEP = (0.04, 0.08)  # competitor share gained per month of pull
MAX_PULL = 0.6
PULL_HAZARD = 0.25  # per unit of pull
CONTAGION_DECAY = 0.7  # the weight of a leaver among the contacts a month later
CONTAGION_HAZARD = 0.03  # per (decayed) contact who left
MISFIT_FREE = 0.7  # |log(usage / plan median)| below this is a fitting plan
MISFIT_HAZARD = 0.015  # per unit of misfit beyond it
SHOCK_CHANCE = 0.02  # of postpaid lines a month
SHOCK_FEES = (1.0, 2.5)  # the extra charge, in monthly fees
SHOCK_MONTHS = 2  # months the leaving chance stays raised after a shocking bill
SHOCK_HAZARD = 0.1
MAX_DRIVER_HAZARD = 0.5
PORT_OUT_SHARE = 0.6  # of the drivers' leavers (the rest: voluntary)


@dataclass(frozen=True)
class DriverStrengths:
    """Each driver's strength (0: off; 1: the chances documented in the module)."""

    decline: float = 0.0
    competitor_pull: float = 0.0
    contagion: float = 0.0
    plan_misfit: float = 0.0
    bill_shock: float = 0.0

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) > 0 for f in fields(self))


class ChurnDrivers:
    """The drivers' per-line state (grown with the base) and their draws."""

    def __init__(self, strengths: DriverStrengths, seed: int) -> None:
        self.s = strengths
        self.rng = np.random.default_rng([seed, DRIVER_STREAM])
        self.decline = np.zeros(0)
        self.pull = np.zeros(0)
        self.circle_loss = np.zeros(0)
        self.shock_until = np.zeros(0, dtype=np.int32)

    def _grow(self, n: int) -> None:
        if n <= self.decline.size:
            return
        extra = n - self.decline.size
        self.decline = np.concatenate([self.decline, np.zeros(extra)])
        self.pull = np.concatenate([self.pull, np.zeros(extra)])
        self.circle_loss = np.concatenate([self.circle_loss, np.zeros(extra)])
        self.shock_until = np.concatenate([self.shock_until, np.full(extra, -1, dtype=np.int32)])

    def advance(self, lines: np.ndarray, comp_share: np.ndarray) -> None:
        """A month passes for the active ``lines``: declines and pulls start and deepen. The pull raises
        the lines' competitor share (``comp_share``, the simulation's array, changed in place)."""
        self._grow(int(lines.max()) + 1 if lines.size else 0)
        rng, s = self.rng, self.s
        draw = rng.random((4, lines.size))
        if s.decline > 0:
            d = self.decline[lines]
            start = (d == 0) & (draw[0] < DECLINE_START * s.decline)
            step = np.where((d > 0) | start, rng.uniform(*DECLINE_STEP, lines.size), 0.0)
            self.decline[lines] = np.minimum(d + step, MAX_DECLINE)
        if s.competitor_pull > 0:
            p = self.pull[lines]
            start = (p == 0) & (draw[1] < PULL_START * s.competitor_pull)
            step = np.where((p > 0) | start, rng.uniform(*PULL_STEP, lines.size), 0.0)
            self.pull[lines] = np.minimum(p + step, MAX_PULL)
            comp_share[lines] = np.minimum(comp_share[lines] + step, 0.95)

    def usage_multiplier(self, lines: np.ndarray) -> np.ndarray:
        """The declines' effect on the month's usage (1 without a decline)."""
        self._grow(int(lines.max()) + 1 if lines.size else 0)
        return 1.0 - self.decline[lines]

    def bill_extra(self, lines: np.ndarray, plan: np.ndarray, month_index: int) -> np.ndarray:
        """Extra usage charges of a shocking bill this month (0 for most lines); marks the shocked."""
        self._grow(int(lines.max()) + 1 if lines.size else 0)
        if self.s.bill_shock <= 0:
            return np.zeros(lines.size)
        rng = self.rng
        shocked = ~is_prepaid(plan) & (rng.random(lines.size) < SHOCK_CHANCE * self.s.bill_shock)
        self.shock_until[lines[shocked]] = month_index + SHOCK_MONTHS
        return np.where(shocked, PLAN_FEES[plan] * rng.uniform(*SHOCK_FEES, lines.size), 0.0)

    def leavers(
        self, lines: np.ndarray, candidates: np.ndarray, usage: np.ndarray, plan: np.ndarray, month_index: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Which of ``lines`` (where ``candidates``) the drivers take this month, and whether each leaver
        ports out. ``usage``/``plan``: the lines' usage level and plan (for the misfit)."""
        self._grow(int(lines.max()) + 1 if lines.size else 0)
        s = self.s
        hazard = s.decline * DECLINE_HAZARD * self.decline[lines]
        hazard = hazard + s.competitor_pull * PULL_HAZARD * self.pull[lines]
        hazard = hazard + s.contagion * CONTAGION_HAZARD * self.circle_loss[lines]
        if s.plan_misfit > 0:
            median = np.ones(lines.size)
            for p in np.unique(plan):
                on = plan == p
                median[on] = np.median(usage[on])
            misfit = np.abs(np.log(usage / median))
            hazard = hazard + s.plan_misfit * MISFIT_HAZARD * np.maximum(misfit - MISFIT_FREE, 0)
        hazard = hazard + np.where(self.shock_until[lines] >= month_index, s.bill_shock * SHOCK_HAZARD, 0.0)
        draw = self.rng.random((2, lines.size))
        leaving = candidates & (draw[0] < np.minimum(hazard, MAX_DRIVER_HAZARD))
        return leaving, draw[1][leaving] < PORT_OUT_SHARE

    def lost_contacts(self, contacts: np.ndarray, gone: np.ndarray) -> None:
        """The month's leavers ``gone`` counted in the calling circles (``contacts``: line x contact)."""
        self._grow(contacts.shape[0])
        n = contacts.shape[0]
        self.circle_loss[:n] = CONTAGION_DECAY * self.circle_loss[:n] + np.isin(contacts, gone).sum(axis=1)

    def forget(self, gone: np.ndarray) -> None:
        """Leavers' state is cleared (their index may be reused by nothing, but stay tidy)."""
        self.decline[gone] = 0.0
        self.pull[gone] = 0.0
        self.circle_loss[gone] = 0.0
        self.shock_until[gone] = -1
