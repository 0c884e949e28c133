"""The statistics alarms' false-alarm budget per clean shift-hour, by simulation
(monitor/alarms/budget.py): the shipped rules keep it; the per-check thresholds before
did not."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mupnc.monitor.alarms.budget import (
    BUDGET_PER_HOUR,
    clean_run_observations,
    false_statistics_alarms,
)
from mupnc.monitor.alarms.rules import load_rules, parse_rules
from mupnc.monitor.analysis.statistics import weighted_mean

FAST_MINIRUNS_PER_HOUR = 192
"""The most miniruns an hour the budget is stated for: 9000 quartets at 1920 Hz, 18.75 s."""
PER_CHECK_RULES = """
[alarms.chi2_ndf]
kind = "limit"
input = "stats.chi2_ndf_z"
high = 3.5
high_severity = "MINOR"
guidance = "before: a per-check threshold"

[alarms.pull_width]
kind = "limit"
input = "stats.pull_width"
low = 0.5
high = 1.8
guidance = "before: a fixed band"
"""


def test_observations_are_those_of_the_minirun_means() -> None:
    """The vectorised looks agree with chi2/ndf from the analysis' weighted mean and with
    the pull width of the minirun means, half-full newest minirun included."""
    miniruns = 12
    looks = clean_run_observations(np.random.default_rng(3), miniruns, pull_miniruns=10)
    halves = np.random.default_rng(3).standard_normal((miniruns, 2)) * math.sqrt(2.0)
    full = halves.mean(axis=1)
    assert len(looks) == 2 * miniruns
    for k in range(miniruns):
        for half, look in ((True, looks[2 * k]), (False, looks[2 * k + 1])):
            values = np.r_[full[:k], halves[k, 0] if half else full[k]]
            errors = np.r_[np.ones(k), math.sqrt(2.0) if half else 1.0]
            mean, _, chi2_ndf = weighted_mean(values, errors)
            assert look["stats.miniruns"].value == k + 1
            if k == 0:
                assert math.isnan(look["stats.chi2_ndf"].value)
                continue
            assert look["stats.chi2_ndf"].value == pytest.approx(chi2_ndf, rel=1e-12)
            width = look["stats.pull_width"].value
            if k + 1 < 10:
                assert math.isnan(width)
            else:
                assert width == pytest.approx(np.std((values - mean) / errors, ddof=1), 1e-12)


def test_shipped_statistics_alarms_keep_the_false_alarm_budget() -> None:
    """1000 clean one-hour runs at 192 miniruns an hour (the fast scheme's shortest
    minirun): false statistics alarms per hour, plus three Poisson errors of their count,
    stay within 1 per 100 shift-hours."""
    check = false_statistics_alarms(load_rules(), runs=1000, miniruns=192, seed=7)
    assert check.upper_per_hour(FAST_MINIRUNS_PER_HOUR) <= BUDGET_PER_HOUR, check


def test_per_check_thresholds_broke_the_budget() -> None:
    """The rules before (chi2/ndf z > 3.5 at every look, a fixed pull-width band 0.5-1.8)
    gave several false alarms per 100 clean hours: beyond the budget by more than three
    Poisson errors."""
    check = false_statistics_alarms(parse_rules(PER_CHECK_RULES), runs=300, miniruns=192, seed=7)
    hours = check.runs * check.miniruns / FAST_MINIRUNS_PER_HOUR
    assert check.alarms - 3 * math.sqrt(check.alarms) > BUDGET_PER_HOUR * hours, check
