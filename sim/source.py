"""The simulated experiment: helicity source, beam and detectors, one block of windows at a time.

Everything is vectorized over the windows of a block and the channels of the map; the
only Python loop is the LFSR, one step per pattern.  Physics model per window ``w`` and
channel ``c`` (helicity convention in :mod:`sim.helicity`)::

    muons[w]      = rate * T_window * (1 + jitter * N(0,1)) * (1 + h[w] * charge_asymmetry)
    beam_monitor  = muons * (1 + bcm_resolution * N(0,1))
    counts[w, c]  ~ Poisson(muons[w] * acceptance[c] * (1 + h[w] * P * analyzing_sign[c] * A))

with ``analyzing_sign = +1`` for ``scatter`` and ``backward`` channels, ``-1`` for
``forward`` ones (A_FB counts gammas at theta > pi/2 from the spin positively) and ``0``
for ``monitor`` channels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sim.blocks import FLAG_PAIR_SYNC, FLAG_PATTERN_SYNC, WindowBlock
from sim.channel_map import ChannelMap, default_channel_map
from sim.faults import FaultSwitchboard
from sim.helicity import HelicityGenerator, pattern_shape

_ANALYZING_SIGN = {"scatter": 1.0, "backward": 1.0, "forward": -1.0, "monitor": 0.0}


@dataclass(frozen=True)
class SourceConfig:
    """Settings of a simulated run.  Rates in Hz (muons/s, windows/s), asymmetries as fractions."""

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

    def resolved_channel_map(self) -> ChannelMap:
        return self.channel_map or default_channel_map(self.mode)


@dataclass(frozen=True, slots=True)
class SimulatedBlock:
    """A DAQ block together with the simulator's truth for it."""

    block: WindowBlock
    actual_helicity: np.ndarray
    """True helicity (+1/-1) of each window, what a helicity-gated scaler is gated by."""


class WindowSource:
    """Produces consecutive :class:`SimulatedBlock`s of ``windows_per_block`` windows."""

    def __init__(self, config: SourceConfig, stream_id: int = 1) -> None:
        self.config = config
        self.stream_id = stream_id
        self.channel_map = config.resolved_channel_map()
        self.shape = pattern_shape(config.pattern)
        self._generator = HelicityGenerator(config.helicity_seed)
        self._rng = np.random.Generator(np.random.PCG64(config.seed))
        self._polarities = np.empty(0, dtype=np.int8)  # bits for patterns [0, len)
        self.next_seq = 0
        self.next_block = 0
        acceptance = np.array([c.acceptance for c in self.channel_map.channels])
        sign = np.array([_ANALYZING_SIGN[c.role] for c in self.channel_map.channels])
        self._acceptance = acceptance
        self._asymmetry_per_channel = config.polarization * config.asymmetry * sign
        self._faults = FaultSwitchboard()

    def set_fault(self, kind: str, on: bool, **params: float) -> None:
        """Switch a fault (one of :data:`sim.faults.FAULT_KINDS`) on or off from the next block."""
        self._faults.set(kind, on, **params)

    @property
    def active_faults(self) -> dict[str, dict[str, float]]:
        """Faults switched on: ``{kind: params}``."""
        return self._faults.active

    @property
    def n_channels(self) -> int:
        return len(self.channel_map.channels)

    def _pattern_polarities(self, last_pattern: int) -> np.ndarray:
        """Generator polarities for patterns ``0 .. last_pattern`` (grows on demand)."""
        missing = last_pattern + 1 - self._polarities.size
        if missing > 0:
            self._polarities = np.concatenate(
                [self._polarities, self._generator.polarities(missing)]
            )
        return self._polarities

    def next_block_of(self, n_windows: int) -> SimulatedBlock:
        """The next ``n_windows`` consecutive windows."""
        cfg = self.config
        size = self.shape.size
        seq = np.arange(self.next_seq, self.next_seq + n_windows, dtype=np.int64)
        pattern = seq // size
        phase = (seq % size).astype(np.int16)
        delay = cfg.delay_patterns
        # Bits are indexed by the pattern that reports them: reported(p) = bit[p],
        # actual(p) = bit[p + delay].  The first `delay` reports describe patterns
        # before the run started, whose polarities the generator also produced.
        polarity = self._pattern_polarities(int(pattern[-1]) + delay)
        actual = (polarity[pattern + delay] * self.shape[phase]).astype(np.int8)
        reported = (polarity[pattern] * self.shape[phase]).astype(np.int8)

        rng = self._rng
        muons = cfg.muon_rate / cfg.window_rate
        intensity = muons * (1 + cfg.intensity_jitter * rng.standard_normal(n_windows))
        intensity *= 1 + actual * cfg.charge_asymmetry
        beam_monitor = intensity * (1 + cfg.bcm_resolution * rng.standard_normal(n_windows))
        mean = intensity[:, None] * self._acceptance[None, :]
        mean = mean * (1 + actual[:, None] * self._asymmetry_per_channel[None, :])
        counts = rng.poisson(mean)

        flags = np.where(phase == 0, FLAG_PATTERN_SYNC, 0) | np.where(
            phase % 2 == 0, FLAG_PAIR_SYNC, 0
        )
        block = WindowBlock(
            stream_id=self.stream_id,
            block_number=self.next_block,
            seq=seq,
            pattern_number=pattern,
            pattern_phase=phase,
            reported_helicity=reported,
            flags=flags.astype(np.uint8),
            beam_monitor=beam_monitor,
            counts=counts,
        )
        self.next_seq += n_windows
        self.next_block += 1
        return SimulatedBlock(block=block, actual_helicity=actual)
