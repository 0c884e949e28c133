"""Sensitivity planner: the talk's headline numbers, scaling laws, errors, `mupnc plan` (its
bad input with the other commands' in test_cli_errors.py).

The talk's running times are for N > 1/A^2 (1 sigma); the planner defaults to 5 sigma, so
every comparison with the talk passes ``sigma=1`` explicitly.  "Within x1.5" is the
tolerance the issue sets for order-of-magnitude figures quoted to one digit."""

from __future__ import annotations

import json

import pytest
from support.cli import mupnc

from mupnc.planner import PlanError, model_asymmetry, plan
from mupnc.sim.muonic_atom import afb_model
from mupnc.sim.nucleus import default_mass_number


def within_factor(value: float, target: float, factor: float = 1.5) -> bool:
    return target / factor <= value <= target * factor


def test_talk_sm_running_time() -> None:
    """T[SM] ~ 1e8 s at 1e11 muons/s (1 sigma) for A_FB[SM](Kr) from delta_SM."""
    result = plan("afb", flux=1e11, sigma=1)
    assert result.asymmetry == afb_model(36, default_mass_number(36))  # the model, no constant
    assert within_factor(result.asymmetry, 0.5e-4, 1.2)  # the talk's ~0.5e-4
    assert result.z == 36
    assert within_factor(result.seconds, 1e8)


def test_talk_np_running_time() -> None:
    """T[NP] ~ 3e5 s at 1e7 muons/s (1 sigma) for A = 0.1, and for the np preset (0.10)."""
    assert within_factor(plan("afb", flux=1e7, asymmetry=0.1, sigma=1).seconds, 3e5)
    assert within_factor(plan("afb", flux=1e7, preset="np", sigma=1).seconds, 3e5)


def test_talk_formulas_scale_with_flux_and_asymmetry() -> None:
    """T[NP] ~ 3e5 s x (1e7/Phi) x (0.1/A)^2 over the talk's flux range (1 sigma)."""
    for flux in (1e7, 1e9, 1e11):
        for asymmetry in (0.005, 0.03, 0.11):
            expected = 3e5 * (1e7 / flux) * (0.1 / asymmetry) ** 2
            result = plan("afb", flux=flux, asymmetry=asymmetry, sigma=1)
            assert within_factor(result.seconds, expected)


def test_default_significance_is_five_sigma() -> None:
    one, default = plan("afb", sigma=1), plan("afb")
    assert default.sigma == 5
    assert default.seconds == pytest.approx(25 * one.seconds)


def test_alr_numbers_of_the_talk() -> None:
    """A_LR ~ 1e-4 at Q^2 = 1 GeV^2: > 1e8 events, > 1e14 muons; at 0.01 GeV^2 a 10x larger
    asymmetry and 100x larger cross section: 1e10 muons (all at 1 sigma)."""
    sm = plan("alr", sigma=1)
    assert sm.asymmetry == model_asymmetry("alr", "sm", q2=1.0)
    assert within_factor(sm.asymmetry, 1e-4)
    assert within_factor(sm.events, 1e8) and sm.events > 1e8
    assert within_factor(sm.muons, 1e14) and sm.muons > 1e14
    light = plan("alr", q2=0.01, asymmetry=1e-3, sigma=1)
    assert light.muons == pytest.approx(1e10)
    # the np preset's mediator (100 MeV) gives A_LR ~ 1e-3 at 0.01-0.04 GeV^2, ~1000x the SM
    assert within_factor(plan("alr", q2=0.04, preset="np").asymmetry, 1e-3)
    assert plan("alr", q2=0.01, preset="np").asymmetry > 500 * plan("alr", q2=0.01).asymmetry


def test_alr_momentum_and_angle_give_q2() -> None:
    """Q^2 = 2 p^2 (1 - cos theta): 100 MeV/c backward is 0.04 GeV^2."""
    result = plan("alr", momentum=100.0, cos_theta=-1.0)
    assert result.q2 == pytest.approx(0.04)
    assert result.asymmetry == pytest.approx(plan("alr", q2=0.04).asymmetry)
    assert plan("alr", momentum=29.0).q2 == pytest.approx(2 * 0.029**2)  # 90 deg by default


def test_statistics_scaling() -> None:
    base = plan("afb", asymmetry=1e-3)
    assert plan("afb", asymmetry=1e-3, sigma=3 * base.sigma).events == pytest.approx(
        9 * base.events
    )
    assert plan("afb", asymmetry=1e-3, polarization=0.5).seconds == pytest.approx(4 * base.seconds)
    assert plan("afb", asymmetry=1e-3, flux=1e9).seconds == pytest.approx(100 * base.seconds)
    assert base.efficiency == pytest.approx(3.6e-11)
    assert plan("afb", asymmetry=1e-3, efficiency=3.6e-10).seconds == pytest.approx(
        base.seconds / 10
    )
    # the SM default asymmetry comes from delta_SM of each nucleus, ~ (36/Z)^3 x (radius etc.)
    assert plan("afb", z=30).asymmetry == afb_model(30, default_mass_number(30))
    assert within_factor(plan("afb", z=30).asymmetry, 0.5e-4 * (36 / 30) ** 3, 1.3)


def test_signal_fraction_costs_one_over_d() -> None:
    """A signal fraction D dilutes the asymmetry (N ~ 1/D^2 counted events) but the counted
    events come D signal : 1 - D background, and the efficiency counts signal only:
    muons = D N / efficiency, so T ~ 1/D (1/D^2 before: 100x too long at D = 0.01)."""
    base = plan("afb", asymmetry=1e-3)
    for d in (0.5, 0.1, 0.01):
        diluted = plan("afb", asymmetry=1e-3, signal_fraction=d)
        assert diluted.events == pytest.approx(base.events / d**2)
        assert diluted.signal_events == pytest.approx(base.events / d)
        assert diluted.seconds == pytest.approx(base.seconds / d)
        assert diluted.muons == pytest.approx(base.muons / d)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"mode": "xyz"}, "mode"),
        ({"mode": "alr", "z": 36}, "afb only"),
        ({"mode": "afb", "q2": 1.0}, "alr only"),
        ({"mode": "afb", "momentum": 29.0}, "alr only"),
        ({"mode": "alr", "q2": 1.0, "momentum": 29.0}, "not both"),
        ({"mode": "alr", "cos_theta": 0.5}, "needs a momentum"),
        ({"mode": "alr", "momentum": 5.0}, "momentum must lie in"),
        ({"mode": "alr", "momentum": 29.0, "cos_theta": 1.0}, "cos_theta must lie in"),
        ({"mode": "alr", "preset": "bsm"}, "preset must be one of"),
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
    args = ("plan", "--mode", "afb", "--flux", "1e7", "--asymmetry", "0.1")
    result = mupnc(*args, "--sigma", "1", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert within_factor(data["seconds"], 3e5)
    assert data["events"] == pytest.approx(100)
    assert data["flux"] == 1e7 and data["asymmetry"] == 0.1 and data["mode"] == "afb"
    five = json.loads(mupnc(*args, "--json").stdout)  # the default: 5 sigma
    assert five["sigma"] == 5 and five["events"] == pytest.approx(2500)
    text = mupnc("plan", "--mode", "afb")
    seconds = plan("afb").seconds  # A_FB[SM](Kr) = 5.8e-5 at 5 sigma: 2.0e9 s
    assert text.returncode == 0 and f"{seconds:.3g} s" in text.stdout, text.stdout


@pytest.mark.parametrize("mode", ["alr", "afb"])
def test_the_plan_names_the_demos_efficiency_beside_its_own(mode: str) -> None:
    """The demo's simulated detector (the shipped channel map) counts 2e-3 signal events
    per muon; the plan gives the time at that efficiency too, shorter by their ratio."""
    result = plan(mode)
    assert result.demo_efficiency == pytest.approx(2e-3)
    ratio = result.demo_efficiency / result.efficiency
    assert result.demo_seconds == pytest.approx(result.seconds / ratio)
    data = json.loads(mupnc("plan", "--mode", mode, "--json").stdout)
    assert data["demo_efficiency"] == pytest.approx(2e-3)
    text = mupnc("plan", "--mode", mode).stdout
    assert f"the demo's detector counts 0.002 per muon ({ratio:.3g} x this efficiency)" in text
