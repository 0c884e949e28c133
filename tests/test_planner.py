"""Sensitivity planner: the talk's headline numbers, scaling laws, errors, `mupnc plan` (its
bad input with the other commands' in test_cli_errors.py)."""

from __future__ import annotations

import json

import pytest
from support.cli import mupnc

from mupnc.planner import PlanError, plan


def within_factor(value: float, target: float, factor: float = 1.5) -> bool:
    return target / factor <= value <= target * factor


def test_talk_sm_running_time() -> None:
    """T[SM] ~ 1e8 s at 1e11 muons/s for A_FB = 0.5e-4 (krypton)."""
    result = plan("afb", flux=1e11)
    assert result.asymmetry == pytest.approx(0.5e-4)
    assert result.z == 36
    assert within_factor(result.seconds, 1e8)


def test_talk_np_running_time() -> None:
    """T[NP] ~ 3e5 s at 1e7 muons/s for A = 0.1."""
    assert within_factor(plan("afb", flux=1e7, asymmetry=0.1).seconds, 3e5)


def test_talk_formulas_scale_with_flux_and_asymmetry() -> None:
    """T[NP] ~ 3e5 s x (1e7/Phi) x (0.1/A)^2 over the talk's flux range."""
    for flux in (1e7, 1e9, 1e11):
        for asymmetry in (0.005, 0.03, 0.11):
            expected = 3e5 * (1e7 / flux) * (0.1 / asymmetry) ** 2
            assert within_factor(plan("afb", flux=flux, asymmetry=asymmetry).seconds, expected)


def test_alr_numbers_of_the_talk() -> None:
    sm = plan("alr")  # A_LR 1e-4 at Q^2 = 1 GeV^2: > 1e8 events, > 1e14 muons
    assert sm.events == pytest.approx(1e8)
    assert sm.muons == pytest.approx(1e14)
    light = plan("alr", q2=0.01, asymmetry=1e-3)  # 100x cross section, 10x asymmetry
    assert light.muons == pytest.approx(1e10)


def test_statistics_scaling() -> None:
    base = plan("afb", asymmetry=1e-3)
    assert plan("afb", asymmetry=1e-3, sigma=3).events == pytest.approx(9 * base.events)
    assert plan("afb", asymmetry=1e-3, polarization=0.5).seconds == pytest.approx(4 * base.seconds)
    assert plan("afb", asymmetry=1e-3, signal_fraction=0.1).events == pytest.approx(
        100 * base.events
    )
    assert plan("afb", asymmetry=1e-3, flux=1e9).seconds == pytest.approx(100 * base.seconds)
    assert base.efficiency == pytest.approx(3.6e-11)
    assert plan("afb", asymmetry=1e-3, efficiency=3.6e-10).seconds == pytest.approx(
        base.seconds / 10
    )
    # the SM default asymmetry scales as (36/Z)^3
    assert plan("afb", z=30).asymmetry == pytest.approx(0.5e-4 * (36 / 30) ** 3)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"mode": "xyz"}, "mode"),
        ({"mode": "alr", "z": 36}, "afb only"),
        ({"mode": "afb", "q2": 1.0}, "alr only"),
        ({"mode": "afb", "z": 0}, "z must"),
        ({"mode": "afb", "flux": 0.0}, "flux"),
        ({"mode": "afb", "asymmetry": 0.0}, "asymmetry"),
        ({"mode": "afb", "sigma": -1.0}, "sigma"),
        ({"mode": "afb", "polarization": 1.5}, "polarization"),
        ({"mode": "afb", "efficiency": 2.0}, "efficiency"),
    ],
)
def test_bad_inputs(kwargs: dict, words: str) -> None:
    mode = kwargs.pop("mode")
    with pytest.raises(PlanError, match=words):
        plan(mode, **kwargs)


def test_cli_plan_json() -> None:
    result = mupnc("plan", "--mode", "afb", "--flux", "1e7", "--asymmetry", "0.1", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert within_factor(data["seconds"], 3e5)
    assert data["events"] == pytest.approx(100)
    assert data["flux"] == 1e7 and data["asymmetry"] == 0.1 and data["mode"] == "afb"
    text = mupnc("plan", "--mode", "afb")
    assert text.returncode == 0 and "1.11e+08 s" in text.stdout
