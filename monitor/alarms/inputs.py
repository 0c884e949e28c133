"""What the alarm rules look at: observations made from the monitor's state (pure numpy).

Each evaluation (once per monitor flush) turns the decoder's and the ingest's cumulative
counters, the accumulator's sums, the run result and the latest slow-control PV values
into named :class:`mupnc.monitor.alarms.rules.Observation` entries:

* counters (cumulative): ``windows`` (seen), ``helicity_errors.<kind>``, ``blocks_lost``,
  ``blocks_malformed``;
* ``data.age``: seconds since a window block last arrived;
* ``beam.on_for``: seconds the beam has been on (``BEAM:ON`` ON, ``BEAM:TRIP`` OK and
  ``BEAM:RATE`` at least half the setpoint) at an unchanged ``BEAM:RATE_SP``; 0 while it
  is off;
* ``rotator.deviation``: ``|HEL:ROTATOR:RBV - HEL:ROTATOR:SP|`` (0 while the readback
  is 0, i.e. ramping);
* recent estimates over the last ``[inputs]`` seconds (differences of cumulative sums
  between snapshots): ``charge_asymmetry.recent`` (mean and error of the pattern charge
  asymmetries: the running moments minus those of a snapshot, Chan's merge inverted),
  ``window_gate.drift`` (beam monitor per window over the rate setpoint, relative to its
  value over the first ``gate_reference`` s of beam; the gate fraction of the window
  period, so it moves with the reversal clock and with T_settle), and
  ``detector.yield_min``/``yield_max`` (counts per beam-monitor muon over the channel
  map's acceptance: 1 for a healthy channel);
* ``stats.chi2_ndf``, ``stats.chi2_ndf_z`` (its Wilson-Hilferty normal score, N(0, 1) for
  chi2-distributed minirun means whatever ndf), ``stats.miniruns`` (miniruns with data)
  and ``stats.pull_width`` (standard deviation of the minirun pulls, once
  ``pull_miniruns`` miniruns have data);
* the beam: ``beam.<variable>.diff`` (the run's helicity-correlated difference of x, y,
  xp, yp, dpp with its error, in mm, mrad or a fraction), ``beam.patterns_cut``
  (cumulative: patterns cut for a monitor beyond its range), ``beam.monitors_stuck``
  (monitors whose word did not change over the last ``yield_window`` seconds of windows),
  ``regression.shift`` (``(raw - regressed) / raw error`` of the combined asymmetry) and
  ``regression.not_regressed`` (miniruns of at least half a minirun's patterns that
  could not be regressed: degenerate beam differences);
* beam modulation: ``modulation.dead_coils`` (coils of the latest complete cycle that
  were driven but did not move the beam, :mod:`mupnc.monitor.analysis.modulation`) and
  ``modulation.cycle_unusable`` (1 when that cycle gave no sensitivities for another
  reason: the coils' responses ill-conditioned, a beam variable no coil moves);
* the polarimeter (:mod:`mupnc.monitor.analysis.polarimetry`; NaN without one):
  ``polarimeter.flip_sigma`` (``(|P+| - |P-|) / error`` of the latest minirun, the one
  filling: an incomplete flip shows within it), ``polarimeter.effective`` (the run's
  effective polarization) and ``polarimeter.drift_sigma`` (the latest complete minirun's
  effective polarization minus the first complete one's, in their errors);
* every watched PV under its name without prefix (value, EPICS severity, connection).

Estimates without enough data are NaN (rules then stay quiet).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from mupnc.monitor.alarms.rules import Observation
from mupnc.monitor.analysis.accumulator import RunAccumulator
from mupnc.monitor.analysis.modulation import latest_complete_cycle
from mupnc.monitor.analysis.results import COMBINED, RunResult
from mupnc.monitor.decoding.stream import DecoderState
from mupnc.monitor.feedback.loop import Action, FeedbackLoop
from mupnc.monitor.ingest_counters import IngestCounters

BEAM_PVS = ("BEAM:ON", "BEAM:TRIP", "BEAM:RATE", "BEAM:RATE_SP")
ROTATOR_PVS = ("HEL:ROTATOR:SP", "HEL:ROTATOR:RBV")
INPUT_PVS = BEAM_PVS + ROTATOR_PVS
"""PVs the observations need, whatever the rules watch."""
BEAM_ON_FRACTION = 0.5
"""The beam counts as on above this fraction of the rate setpoint."""


@dataclass(frozen=True)
class Sums:
    """Cumulative sums of the accumulator at one moment."""

    time: float
    charge: tuple[float, float, float]  # n, mean, m2 of pattern charge asymmetries
    beam_monitor: float  # over decoded windows
    windows: int  # decoded windows
    counts: np.ndarray  # (c,) detector counts over decoded windows
    monitor_changes: np.ndarray  # (k,) per beam position monitor

    @classmethod
    def of(cls, acc: RunAccumulator, now: float) -> Sums:
        stats = acc.run_stats("charge_asymmetry")
        return cls(
            time=now,
            charge=(float(stats.n[0]), float(stats.mean[0]), float(stats.m2[0])),
            beam_monitor=float(sum(m.beam_monitor.sum() for m in acc.miniruns)),
            windows=int(sum(m.windows.sum() for m in acc.miniruns)),
            counts=acc.sorted_counts().sum(axis=0).astype(np.float64),
            monitor_changes=sum(
                (m.monitor_changes for m in acc.miniruns),
                np.zeros(len(acc.beamline.columns), np.int64),
            ),
        )


def recent_mean(new: tuple, old: tuple) -> tuple[float, float]:
    """Mean and its error of the samples added between two (n, mean, m2) moments."""
    n1, mean1, m2_1 = new
    n0, mean0, m2_0 = old
    n = n1 - n0
    if n < 2:
        return math.nan, math.nan
    mean = (n1 * mean1 - n0 * mean0) / n
    m2 = m2_1 - m2_0 - (mean - mean0) ** 2 * n0 * n / n1
    return mean, math.sqrt(max(m2, 0.0) / (n - 1) / n)


def chi2_ndf_z(chi2_ndf: float, ndf: int) -> float:
    """Wilson-Hilferty: ``(chi2/ndf)^(1/3)`` is nearly normal, mean ``1 - 2/(9 ndf)``, variance
    ``2/(9 ndf)``; returns the normal score (NaN without data)."""
    if ndf < 1 or not math.isfinite(chi2_ndf):
        return math.nan
    v = 2.0 / (9.0 * ndf)
    return (chi2_ndf ** (1.0 / 3.0) - (1.0 - v)) / math.sqrt(v)


def _number(obs: Observation | None) -> float:
    if obs is None or not obs.connected or obs.value is None or isinstance(obs.value, str):
        return math.nan
    return float(obs.value)


class AlarmInputs:
    """Makes the observations of one run (keeps the snapshots recent estimates need)."""

    def __init__(self, inputs: dict[str, float], acceptance: np.ndarray, start: float) -> None:
        self.inputs = inputs
        self.acceptance = np.asarray(acceptance, dtype=np.float64)
        self._history: deque[Sums] = deque()
        self._blocks_seen = -1
        self._last_block_time = start
        self._beam_on_since: float | None = None
        self._setpoint = math.nan
        self._gate_reference = math.nan

    def observe(
        self,
        now: float,
        decoder: DecoderState,
        counters: IngestCounters,
        acc: RunAccumulator,
        result: RunResult,
        pvs: dict[str, Observation],
    ) -> dict[str, Observation]:
        obs: dict[str, Observation] = dict(pvs)
        obs["windows"] = Observation(decoder.windows_seen)
        for kind, count in decoder.errors.items():
            obs[f"helicity_errors.{kind}"] = Observation(count)
        obs["blocks_lost"] = Observation(counters.blocks_lost)
        obs["blocks_malformed"] = Observation(counters.malformed)
        blocks = counters.blocks_received + counters.blocks_refilled
        if blocks != self._blocks_seen:
            self._blocks_seen, self._last_block_time = blocks, now
        obs["data.age"] = Observation(now - self._last_block_time)
        on_for = self._beam_on_for(now, pvs)
        obs["beam.on_for"] = Observation(on_for)
        obs["rotator.deviation"] = Observation(self._rotator_deviation(pvs))

        sums = Sums.of(acc, now)
        self._history.append(sums)
        keep = max(self.inputs[k] for k in ("charge_window", "gate_window", "yield_window"))
        keep = max(keep, self.inputs["gate_reference"]) + 5.0
        while self._history and self._history[0].time < now - keep:
            self._history.popleft()
        obs["charge_asymmetry.recent"] = self._charge(sums)
        obs["window_gate.drift"] = Observation(self._gate_drift(sums, on_for, pvs))
        low, high = self._yields(sums)
        obs["detector.yield_min"], obs["detector.yield_max"] = Observation(low), Observation(high)

        obs.update(self._beam(sums, acc, result))

        pulls = np.array([p for p in result.pulls.get(COMBINED, ()) if math.isfinite(p)])
        obs["stats.chi2_ndf"] = Observation(result.chi2_ndf)
        obs["stats.chi2_ndf_z"] = Observation(chi2_ndf_z(result.chi2_ndf, pulls.size - 1))
        obs["stats.miniruns"] = Observation(pulls.size)
        enough = pulls.size >= self.inputs["pull_miniruns"]
        obs["stats.pull_width"] = Observation(float(pulls.std(ddof=1)) if enough else math.nan)
        return obs

    def _beam(self, sums: Sums, acc: RunAccumulator, result: RunResult) -> dict[str, Observation]:
        """The beam and regression observations (module docstring)."""
        obs = {
            f"beam.{name}.diff": Observation(d.value, d.error) for name, d in result.beam.items()
        }
        obs["beam.patterns_cut"] = Observation(result.patterns_beam_cut)
        old = self._before(sums.time, self.inputs["yield_window"])
        stuck = math.nan
        if old is not None and sums.windows > old.windows:
            stuck = float(np.count_nonzero(sums.monitor_changes == old.monitor_changes))
        obs["beam.monitors_stuck"] = Observation(stuck)
        shift = math.nan
        if result.regressed is not None and result.combined.error > 0:
            shift = (result.combined.value - result.regressed.value) / result.combined.error
        obs["regression.shift"] = Observation(shift)
        full = [r for r in result.miniruns if 2 * r.patterns_good >= acc.minirun_patterns]
        obs["regression.not_regressed"] = Observation(sum(1 for r in full if r.regression_skipped))
        latest = latest_complete_cycle(result.dither_cycles)
        obs["modulation.dead_coils"] = Observation(
            float(len(latest.dead_coils)) if latest is not None else 0.0
        )
        unusable = latest is not None and bool(latest.skipped) and not latest.dead_coils
        obs["modulation.cycle_unusable"] = Observation(float(unusable))
        obs.update(polarimeter_observations(result, acc.minirun_patterns))
        return obs

    def _beam_on_for(self, now: float, pvs: dict[str, Observation]) -> float:
        on = pvs.get("BEAM:ON")
        trip = pvs.get("BEAM:TRIP")
        rate, setpoint = _number(pvs.get("BEAM:RATE")), _number(pvs.get("BEAM:RATE_SP"))
        beam = (
            on is not None
            and on.connected
            and str(on.value).upper() == "ON"  # enum states match case-insensitively
            and trip is not None
            and trip.connected
            and str(trip.value).upper() == "OK"
            and not rate < BEAM_ON_FRACTION * setpoint  # NaN (unknown rate) passes
        )
        changed = setpoint != self._setpoint and not (
            math.isnan(setpoint) and math.isnan(self._setpoint)
        )
        if not beam or changed:  # a new rate setpoint restarts the clock
            self._setpoint = setpoint
            self._beam_on_since = None
            return 0.0
        if self._beam_on_since is None:
            self._beam_on_since = now
        return now - self._beam_on_since

    @staticmethod
    def _rotator_deviation(pvs: dict[str, Observation]) -> float:
        setpoint = _number(pvs.get("HEL:ROTATOR:SP"))
        readback = _number(pvs.get("HEL:ROTATOR:RBV"))
        if readback == 0:
            return 0.0  # ramping
        return abs(readback - setpoint)

    def _before(self, now: float, seconds: float) -> Sums | None:
        """The newest snapshot at least ``seconds`` old, if the history reaches back so far."""
        chosen = None
        for s in self._history:
            if s.time > now - seconds:
                break
            chosen = s
        return chosen

    def _charge(self, sums: Sums) -> Observation:
        old = self._before(sums.time, self.inputs["charge_window"])
        if old is None:
            return Observation(math.nan)
        mean, error = recent_mean(sums.charge, old.charge)
        return Observation(mean, error)

    def _gate(self, sums: Sums, seconds: float, setpoint: float) -> float:
        old = self._before(sums.time, seconds)
        if old is None or sums.windows <= old.windows or not setpoint > 0:
            return math.nan
        per_window = (sums.beam_monitor - old.beam_monitor) / (sums.windows - old.windows)
        return per_window / setpoint

    def _gate_drift(self, sums: Sums, on_for: float, pvs: dict[str, Observation]) -> float:
        setpoint = _number(pvs.get("BEAM:RATE_SP"))
        reference = self.inputs["gate_reference"]
        if math.isnan(self._gate_reference) and on_for >= reference:
            self._gate_reference = self._gate(sums, reference, setpoint)
        return self._gate(sums, self.inputs["gate_window"], setpoint) / self._gate_reference - 1

    def _yields(self, sums: Sums) -> tuple[float, float]:
        old = self._before(sums.time, self.inputs["yield_window"])
        use = self.acceptance > 0
        if old is None or not use.any() or sums.beam_monitor <= old.beam_monitor:
            return math.nan, math.nan
        muons = sums.beam_monitor - old.beam_monitor
        relative = (sums.counts - old.counts)[use] / muons / self.acceptance[use]
        return float(relative.min()), float(relative.max())


def feedback_observations(
    loops: Iterable[FeedbackLoop], last: Mapping[str, list[Action]]
) -> dict[str, Observation]:
    """Per feedback loop L: ``feedback.L.saturated`` (1 when its last decision held a
    setpoint at the clamp) and ``feedback.L.not_converged`` (1 when its input stayed
    beyond three of its errors for its ``converge_actions`` decisions in a row); 0 for a
    loop that is off."""
    out = {}
    for loop in loops:
        on = loop.settings.mode != "off"
        saturated = on and any(a.saturated for a in last.get(loop.name, []))
        out[f"feedback.{loop.name}.saturated"] = Observation(float(saturated))
        out[f"feedback.{loop.name}.not_converged"] = Observation(float(on and loop.not_converged))
    return out


def polarimeter_observations(result: RunResult, minirun_patterns: int) -> dict[str, Observation]:
    """``polarimeter.*`` of the module docstring (NaN without a polarimeter or data); a
    minirun is complete with at least half of ``minirun_patterns`` good patterns."""
    nan = Observation(math.nan)
    run = result.polarization
    if run is None:
        return {f"polarimeter.{k}": nan for k in ("flip_sigma", "effective", "drift_sigma")}
    latest = result.miniruns[-1].polarization if result.miniruns else None
    complete = [
        r.polarization
        for r in result.miniruns
        if r.polarization is not None and 2 * r.patterns_good >= minirun_patterns
    ]
    drift = math.nan
    if len(complete) >= 2:
        first, last = complete[0].effective, complete[-1].effective
        spread = math.hypot(first.error, last.error)
        drift = (last.value - first.value) / spread if spread > 0 else math.nan
    return {
        "polarimeter.flip_sigma": Observation(math.nan if latest is None else latest.flip_sigma),
        "polarimeter.effective": Observation(run.effective.value, run.effective.error),
        "polarimeter.drift_sigma": Observation(drift),
    }
