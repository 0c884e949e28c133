"""The simulated experiment: helicity source, beam and detectors, one block of windows at a time.

Everything is vectorized over the windows of a block and the channels of the map; the
only Python loops are the LFSR (seven bits per step) and one iteration per beam trip.
Physics per window ``w`` and channel ``c``::

    counts[w, c] ~ Poisson(muons[w] * efficiency[c] * (1 + P_L[w] * channel_asymmetry[c])
                           * (1 + sum_v sensitivity[v, c] * beam[w, v]))

with ``muons`` from :mod:`mupnc.sim.beam` (integrated over the gate T_stable of
:mod:`mupnc.sim.reversal`), ``P_L`` the signed longitudinal polarization of the reversal scheme
(:mod:`mupnc.sim.reversal`; ``h * P`` for fast reversal) and ``efficiency``/``channel_asymmetry``
from :mod:`mupnc.sim.detector`; the beam variables at the target ``beam`` and the words of
the beam position monitors (the map's ``bpm`` channels) from :mod:`mupnc.sim.beamline`.
Beam modulation (:mod:`mupnc.sim.modulation`, off by default) adds the coils' push to
``beam`` in its cycles (before the monitors read the beam and the detectors respond),
flags those windows :data:`~mupnc.daq.blocks.FLAG_MODULATION` and writes the coil
currents to the map's ``coil`` channels (0 without modulation).  The polarimeter
(:mod:`mupnc.sim.polarimeter`, off by default) sets the ``-`` state's polarization (``P_L``)
and counts decay positrons in its ``pol_forward``/``pol_backward`` channels.
Faults (:mod:`mupnc.sim.faults`) are switched with :meth:`WindowSource.set_fault` and
recorded per window in :attr:`SimulatedBlock.fault`.

Truth conventions: ``actual_helicity`` is the helicity *gate* (+1/-1) the source was set
to, what the IOC's helicity-gated scalers use; ``polarization`` is the spin the muons
really had (it differs from ``actual_helicity * P`` during a slow ramp, for kick turn
numbers other than multiples of 15, and under ``rotator_mismatch``/``settle_violation``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mupnc.daq.blocks import (
    FLAG_MODULATION,
    FLAG_PAIR_SYNC,
    FLAG_PATTERN_SYNC,
    FLAG_SETTLE,
    WindowBlock,
)
from mupnc.daq.channel_map import MODES, ChannelMap, default_channel_map
from mupnc.daq.helicity import LFSR_MASK, PATTERN_SHAPES, HelicityGenerator, pattern_shape
from mupnc.daq.scheme import (
    DEFAULT_ROTATOR_PATTERN,
    ROTATOR_PATTERNS,
    SCHEMES,
    RotatorSequence,
    RotatorSettings,
    interval_windows,
)
from mupnc.sim.actuators import ActuatorsConfig, HelicityActuators
from mupnc.sim.beam import MOMENTUM_RANGE, RATE_RANGE, BeamTrips, muons_per_window
from mupnc.sim.beamline import BeamlineConfig, SimulatedBeamline
from mupnc.sim.detector import (
    PRESETS,
    Kinematics,
    channel_asymmetries,
    channel_efficiencies,
    preset_asymmetry,
    preset_problem,
    target_z,
)
from mupnc.sim.detector import expected_asymmetry as expected_of_channels
from mupnc.sim.faults import FaultSwitchboard, fault_bit, unit_uniform
from mupnc.sim.modulation import BeamModulation, ModulationConfig
from mupnc.sim.nucleus import default_mass_number
from mupnc.sim.polarimeter import PolarimeterConfig, SimulatedPolarimeter
from mupnc.sim.reversal import (
    MAX_INTERVAL_WINDOWS,
    WINDOW_RATE_RANGE,
    KickSettings,
    ReversalClock,
    half_turn_turns,
    kick_rotator,
    precession_per_turn,
    slow_rotator,
    stable_time,
)


class SourceConfigError(ValueError):
    """A simulation setting out of range; the message names the setting."""


@dataclass(frozen=True)
class SourceConfig:
    """Settings of a simulated run.

    Units: rates in Hz (muons/s, windows/s, trips/s), times in s, momentum in MeV/c,
    asymmetries and polarization as fractions.  ``asymmetry`` is the physics asymmetry
    (A_LR at 90 deg or A_FB) used when ``preset`` is ``flat``; ``sm``/``np`` take value,
    A_LR shape and cross-section weights from the physical models of
    :mod:`mupnc.sim.detector` at ``momentum`` off the target (``z``, ``mass_number``).
    The channel map's beam position monitors read the beam of ``beamline``.  Invalid
    settings raise :class:`SourceConfigError`.
    """

    mode: str = "alr"
    asymmetry: float = 1e-3
    polarization: float = 0.9
    muon_rate: float = 1e8
    momentum: float = 29.0
    window_rate: float = 240.0
    pattern: str = "quartet"
    delay_patterns: int = 2
    helicity_seed: int = 0x2AAAAAAA
    seed: int = 1
    intensity_jitter: float = 0.01
    bcm_resolution: float = 1e-4
    charge_asymmetry: float = 0.0
    channel_map: ChannelMap | None = field(default=None)
    # window timing and reversal scheme (mupnc.sim.reversal)
    t_settle: float = 20e-6
    scheme: str = "fast"
    flip_period: float = 10.0
    ramp_time: float = 1.0
    settle_time: float = 0.5
    kick_turns: tuple[int, int] | None = None
    """Turns before the kick in the + and - states; None: 0 and the turns nearest 180 deg."""
    rotator_pattern: str = DEFAULT_ROTATOR_PATTERN
    kick_precession: float | None = None
    """Kick: spin precession per turn (deg); None: from ``momentum`` (the ring's)."""
    # detector physics (mupnc.sim.detector)
    preset: str = "flat"
    z: int | None = None
    """Nuclear charge of the target; None: the mode's (:data:`mupnc.sim.detector.TARGET_Z`:
    graphite, 6, for alr; krypton, 36, for afb), filled in at construction."""
    mass_number: float | None = None
    """Nucleons per nucleus of the target (a natural isotope mix may be fractional); None:
    that of the element (:func:`mupnc.sim.nucleus.default_mass_number`), filled in."""
    signal_fraction: float = 1.0
    decay_electron_fraction: float = 0.0
    """afb: share of the counts that are muon-decay electrons (asymmetry +1/3, its own
    analysing power); ``1 - signal_fraction - decay_electron_fraction`` is the unpolarized
    nP->1S continuum."""
    efficiency_mismatch: float = 0.0
    # beam (mupnc.sim.beam)
    drift_amplitude: float = 0.0
    drift_period: float = 600.0
    gain_drift: float = 0.0
    """Linear drift of every detector channel's gain, fraction per hour from the run start
    (the beam monitor does not see it)."""
    trip_rate: float = 0.0
    trip_duration: float = 5.0
    trip_residual: float = 1e-4
    beamline: BeamlineConfig = field(default_factory=BeamlineConfig)
    """Beam variables at the target and detector sensitivities (:mod:`mupnc.sim.beamline`)."""
    actuators: ActuatorsConfig = field(default_factory=ActuatorsConfig)
    """The source's helicity-correlated actuators (:mod:`mupnc.sim.actuators`)."""
    modulation: ModulationConfig = field(default_factory=ModulationConfig)
    """Beam modulation by coils (:mod:`mupnc.sim.modulation`; off by default)."""
    polarimeter: PolarimeterConfig = field(default_factory=PolarimeterConfig)
    """The muon polarimeter and the ``-`` state's polarization (:mod:`mupnc.sim.polarimeter`;
    off by default: no counters, the spin ``+-polarization``)."""

    def __post_init__(self) -> None:
        if self.z is None:
            object.__setattr__(self, "z", target_z(self.mode))
        if self.mass_number is None and isinstance(self.z, int) and 1 <= self.z <= 120:
            object.__setattr__(self, "mass_number", default_mass_number(self.z))
        problem = _config_problem(self)
        if problem:
            raise SourceConfigError(problem)

    def resolved_channel_map(self) -> ChannelMap:
        """The channel map (the mode's shipped one by default) with the polarimeter's
        counters when it is enabled."""
        return self.polarimeter.channel_map(self.channel_map or default_channel_map(self.mode))

    @property
    def injected_asymmetry(self) -> float:
        """The physics asymmetry injected (A_LR at 90 deg, or A_FB), before dilution."""
        if self.preset == "flat":
            return self.asymmetry
        return preset_asymmetry(self.mode, self.preset, self.kinematics)

    @property
    def kinematics(self) -> Kinematics:
        """The momentum and target the physical presets are evaluated at."""
        return Kinematics(self.momentum, self.z, self.mass_number)

    @property
    def expected_asymmetry(self) -> float:
        """What the monitor should report (fraction, diluted, count-weighted over the scatter
        channels; decay electrons included): :func:`mupnc.sim.detector.expected_asymmetry`."""
        return expected_of_channels(
            self.resolved_channel_map().detectors(),
            self.injected_asymmetry,
            self.preset,
            self.signal_fraction,
            decay_electron_fraction=self.decay_electron_fraction,
            kinematics=self.kinematics,
        )

    @property
    def degrees_per_turn(self) -> float:
        """Kick: spin precession per ring turn (deg), ``kick_precession`` or that of a ring
        at ``momentum``."""
        if self.kick_precession is not None:
            return self.kick_precession
        return precession_per_turn(self.momentum)

    @property
    def kick(self) -> KickSettings:
        """Kick: the turns of the two states and the precession per turn."""
        step = self.degrees_per_turn
        turns = self.kick_turns if self.kick_turns is not None else (0, half_turn_turns(step))
        return KickSettings(tuple(turns), step)  # type: ignore[arg-type]

    @property
    def rotator(self) -> RotatorSettings:
        """What the monitor must know of this run's slow or kick reversal."""
        return RotatorSettings(self.rotator_pattern, self.degrees_per_turn)

    @property
    def t_stable(self) -> float:
        """The integration gate of a window, s."""
        return stable_time(self.window_rate, self.t_settle)


def _outside(value: float, low: float, high: float) -> bool:
    return not (math.isfinite(value) and low <= value <= high)


def _config_problem(c: SourceConfig) -> str | None:
    """Why a configuration cannot run, or ``None``."""
    checks: list[tuple[bool, str]] = [
        (c.mode not in MODES, f"mode must be one of {MODES}, got {c.mode!r}"),
        (c.scheme not in SCHEMES, f"scheme must be one of {SCHEMES}, got {c.scheme!r}"),
        (c.preset not in PRESETS, f"preset must be one of {PRESETS}, got {c.preset!r}"),
        (c.pattern not in PATTERN_SHAPES, f"unknown helicity pattern {c.pattern!r}"),
        (
            _outside(c.muon_rate, *RATE_RANGE),
            f"muon_rate must lie in [{RATE_RANGE[0]:g}, {RATE_RANGE[1]:g}] /s, got {c.muon_rate!r}",
        ),
        (
            _outside(c.window_rate, *WINDOW_RATE_RANGE),
            f"window_rate must lie in [{WINDOW_RATE_RANGE[0]:g}, {WINDOW_RATE_RANGE[1]:g}] Hz,"
            f" got {c.window_rate!r}",
        ),
        (
            _outside(c.t_settle, 0.0, 0.9 / c.window_rate if c.window_rate > 0 else 0.0),
            f"t_settle must lie in [0, 0.9/window_rate] s (T_stable > 0), got {c.t_settle!r}",
        ),
        (
            _outside(c.momentum, *MOMENTUM_RANGE),
            f"momentum must lie in [{MOMENTUM_RANGE[0]:g}, {MOMENTUM_RANGE[1]:g}] MeV/c,"
            f" got {c.momentum!r}",
        ),
        (
            _outside(c.polarization, 1e-6, 1.0),
            f"polarization must lie in (0, 1], got {c.polarization!r}",
        ),
        (
            _outside(abs(c.asymmetry), 0.0, 0.999),
            f"asymmetry must lie in (-1, 1), got {c.asymmetry!r}",
        ),
        (
            not isinstance(c.delay_patterns, int) or c.delay_patterns < 0,
            f"delay_patterns must be an integer >= 0, got {c.delay_patterns!r}",
        ),
        (c.helicity_seed & LFSR_MASK == 0, "helicity_seed must be non-zero in its low 30 bits"),
        (
            _outside(c.intensity_jitter, 0.0, 0.1),
            f"intensity_jitter must lie in [0, 0.1], got {c.intensity_jitter!r}",
        ),
        (
            _outside(c.bcm_resolution, 0.0, 0.1),
            f"bcm_resolution must lie in [0, 0.1], got {c.bcm_resolution!r}",
        ),
        (
            _outside(abs(c.charge_asymmetry), 0.0, 0.1),
            f"charge_asymmetry must lie in [-0.1, 0.1], got {c.charge_asymmetry!r}",
        ),
        (
            not isinstance(c.z, int) or not 1 <= c.z <= 120,
            f"z must be an integer nuclear charge in [1, 120], got {c.z!r}",
        ),
        (
            _outside(c.mass_number or 0.0, c.z or 0, 3 * (c.z or 0)),
            f"mass_number must lie in [z, 3 z] = [{c.z}, {3 * (c.z or 0)}] nucleons,"
            f" got {c.mass_number!r}",
        ),
        (
            _outside(c.signal_fraction, 1e-6, 1.0),
            f"signal_fraction must lie in (0, 1], got {c.signal_fraction!r}",
        ),
        (
            c.mode == "alr" and c.decay_electron_fraction != 0,
            "decay_electron_fraction applies to mode afb only (muonic-atom decay electrons)",
        ),
        (
            _outside(c.decay_electron_fraction, 0.0, 1.0 - c.signal_fraction + 1e-12),
            "decay_electron_fraction must lie in [0, 1 - signal_fraction] (shares of the"
            f" counts), got {c.decay_electron_fraction!r}",
        ),
        (
            _outside(abs(c.efficiency_mismatch), 0.0, 0.5),
            f"efficiency_mismatch must lie in [-0.5, 0.5], got {c.efficiency_mismatch!r}",
        ),
        (
            _outside(c.drift_amplitude, 0.0, 0.5),
            f"drift_amplitude must lie in [0, 0.5], got {c.drift_amplitude!r}",
        ),
        (
            _outside(c.drift_period, 1e-3, math.inf),
            f"drift_period must be > 0 s, got {c.drift_period!r}",
        ),
        (
            _outside(abs(c.gain_drift), 0.0, 0.5),
            f"gain_drift must lie in [-0.5, 0.5] per hour, got {c.gain_drift!r}",
        ),
        (
            _outside(c.trip_rate, 0.0, c.window_rate),
            f"trip_rate must be >= 0 /s, got {c.trip_rate!r}",
        ),
        (
            _outside(c.trip_duration, 1e-6, math.inf),
            f"trip_duration must be > 0 s, got {c.trip_duration!r}",
        ),
        (
            _outside(c.trip_residual, 0.0, 0.5),
            f"trip_residual must lie in [0, 0.5], got {c.trip_residual!r}",
        ),
    ]
    for bad, message in checks:
        if bad:
            return message
    weighting = preset_problem(c.resolved_channel_map(), c.preset)
    if weighting:
        return weighting
    beamline = c.beamline.problem(c.resolved_channel_map())
    if beamline:
        return f"beamline {beamline}"
    actuators = c.actuators.problem()
    if actuators:
        return f"actuators {actuators}"
    modulation = _modulation_problem(c)
    if modulation:
        return f"modulation {modulation}"
    polarimeter = c.polarimeter.problem()
    if polarimeter:
        return f"polarimeter {polarimeter}"
    injected = c.injected_asymmetry
    if abs(c.polarization * injected) * 2 >= 1:
        return f"asymmetry {injected!r} too large for polarization {c.polarization!r}"
    return _reversal_problem(c) if c.scheme != "fast" else None


def _modulation_problem(c: SourceConfig) -> str | None:
    """Why the beam modulation cannot run, or ``None`` (starts with the key)."""
    m = c.modulation
    if not isinstance(m, ModulationConfig):
        return f"must be a ModulationConfig, got {m!r}"
    problem = m.problem(c.resolved_channel_map())
    if problem or not m.enabled:
        return problem
    if m.shape == "sine" and not m.frequency < c.window_rate / 2:
        return (
            f"frequency {m.frequency:g} Hz must be below half the window rate"
            f" ({c.window_rate / 2:g} Hz)"
        )
    if m.coil_time * c.window_rate < 2:
        return f"coil_time {m.coil_time:g} s must hold at least 2 windows"
    return None


def _reversal_problem(c: SourceConfig) -> str | None:
    """Why the slow/kick timing cannot run, or ``None``."""
    windows = c.flip_period * c.window_rate if math.isfinite(c.flip_period) else math.inf
    gate = c.settle_time + (c.ramp_time if c.scheme == "slow" else 0.0)
    if not windows >= 2:
        return f"flip_period {c.flip_period!r} s must hold at least 2 windows"
    if windows > MAX_INTERVAL_WINDOWS:
        return (
            f"flip_period x window_rate = {windows:g} windows per reversal exceeds"
            f" {MAX_INTERVAL_WINDOWS} (the 16-bit pattern-phase counter)"
        )
    if _outside(c.ramp_time, 0.0, math.inf) or _outside(c.settle_time, 0.0, math.inf):
        return "ramp_time and settle_time must be >= 0 s"
    if gate >= c.flip_period:
        return (
            f"ramp + settle gate ({gate:g} s) must be shorter than flip_period {c.flip_period:g} s"
        )
    if c.rotator_pattern not in ROTATOR_PATTERNS:
        return (
            f"rotator_pattern must be one of {tuple(ROTATOR_PATTERNS)}, got {c.rotator_pattern!r}"
        )
    if c.scheme == "kick":
        if c.kick_precession is not None and _outside(c.kick_precession, 1e-6, 180.0):
            return f"kick_precession must lie in (0, 180] deg/turn, got {c.kick_precession!r}"
        return c.kick.problem()
    return None


@dataclass(frozen=True, slots=True)
class SimulatedBlock:
    """A DAQ block together with the simulator's truth for each of its (published) windows."""

    block: WindowBlock
    actual_helicity: np.ndarray
    """Helicity gate (+1/-1) of each window, what a helicity-gated scaler is gated by."""
    fault: np.ndarray
    """uint16 mask: bit i set when ``FAULT_KINDS[i]`` affected the window."""
    rotator_setpoint: np.ndarray
    """fast: the window helicity; slow: +1/-1; kick: the kick turn number."""
    rotator_readback: np.ndarray
    """fast: the helicity; slow: +1/-1, 0 while ramping; kick: the turn number."""
    polarization: np.ndarray
    """Signed longitudinal polarization of the muons in the window (the spin truth)."""
    beam_on: np.ndarray
    """False inside a beam trip."""
    muons: np.ndarray
    """True muons integrated in the window."""
    beam: np.ndarray
    """Beam variables at the target, ``(n, 5)`` (:data:`mupnc.daq.beamline.BEAM_VARIABLES`),
    the coils' push included."""
    detector_counts: np.ndarray
    """The detector channels' columns of ``block.counts`` (without beam monitors and coils)."""
    coil_current: np.ndarray
    """Modulation coil currents, ``(n, coils)`` mA in the order of
    :attr:`mupnc.sim.modulation.ModulationConfig.coils` (zeros when modulation is off)."""


class WindowSource:
    """Produces consecutive :class:`SimulatedBlock`s of ``windows_per_block`` windows."""

    def __init__(self, config: SourceConfig, stream_id: int = 1, incarnation: int = 0) -> None:
        """``incarnation`` > 0: a restarted IOC continuing a run (:meth:`skip_to`) draws
        from random streams of its own, not again those the run started with."""
        self.config = config
        self.stream_id = stream_id
        self.channel_map = config.resolved_channel_map()
        self.shape = pattern_shape(config.pattern)
        self._generator = HelicityGenerator(config.helicity_seed)
        entropy = config.seed if incarnation == 0 else [config.seed, incarnation]
        physics, trips, beamline, actuators = np.random.SeedSequence(entropy).spawn(4)
        self._rng = np.random.Generator(np.random.PCG64(physics))
        self._trips = BeamTrips(np.random.Generator(np.random.PCG64(trips)))
        self.detectors = self.channel_map.detectors()
        self._detector_columns = self.channel_map.detector_columns
        self._bpm_columns = self.channel_map.indices("bpm")
        self.modulation = BeamModulation(config.modulation, self.channel_map, config.window_rate)
        """The beam-modulation schedule and coils (no random draws)."""
        self._coil_columns = self.modulation.coil_columns
        self.beamline = SimulatedBeamline(
            config.beamline,
            self.channel_map,
            config.scheme,
            config.window_rate,
            np.random.Generator(np.random.PCG64(beamline)),
        )
        self.actuators = HelicityActuators(
            config.actuators, config.window_rate, np.random.Generator(np.random.PCG64(actuators))
        )
        """Setpoints of the helicity-correlated actuators (:meth:`HelicityActuators.set`)."""
        self._polarities = np.empty(0, dtype=np.int8)  # bits of patterns from _polarity_base on
        self._polarity_base = 0
        self._clock = ReversalClock(interval_windows(config.flip_period, config.window_rate))
        self._sequence = RotatorSequence(config.rotator_pattern)
        self._faults = FaultSwitchboard()
        self._last_helicity = 0  # gate of the window before the block (fast settle)
        self.next_seq = 0
        self.next_block = 0
        self.muon_rate = config.muon_rate
        """Muon rate now (muons/s): the configured one until :meth:`set_muon_rate`."""
        self.beam_switch = True
        self.channel_asymmetry = channel_asymmetries(
            self.detectors,
            config.injected_asymmetry,
            config.preset,
            config.signal_fraction,
            decay_electron_fraction=config.decay_electron_fraction,
            kinematics=config.kinematics,
        )
        """Diluted physics asymmetry per detector channel (counts ~ 1 + P_L * channel_asymmetry)."""
        efficiency = channel_efficiencies(
            self.detectors,
            config.efficiency_mismatch,
            shape=config.preset,
            kinematics=config.kinematics,
        )
        self.polarimeter = SimulatedPolarimeter(
            config.polarimeter, config.polarization, self.detectors
        )
        """The spin truth of each window and the polarimeter's counters."""
        self.channel_asymmetry = self.polarimeter.asymmetries(self.channel_asymmetry)
        efficiency = self.polarimeter.efficiencies(efficiency)
        self._response = np.vstack([efficiency, efficiency * self.channel_asymmetry])

    @property
    def n_channels(self) -> int:
        return len(self.channel_map.channels)

    def set_muon_rate(self, rate: float) -> None:
        """Change the muon rate (muons/s, in :data:`mupnc.sim.beam.RATE_RANGE`) from the next
        block."""
        if not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
            raise SourceConfigError(f"muon rate must lie in {RATE_RANGE} /s, got {rate!r}")
        self.muon_rate = float(rate)

    def set_beam_on(self, on: bool) -> None:
        """The beam switch: off acts like a trip (rate x ``trip_residual``) from the next block."""
        self.beam_switch = bool(on)

    def set_fault(self, kind: str, on: bool, **params: float) -> None:
        """Switch a fault (one of :data:`mupnc.sim.faults.FAULT_KINDS`) on or off from the next
        block."""
        fraction = params.get("fraction", 0.01)
        if kind == "frequency_drift" and on:
            period = 1.0 / (self.config.window_rate * (1.0 + fraction))
            if period <= self.config.t_settle:
                raise ValueError(f"fault frequency_drift: fraction {fraction!r} leaves no T_stable")
        self._faults.set(kind, on, **params)

    @property
    def active_faults(self) -> dict[str, dict[str, float]]:
        """Faults switched on: ``{kind: params}``."""
        return self._faults.active

    def skip_to(self, seq: int) -> None:
        """Continue at window ``seq`` (>= :attr:`next_seq`): the windows in between are never
        produced, as while a DAQ is down; the helicity generator runs on through them."""
        if seq < self.next_seq:
            raise ValueError(f"cannot skip back from window {self.next_seq} to {seq}")
        self.next_seq = seq
        self._last_helicity = 0

    def _pattern_polarities(self, first: int, last: int) -> np.ndarray:
        """Generator polarities of patterns ``first .. last`` (``first`` never decreases)."""
        generated = self._polarity_base + self._polarities.size
        while generated < first:  # skipped patterns (:meth:`skip_to`): run the LFSR through
            step = min(first - generated, 1 << 20)
            self._generator.polarities(step)
            generated += step
            self._polarities, self._polarity_base = self._polarities[:0], generated
        missing = last + 1 - self._polarity_base - self._polarities.size
        kept = self._polarities[first - self._polarity_base :]
        if missing > 0:  # generate ahead, so the LFSR runs once per many blocks
            kept = np.concatenate([kept, self._generator.polarities(max(missing, 1024))])
        self._polarities, self._polarity_base = kept, first
        return kept

    def _chosen(self, kind: str, keys: np.ndarray) -> np.ndarray:
        """Which pattern/window keys a probabilistic fault (switched on) hits."""
        params = self._faults.params(kind)
        assert params is not None, f"fault {kind} is off"
        return unit_uniform(keys, self.config.seed, kind) < params["probability"]

    def next_block_of(self, n_windows: int) -> SimulatedBlock:
        """The next ``n_windows`` windows (fewer are published under ``missed_windows``)."""
        if n_windows < 1:
            raise ValueError(f"a block needs at least one window, got {n_windows}")
        cfg = self.config
        faults = self._faults
        seq = np.arange(self.next_seq, self.next_seq + n_windows, dtype=np.int64)
        fault = np.zeros(n_windows, dtype=np.uint16)
        drift = faults.params("frequency_drift")
        speedup = 1.0 + drift["fraction"] if drift else 1.0
        gate_time = cfg.t_stable
        mismatch = faults.params("rotator_mismatch") is not None
        violation = faults.params("settle_violation") is not None
        in_gate = np.zeros(n_windows, dtype=bool)

        if cfg.scheme == "fast":
            size = self.shape.size
            pattern = seq // size
            phase = seq % size
            first = int(pattern[0])
            polarity = self._pattern_polarities(first, int(pattern[-1]) + cfg.delay_patterns)
            # reported(p) = bit[p], actual(p) = bit[p + delay]  (mupnc.daq.helicity)
            local = pattern - first
            actual = polarity[local + cfg.delay_patterns] * self.shape[phase]
            reported = polarity[local] * self.shape[phase]
            setpoint = actual.astype(np.float64)
            readback = -setpoint if mismatch else setpoint
            spin = readback * cfg.polarization
            pattern_length = np.full(n_windows, size)
            pair_sync = phase % 2 == 0
            gate_time = 1.0 / (cfg.window_rate * speedup) - cfg.t_settle
            if violation:  # the gate also integrates the switching time
                previous = np.concatenate([[self._last_helicity or actual[0]], actual[:-1]])
                switched = previous != actual
                spin = np.where(switched, spin * gate_time / (gate_time + cfg.t_settle), spin)
                gate_time += cfg.t_settle
                fault[switched] |= fault_bit("settle_violation")
        else:
            length = interval_windows(cfg.flip_period / speedup, cfg.window_rate)
            current, current_length = self._clock.index, self._clock.length
            pattern, phase = self._clock.locate(seq, length)
            pattern_length = np.where(pattern == current, current_length, length)
            if cfg.scheme == "slow":
                rotator = slow_rotator(
                    pattern, phase, cfg.window_rate, cfg.polarization,
                    cfg.ramp_time, cfg.settle_time, mismatch, self._sequence,
                )  # fmt: skip
            else:
                rotator = kick_rotator(
                    pattern, phase, cfg.window_rate, cfg.polarization,
                    cfg.kick, cfg.settle_time, mismatch, self._sequence,
                )  # fmt: skip
            actual = rotator.state
            reported = actual.copy()
            setpoint, readback, spin = rotator.setpoint, rotator.readback, rotator.polarization
            pair_sync = (phase == 0) & (pattern % self._sequence.size == 0)
            in_gate = rotator.in_gate
            if violation:
                fault[in_gate] |= fault_bit("settle_violation")
                in_gate = np.zeros(n_windows, dtype=bool)
        spin = self.polarimeter.spin(spin, seq / cfg.window_rate)
        self._last_helicity = int(actual[-1])
        if mismatch:
            fault |= fault_bit("rotator_mismatch")

        if faults.params("helicity_flip"):
            flipped = self._chosen("helicity_flip", pattern)
            reported = np.where(flipped, -reported, reported).astype(np.int8)
            fault[flipped] |= fault_bit("helicity_flip")
        stuck = faults.params("stuck_helicity")
        if stuck:
            reported = np.full(n_windows, int(stuck["value"]), dtype=np.int8)
            fault |= fault_bit("stuck_helicity")
        published_phase = phase
        if faults.params("phase_error"):
            shifted = self._chosen("phase_error", pattern)
            published_phase = np.where(shifted, (phase + 1) % pattern_length, phase)
            fault[shifted] |= fault_bit("phase_error")
        charge = faults.params("charge_asymmetry")
        if charge:
            fault |= fault_bit("charge_asymmetry")
        if drift:
            fault |= fault_bit("frequency_drift")

        beam_on = (
            self._trips.beam_on(
                seq,
                cfg.trip_rate / cfg.window_rate,
                max(1, round(cfg.trip_duration * cfg.window_rate)),
            )
            & self.beam_switch
        )
        rng = self._rng
        muons = muons_per_window(
            rng,
            seq,
            actual,
            beam_on,
            mean=self.muon_rate * gate_time,
            window_rate=cfg.window_rate,
            jitter=cfg.intensity_jitter,
            drift_amplitude=cfg.drift_amplitude,
            drift_period=cfg.drift_period,
            charge_asymmetry=(charge["value"] if charge else cfg.charge_asymmetry)
            + self.actuators.effect("charge", seq),
            trip_residual=cfg.trip_residual,
        )
        beam_monitor = muons * (1.0 + cfg.bcm_resolution * rng.standard_normal(n_windows))
        detected = muons
        if cfg.gain_drift:  # the detectors' gain drifts; the beam monitor does not see it
            detected = muons * (1.0 + cfg.gain_drift * seq / (cfg.window_rate * 3600.0))
        # muons * efficiency * (1 + spin * asymmetry) as one (n x 2) @ (2 x c) product
        expected = np.column_stack([detected, detected * spin]) @ self._response
        steering = {name: self.actuators.effect(name, seq) for name in ("x", "y")}
        modulated, coil_current = self.modulation.schedule(seq)
        beam = self.modulation.moved(self.beamline.beam(seq, actual, steering), coil_current)
        if self.beamline.sensitivity.any():
            expected *= self.beamline.yield_factor(beam)
        detector_counts = self.polarimeter.counted(rng.poisson(expected), gate_time, rng)
        if self._bpm_columns or self._coil_columns:
            counts = np.empty((n_windows, self.n_channels), dtype=np.int64)
            counts[:, self._detector_columns] = detector_counts
            if self._bpm_columns:
                counts[:, self._bpm_columns] = self.beamline.monitor_words(beam)
            counts[:, self._coil_columns] = self.modulation.words(coil_current)
        else:
            counts = detector_counts

        flags = (
            (phase == 0) * np.uint8(FLAG_PATTERN_SYNC)
            | pair_sync * np.uint8(FLAG_PAIR_SYNC)
            | in_gate * np.uint8(FLAG_SETTLE)
            | modulated * np.uint8(FLAG_MODULATION)
        )

        keep: slice | np.ndarray = slice(None)  # every window published, no copies
        if faults.params("missed_windows"):
            keep = ~self._chosen("missed_windows", seq)
            keep[-1] = True  # a block always publishes its last window
            fault = fault[keep]
            # the last window of a block is always kept, so gaps start inside this block
            fault[np.diff(seq[keep], prepend=self.next_seq - 1) > 1] |= fault_bit("missed_windows")
        kept_seq = seq[keep]

        block = WindowBlock(
            stream_id=self.stream_id,
            block_number=self.next_block,
            seq=kept_seq,
            pattern_number=pattern[keep],
            pattern_phase=published_phase[keep].astype(np.int16),
            reported_helicity=reported[keep],
            flags=flags[keep],
            rotator_readback=readback[keep].astype(np.int16),
            beam_monitor=beam_monitor[keep],
            counts=counts[keep],
        )
        self.next_seq += n_windows
        self.next_block += 1
        return SimulatedBlock(
            block=block,
            actual_helicity=actual[keep],
            fault=fault,
            rotator_setpoint=setpoint[keep],
            rotator_readback=readback[keep],
            polarization=spin[keep],
            beam_on=beam_on[keep],
            muons=muons[keep],
            beam=beam[keep],
            detector_counts=detector_counts[keep],
            coil_current=coil_current[keep],
        )
