"""The simulator's physical models against the talk's numbers and their own formulas.

A_LR(theta, p) off graphite (SM gamma-Z term and a light mediator), Mott rates per cos theta
bin, A_FB from the 2S-2P mixing delta, the decay-electron background, and simulated runs
whose measured asymmetry (the monitor's estimators on summed counts) agrees with
``expected_asymmetry``.

Tolerances: the talk quotes one-digit numbers ("~0.5e-4", "1e-6...1e-3", "~1e8 s"); the
issue asks for A_FB[SM](Kr) within 20 % and the A_LR figure's range, which we read as "the
curves lie in the figure's window": within a factor 3 of its edges.  Formula checks are to
1e-9 (floating point); simulated runs to 3 sigma (fixed seeds).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mupnc.daq.channel_map import Channel, ChannelMap, default_channel_map
from mupnc.run_file import load_run_file
from mupnc.sim.alr_model import (
    alr_asymmetry,
    alr_from_q2,
    helicity_factor,
    mott_cross_section,
    q_squared,
)
from mupnc.sim.detector import (
    NP_PRESET_BENCHMARK,
    Kinematics,
    alr_shape,
    channel_asymmetries,
    channel_efficiencies,
    expected_asymmetry,
    preset_asymmetry,
    relative_asymmetries,
    scatter_weights,
)
from mupnc.sim.electroweak import (
    FERMI_CONSTANT,
    FINE_STRUCTURE,
    HBAR_C,
    MUON_MASS,
    NP_BENCHMARKS,
    SIN2_THETA_W,
    Mediator,
    weak_charge,
)
from mupnc.sim.muonic_atom import (
    DECAY_ELECTRON_ASYMMETRY,
    afb_model,
    mixing_delta_np,
    mixing_delta_sm,
)
from mupnc.sim.nucleus import charge_radius, default_mass_number, form_factor
from mupnc.sim.source import SourceConfig, SourceConfigError, WindowSource

CARBON = (6, default_mass_number(6))
KRYPTON = (36, default_mass_number(36))
FIGURE_COS = np.linspace(-1.0, 0.99, 200)
"""The talk's A_LR figure spans cos theta -1...1; A_LR -> 0 as Q^2 -> 0, so the curves are
checked up to cos theta = 0.99 (the last point of a 0.01 grid)."""


def within_factor(value: float, target: float, factor: float) -> bool:
    return target / factor <= value <= target * factor


# --- A_LR --------------------------------------------------------------------------------


def test_weak_charge_and_sm_asymmetry_follow_the_textbook_formula() -> None:
    """Q_W = Z (1 - 4 sin^2 theta_W) - N; A = -G_F Q^2 Q_W / (4 sqrt2 pi alpha Z), positive."""
    z, a = CARBON
    assert weak_charge(z, a) == pytest.approx(z * (1 - 4 * SIN2_THETA_W) - (a - z), rel=1e-12)
    assert weak_charge(*KRYPTON) == pytest.approx(-46.16, abs=0.01)
    q2 = 0.1  # GeV^2
    expected = -FERMI_CONSTANT * q2 * weak_charge(z, a) / (4 * math.sqrt(2) * math.pi)
    expected /= FINE_STRUCTURE * z
    assert alr_from_q2(q2 * 1e6, z, a) == pytest.approx(expected, rel=1e-9)
    # the talk: A_LR ~ G_F Q^2 / (4 pi alpha) ~ 1e-4 at 1 GeV^2; the issue: ~2e-7 at 29 MeV/c
    assert within_factor(float(alr_from_q2(1e6, z, a)), 1e-4, 1.5)
    backward = float(alr_asymmetry(-1.0, 29.0, z, a))
    assert within_factor(backward, 2e-7, 1.5) and backward > 0
    # A_SM goes as Q^2 = 2 p^2 (1 - cos theta): the sm shape is 1 - cos theta, any momentum
    cos = np.linspace(-1, 0.9, 7)
    for p in (29.0, 100.0):
        ratio = alr_asymmetry(cos, p, z, a) / alr_asymmetry(0.0, p, z, a)
        np.testing.assert_allclose(ratio, 1 - cos, rtol=1e-12)
        np.testing.assert_allclose(alr_shape(cos, "sm", Kinematics(momentum=p)), 1 - cos, rtol=0)
    assert q_squared(-1.0, 100.0) == pytest.approx(4e4)


def test_mediator_propagator_limits() -> None:
    """A_NP = 2 g_mu Q_NP Q^2 / (Z (m_V^2 + Q^2)): saturates for m_V^2 << Q^2, grows as Q^2
    (a contact interaction, like the SM) for m_V^2 >> Q^2."""
    z, a = CARBON
    v = Mediator("test", mass=1.0, g_muon=1e-2, g_proton=1e-2)
    saturated = 2 * v.g_muon * v.charge(z, a) / z
    sm = alr_from_q2(1e4, z, a)
    assert float(alr_from_q2(1e4, z, a, v) - sm) == pytest.approx(saturated, rel=1e-3)
    heavy = Mediator("heavy", mass=1e4, g_muon=1e-2, g_proton=1e-2)  # 10 GeV >> 100 MeV
    low, high = (float(alr_from_q2(q2, z, a, heavy) - alr_from_q2(q2, z, a)) for q2 in (1e2, 1e4))
    assert high / low == pytest.approx(100, rel=1e-3)


@pytest.mark.parametrize("momentum", [29.0, 100.0])
def test_np_benchmark_spans_the_talks_alr_figure(momentum: float) -> None:
    """The np preset's mediator (100 MeV) over cos theta -1...0.99 at 29 and 100 MeV/c stays
    inside the talk's window 1e-6...1e-3: the 100 MeV/c curve reaches its top, the
    29 MeV/c curve its bottom; the SM is 300-1400x smaller (the talk: ~3 orders)."""
    mediator = NP_BENCHMARKS[NP_PRESET_BENCHMARK["alr"]]
    curve = alr_asymmetry(FIGURE_COS, momentum, *CARBON, mediator)
    assert curve.min() >= 1e-6 / 3 and curve.max() <= 1e-3 * 3, (curve.min(), curve.max())
    if momentum == 100.0:
        assert curve.max() >= 1e-3 / 3 and curve.max() == pytest.approx(1.0e-3, rel=0.05)
    else:
        assert curve.min() <= 1e-6 * 3 and curve.min() == pytest.approx(2.1e-6, rel=0.05)
    sm = alr_asymmetry(FIGURE_COS, momentum, *CARBON)
    assert np.all(curve > 250 * sm)


def test_both_curves_together_span_three_decades() -> None:
    mediator = NP_BENCHMARKS[NP_PRESET_BENCHMARK["alr"]]
    both = np.concatenate([alr_asymmetry(FIGURE_COS, p, *CARBON, mediator) for p in (29.0, 100.0)])
    assert both.max() / both.min() > 300  # 1e-3 / 3e-6 at the window's edges


def test_muon_mass_factor() -> None:
    """K = beta cos^2(theta/2) / (1 - beta^2 sin^2(theta/2)): 1 as beta -> 1, 0 backward."""
    assert helicity_factor(0.3, 1e7) == pytest.approx(1.0, abs=1e-9)
    assert helicity_factor(-1.0, 29.0) == 0.0
    beta = 29.0 / math.hypot(29.0, MUON_MASS)
    assert helicity_factor(0.0, 29.0) == pytest.approx(beta * 0.5 / (1 - beta**2 * 0.5))
    massless = alr_asymmetry(0.0, 29.0, *CARBON)
    assert alr_asymmetry(0.0, 29.0, *CARBON, massive=True) == pytest.approx(
        massless * helicity_factor(0.0, 29.0)
    )


# --- cross section and rates -------------------------------------------------------------


def test_mott_cross_section_and_form_factor() -> None:
    """Rutherford (Z alpha hbar c / (2 p beta))^2 / sin^4(theta/2) x Mott x F^2 (cm^2/sr)."""
    z, a = CARBON
    p, cos = 29.0, 0.0
    beta = p / math.hypot(p, MUON_MASS)
    rutherford = (z * FINE_STRUCTURE * HBAR_C / (2 * p * beta)) ** 2 / 0.5**2 * 1e-26
    q = 2 * p * math.sqrt(0.5)
    expected = rutherford * (1 - beta**2 * 0.5) * float(form_factor(q, charge_radius(a))) ** 2
    assert mott_cross_section(cos, p, z, a) == pytest.approx(expected, rel=1e-12)
    # F(0) = 1, F ~ 1 - q^2 <r^2> / 6 at small q, decreasing; radii near the measured ones
    radius = charge_radius(a)
    assert form_factor(0.0, radius) == 1.0
    small = 5.0  # MeV/c
    assert 1 - form_factor(small, radius) == pytest.approx(
        (small * radius / HBAR_C) ** 2 / 6, rel=1e-2
    )
    assert np.all(np.diff(form_factor(np.linspace(0, 1000, 50), radius)) < 0)
    assert radius == pytest.approx(2.470, rel=0.02)  # 12C (Angeli & Marinova 2013)
    assert charge_radius(KRYPTON[1]) == pytest.approx(4.188, rel=0.02)  # 84Kr


@pytest.mark.parametrize(("momentum", "low"), [(29.0, 225), (100.0, 1000)])
def test_mott_weights_of_the_default_map(momentum: float, low: float) -> None:
    """Backward and forward-most bins of daq/channel_maps/alr.toml (cos theta -0.875 and
    +0.875) differ by the Rutherford ((1 + 0.875)/(1 - 0.875))^2 = 225 at least; the Mott
    factor and the form factor (q up to 2p) only widen it: 279 at 29 MeV/c, 1700 at 100."""
    cmap = default_channel_map("alr").detectors()
    weights = scatter_weights(cmap, "sm", kinematics=Kinematics(momentum=momentum))
    assert weights.mean() == pytest.approx(1.0)  # overall scale stays the map's
    cos = np.array([c.cos_theta for c in cmap.channels])
    forward, backward = weights[np.argmax(cos)], weights[np.argmin(cos)]
    assert forward / backward >= low
    assert np.all(np.diff(weights[np.argsort(cos)]) > 0)
    np.testing.assert_array_equal(scatter_weights(cmap, "flat"), np.ones(len(cos)))


def test_flat_preset_is_the_channel_map_alone() -> None:
    """``flat``: the same numbers as before the physical models, bit for bit."""
    cmap = default_channel_map("afb").detectors()
    sign = np.array([-1.0 if c.role == "forward" else 1.0 for c in cmap.channels])
    np.testing.assert_array_equal(
        channel_asymmetries(cmap, 0.01, "flat", 0.3), sign * 0.01 * np.ones(2) * 0.3
    )
    mismatch = [1.0 + 0.5 * 0.1, 1.0 - 0.5 * 0.1]
    np.testing.assert_array_equal(
        channel_efficiencies(cmap, 0.1),
        [c.acceptance * m for c, m in zip(cmap.channels, mismatch, strict=True)],
    )
    alr = default_channel_map("alr")
    assert expected_asymmetry(alr, 0.02, "flat", 0.5) == 0.02 * 0.5


def test_channel_without_cos_theta_and_a_bin_at_zero_degrees() -> None:
    cmap = ChannelMap(
        "alr", (Channel("a", "scatter", 1e-3, -0.5), Channel("b", "scatter", 1e-3, None))
    )
    np.testing.assert_allclose(relative_asymmetries(cmap, "sm"), [1.5, 1.0])
    zero = ChannelMap("alr", (Channel("fwd", "scatter", 1e-3, 1.0),))
    SourceConfig(channel_map=zero)  # flat: no cross section needed
    with pytest.raises(SourceConfigError, match="preset 'sm' needs scatter channels"):
        SourceConfig(channel_map=zero, preset="sm")


# --- A_FB ---------------------------------------------------------------------------------


def test_afb_sm_of_krypton_from_delta_sm() -> None:
    """A_FB[SM](Kr) = 680 delta_SM ~ 0.5e-4 (the talk) within 20 %: 5.8e-5, not a constant."""
    value = afb_model(*KRYPTON)
    assert value == pytest.approx(0.5e-4, rel=0.20)
    assert value == 680 * mixing_delta_sm(*KRYPTON)
    assert preset_asymmetry("afb", "sm") == value
    # delta_SM is <2S|H_PV|2P>/Delta E with hydrogen-like states and the finite-size splitting
    z, a = KRYPTON
    za, m = z * FINE_STRUCTURE, MUON_MASS * 1e-3  # GeV
    radius = charge_radius(a) / (HBAR_C * 1e-3)  # GeV^-1
    element = math.sqrt(3) * FERMI_CONSTANT * -weak_charge(z, a) * za**4 * m**3
    element /= 64 * math.sqrt(2) * math.pi
    splitting = za**4 * m**3 * radius**2 / 12
    assert mixing_delta_sm(z, a) == pytest.approx(element / splitting, rel=1e-9)
    # other targets: (36/Z)^3 times delta of that nucleus
    assert afb_model(30, default_mass_number(30)) == pytest.approx(
        680 * (36 / 30) ** 3 * mixing_delta_sm(30, default_mass_number(30))
    )


def test_delta_np_contact_limit_is_delta_sm() -> None:
    """The talk's delta_NP for m_V a >> 1 with 4 pi alpha g_mu Q_NP / m_V^2 = -G_F Q_W/(2 sqrt2)
    equals delta_SM (to 3 / (m_V a))."""
    z, a = KRYPTON
    mass = 1e5  # MeV, m_V a ~ 3600
    contact = -FERMI_CONSTANT * 1e-6 * weak_charge(z, a) / (2 * math.sqrt(2))  # MeV^-2
    g_p = contact * mass**2 / (4 * math.pi * FINE_STRUCTURE * z)
    heavy = Mediator("contact", mass=mass, g_muon=1.0, g_proton=g_p)
    assert mixing_delta_np(z, a, heavy) == pytest.approx(mixing_delta_sm(z, a), rel=2e-3)


def test_afb_np_presets() -> None:
    """The np preset stays at the talk's reference point (0.1 for Kr); both benchmarks lie
    inside the talk's NP range 0.5 %...11 %."""
    assert preset_asymmetry("afb", "np") == pytest.approx(0.1, rel=0.05)
    for mediator in NP_BENCHMARKS.values():
        assert 0.005 <= afb_model(*KRYPTON, mediator) <= 0.11


# --- the simulator ------------------------------------------------------------------------


def sorted_counts(config: SourceConfig, windows: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts per detector channel summed over windows of actual helicity +1 and -1."""
    sim = WindowSource(config).next_block_of(windows)
    counts, h = sim.detector_counts, sim.actual_helicity
    return counts[h > 0].sum(axis=0), counts[h < 0].sum(axis=0)


def test_simulated_alr_run_measures_the_expected_asymmetry() -> None:
    """np preset at 100 MeV/c: the combined A_LR of the summed scatter counts (the monitor's
    yield asymmetry) is the count-weighted mean, 2.9e-4, not the plain channel mean 7.5e-4."""
    config = SourceConfig(
        preset="np", momentum=100.0, muon_rate=1e11, polarization=0.8, intensity_jitter=0.0
    )
    plus, minus = sorted_counts(config, 2000)
    scatter = config.resolved_channel_map().detectors().indices("scatter")
    n_plus, n_minus = plus[scatter].sum(), minus[scatter].sum()
    measured = (n_plus - n_minus) / (n_plus + n_minus) / config.polarization
    error = 1 / math.sqrt(n_plus + n_minus) / config.polarization
    expected = config.expected_asymmetry
    assert abs(measured - expected) < 3 * error, (measured, expected, error)
    assert expected > 5 * error  # really seen
    plain = float(np.mean(WindowSource(config).channel_asymmetry))
    assert abs(plain - expected) > 5 * error  # the weighting matters
    # counts follow cross section x acceptance: forward bin >> backward bin
    total = plus + minus
    assert total[-1] / total[0] > 1000


def test_simulated_afb_run_with_decay_electrons() -> None:
    """Cross ratio of summed counts = A_FB D + f_e / 3 (np preset, D = 0.3, f_e = 0.3)."""
    config = SourceConfig(
        mode="afb",
        preset="np",
        signal_fraction=0.3,
        decay_electron_fraction=0.3,
        muon_rate=1e10,
        polarization=0.8,
        intensity_jitter=0.0,
        efficiency_mismatch=0.1,
    )
    expected = config.expected_asymmetry
    assert expected == pytest.approx(
        0.3 * afb_model(*KRYPTON, NP_BENCHMARKS["v10"]) + 0.3 * DECAY_ELECTRON_ASYMMETRY
    )
    plus, minus = sorted_counts(config, 2000)
    roles = {c.role: i for i, c in enumerate(config.resolved_channel_map().channels)}
    f, b = roles["forward"], roles["backward"]
    r = math.sqrt(plus[b] * minus[f] / (minus[b] * plus[f]))
    measured = (r - 1) / (r + 1) / config.polarization
    error = (1 - (measured * config.polarization) ** 2) / 4
    error *= math.sqrt(sum(1 / x for x in (plus[f], plus[b], minus[f], minus[b])))
    error /= config.polarization
    assert abs(measured - expected) < 3 * error, (measured, expected, error)


def test_sm_preset_channel_asymmetries_are_the_model() -> None:
    config = SourceConfig(preset="sm", momentum=50.0)
    cos = np.array([c.cos_theta for c in config.resolved_channel_map().detectors().channels])
    np.testing.assert_allclose(
        WindowSource(config).channel_asymmetry, alr_asymmetry(cos, 50.0, *CARBON), rtol=1e-12
    )
    assert config.z == 6 and SourceConfig(mode="afb").z == 36  # graphite, krypton


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"momentum": 5.0}, "momentum must lie in"),
        ({"momentum": 600.0}, "momentum must lie in"),
        ({"z": 36, "mass_number": 20.0}, "mass_number must lie in"),
        ({"decay_electron_fraction": 0.1}, "applies to mode afb only"),
        ({"mode": "afb", "decay_electron_fraction": 0.1}, "decay_electron_fraction must lie in"),
        ({"mode": "afb", "signal_fraction": 0.5, "decay_electron_fraction": -0.1}, "must lie in"),
    ],
)
def test_bad_physics_settings_are_refused_in_one_line(change: dict, words: str) -> None:
    with pytest.raises(SourceConfigError, match=words) as err:
        SourceConfig(**change)
    assert "\n" not in str(err.value)


def test_run_file_keys_of_the_physical_models(tmp_path: Path) -> None:
    """RUN.toml: [beam] momentum in the physical range, [detector] mass_number and
    decay_electron_fraction reach the simulation settings."""
    path = tmp_path / "run.toml"
    path.write_text(
        'mode = "afb"\n[beam]\nmomentum = 42.0\n[detector]\npreset = "sm"\nz = 30\n'
        "mass_number = 64.0\nsignal_fraction = 0.4\ndecay_electron_fraction = 0.25\n"
    )
    config = SourceConfig(**load_run_file(path))
    assert (config.momentum, config.z, config.mass_number) == (42.0, 30, 64.0)
    assert config.expected_asymmetry == pytest.approx(
        0.4 * afb_model(30, 64.0) + 0.25 * DECAY_ELECTRON_ASYMMETRY
    )
