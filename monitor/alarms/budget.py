"""False statistics alarms on clean runs, by simulation (pure numpy; no I/O).

The statistics alarms (``chi2_ndf`` and ``pull_width`` in the shipped rules) judge the
minirun means of the combined asymmetry after every minirun, over and over, so their
false-alarm rate per shift is not the per-check tail probability: every look is one more
chance, and a run restarts the count.  The budget is stated per clean shift-hour
(:data:`BUDGET_PER_HOUR`) and checked here by running the rules themselves
(:mod:`mupnc.monitor.alarms.rules`, :mod:`mupnc.monitor.alarms.logic`: latch, debounce,
gates) over simulated clean runs.

A clean run of ``n`` miniruns: each minirun mean is Gaussian about the true asymmetry with
its error (the pooled integrating error or the Poisson counting error are unbiased:
:mod:`mupnc.monitor.analysis.results`).  The newest minirun enters the statistics once it
holds half its patterns (:func:`mupnc.monitor.analysis.statistics.pulled_miniruns`), so
every minirun is looked at twice: half full (its mean from the first half, error
``sqrt(2)``) and full.  An operator acknowledges every annunciation at once (a latched
alarm would otherwise hide the next one); each annunciation counts as one false alarm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mupnc.monitor.alarms.inputs import chi2_ndf_z
from mupnc.monitor.alarms.logic import AlarmStatus, acknowledge, evaluate
from mupnc.monitor.alarms.rules import Observation, RuleSet

STATISTICS_RULES = ("chi2_ndf", "pull_width")
BUDGET_PER_HOUR = 0.01
"""False statistics alarms per clean shift-hour the shipped rules may give: 1 per 100 h."""


@dataclass(frozen=True)
class BudgetCheck:
    """False statistics alarms over ``runs`` simulated clean runs of ``miniruns`` each."""

    runs: int
    miniruns: int
    alarms: int

    def per_hour(self, miniruns_per_hour: float) -> float:
        """False alarms per clean hour when miniruns complete at ``miniruns_per_hour``."""
        hours = self.runs * self.miniruns / miniruns_per_hour
        return self.alarms / hours

    def upper_per_hour(self, miniruns_per_hour: float, sigma: float = 3.0) -> float:
        """:meth:`per_hour` plus ``sigma`` Poisson errors of the count (at least one)."""
        count = self.alarms + sigma * math.sqrt(max(self.alarms, 1))
        return count / (self.runs * self.miniruns / miniruns_per_hour)


def clean_run_observations(
    rng: np.random.Generator, miniruns: int, pull_miniruns: int
) -> list[dict[str, Observation]]:
    """The statistics observations at each look of one clean run (two per minirun: half
    full, full), as :class:`mupnc.monitor.alarms.inputs.AlarmInputs` makes them: chi2/ndf of
    the minirun means about their weighted mean, its normal score, the number of miniruns
    and (from ``pull_miniruns`` on) the standard deviation of the pulls."""
    halves = rng.standard_normal((miniruns, 2)) * math.sqrt(2.0)
    full = halves.mean(axis=1)
    # per look: sums over the complete miniruns before it, plus the newest (weight w)
    before = np.r_[0.0, np.cumsum(full)[:-1]]
    before_sq = np.r_[0.0, np.cumsum(full**2)[:-1]]
    k = np.arange(miniruns, dtype=np.float64)
    newest = np.column_stack([halves[:, 0], full]).ravel()
    weight = np.tile([0.5, 1.0], miniruns)  # 1 / error^2 of the newest minirun
    n = np.repeat(k + 1, 2)
    sum_w = np.repeat(k, 2) + weight
    sum_wx = np.repeat(before, 2) + weight * newest
    sum_wxx = np.repeat(before_sq, 2) + weight * newest**2
    mean = sum_wx / sum_w
    chi2 = np.maximum(sum_wxx - sum_wx * mean, 0.0)
    sum_pull = (
        np.repeat(before, 2) + np.sqrt(weight) * newest - mean * (np.repeat(k, 2) + np.sqrt(weight))
    )  # sum of (x - mean) / error
    looks = []
    for i in range(2 * miniruns):
        ndf = int(n[i]) - 1
        chi2_ndf = float(chi2[i] / ndf) if ndf > 0 else math.nan
        width = math.nan
        if n[i] >= pull_miniruns and ndf > 0:
            width = math.sqrt(max(chi2[i] - sum_pull[i] ** 2 / n[i], 0.0) / ndf)
        looks.append(
            {
                "stats.chi2_ndf": Observation(chi2_ndf),
                "stats.chi2_ndf_z": Observation(chi2_ndf_z(chi2_ndf, ndf)),
                "stats.miniruns": Observation(float(n[i])),
                "stats.pull_width": Observation(width),
            }
        )
    return looks


def false_statistics_alarms(
    rules: RuleSet, runs: int, miniruns: int, seed: int, names: tuple[str, ...] = STATISTICS_RULES
) -> BudgetCheck:
    """Annunciations of the rules ``names`` over ``runs`` clean runs of ``miniruns`` each."""
    rng = np.random.default_rng(seed)
    chosen = [rules[name] for name in names]
    pull_miniruns = int(rules.inputs["pull_miniruns"])
    alarms = 0
    for _ in range(runs):
        statuses = [AlarmStatus() for _ in chosen]
        for now, observations in enumerate(clean_run_observations(rng, miniruns, pull_miniruns)):
            for rule, status in zip(chosen, statuses, strict=True):
                r = rule.read(observations, {})
                change = evaluate(
                    status, rule.debounce, r.severity, float(now), r.violations, r.checks, r.enabled
                )
                if change is not None and change.annunciate:
                    alarms += 1
                    acknowledge(status)
    return BudgetCheck(runs, miniruns, alarms)
