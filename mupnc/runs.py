"""Run set-up at the front door: the simulation settings a command was given, the run
configuration stored with the run, and the new run's database row."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from mupnc.daq.beamline import BEAM_VARIABLES
from mupnc.daq.channel_map import load_channel_map
from mupnc.db.session import ensure_schema, make_engine, require_schema, transaction
from mupnc.db.store import allocate_run
from mupnc.monitor.feedback.loop import LoopSettings
from mupnc.planner import planner_efficiency
from mupnc.run_file import load_feedback, load_run_file
from mupnc.sim.actuators import ACTUATORS
from mupnc.sim.detector import relative_asymmetries
from mupnc.sim.source import SourceConfig

FLAGS = {
    "mode": "mode",
    "asymmetry": "asymmetry",
    "rate": "muon_rate",
    "polarization": "polarization",
    "scheme": "scheme",
    "preset": "preset",
    "momentum": "momentum",
    "pattern": "pattern",
    "window_rate": "window_rate",
    "seed": "seed",
}
"""Simulation flags (argparse destinations) -> :class:`SourceConfig` fields."""


def source_config(args: argparse.Namespace) -> SourceConfig:
    """The simulation settings of a command: its ``--config`` file, overridden by the flags
    given (``mupnc.run_file``); defaults for the rest."""
    fields = load_run_file(args.config) if args.config else {}
    fields.update(
        {
            field: getattr(args, flag)
            for flag, field in FLAGS.items()
            if getattr(args, flag) is not None
        }
    )
    if args.channel_map:
        fields["channel_map"] = load_channel_map(args.channel_map, fields.get("mode", "alr"))
    return SourceConfig(**fields)


def run_feedback(args: argparse.Namespace, config: SourceConfig) -> dict[str, LoopSettings]:
    """The feedback loops of a command's ``--config`` file (``[feedback.L]``), checked
    against the run's channel map; none without a file."""
    return load_feedback(args.config, config.resolved_channel_map()) if args.config else {}


def simulation_arguments(args: argparse.Namespace) -> list[str]:
    """The simulation options ``args`` was given, as command-line arguments again (for the
    IOC a demo starts)."""
    out = ["--config", str(Path(args.config).resolve())] if args.config else []
    for flag in FLAGS:
        value = getattr(args, flag)
        if value is not None:
            out += ["--" + flag.replace("_", "-"), value if isinstance(value, str) else repr(value)]
    if args.channel_map:
        out += ["--channel-map", str(Path(args.channel_map).resolve())]
    return out


def run_config(
    config: SourceConfig,
    blinded: bool = False,
    blind_box: float | None = None,
    feedback: dict[str, LoopSettings] | None = None,
) -> dict:
    """The run configuration stored with the run (JSON-serializable); ``blind_box`` is the
    box a blinded run was given (0: the monitor's default), which a replay serves again;
    ``feedback`` the loops the monitor runs (:mod:`mupnc.monitor.feedback.loop`).
    ``expected_asymmetry`` is what the monitor should report (fraction, diluted, averaged
    over the scatter channels' shape); ``expected_shape`` each channel's ``A[c] / A0``."""
    channel_map = config.resolved_channel_map()
    detectors = channel_map.detectors()
    return {
        "mode": config.mode,
        "asymmetry": config.injected_asymmetry,
        "preset": config.preset,
        "target_z": config.z,
        "signal_fraction": config.signal_fraction,
        "polarization": config.polarization,
        "muon_rate": config.muon_rate,
        "momentum": config.momentum,
        "window_rate": config.window_rate,
        "pattern": config.pattern,
        "delay_patterns": config.delay_patterns,
        "seed": config.seed,
        "blinded": blinded,
        "blind_box": blind_box,
        "scheme": config.scheme,
        "flip_period": config.flip_period,
        "ramp_time": config.ramp_time,
        "settle_time": config.settle_time,
        "charge_asymmetry": config.charge_asymmetry,
        "efficiency_mismatch": config.efficiency_mismatch,
        "kick_turns": list(config.kick.turns),
        "kick_precession": config.degrees_per_turn,
        "rotator_pattern": config.rotator_pattern,
        "channel_map": json.loads(channel_map.to_json()),
        "mass_number": config.mass_number,
        "decay_electron_fraction": config.decay_electron_fraction,
        "expected_asymmetry": config.expected_asymmetry,
        "beamline": beamline_config(config),
        "actuators": {name: asdict(config.actuators.actuator(name)) for name in ACTUATORS},
        "modulation": asdict(config.modulation) | {"stuck": list(config.modulation.stuck)},
        "feedback": {loop: asdict(settings) for loop, settings in (feedback or {}).items()},
        "expected_shape": dict(
            zip(
                detectors.names,
                relative_asymmetries(
                    detectors, config.preset, kinematics=config.kinematics
                ).tolist(),
                strict=True,
            )
        ),
    }


def beamline_config(config: SourceConfig) -> dict:
    """The beam line as simulated: each variable's jitter, drift and helicity-correlated
    difference (units of :data:`mupnc.daq.beamline.UNITS`) and the sensitivities given."""
    variables = {
        name: asdict(config.beamline.variable(name, config.scheme)) for name in BEAM_VARIABLES
    }
    return {"variables": variables, "sensitivity": config.beamline.sensitivity}


def new_run(
    url: str,
    config: SourceConfig,
    source: str = "live",
    create: bool = True,
    blinded: bool = False,
    blind_box: float | None = None,
    feedback: dict[str, LoopSettings] | None = None,
) -> int:
    """Allocate a run (source "live": taken through the IOCs; "sim": made offline by
    ``mupnc sim``); with ``create`` a database without any schema gets one (an existing
    schema must be current either way)."""
    engine = make_engine(url)
    (ensure_schema if create else require_schema)(engine)
    with transaction(engine) as session:
        settings = run_config(config, blinded, blind_box, feedback) | planned(config.mode)
        return allocate_run(session, source=source, mode=config.mode, config=settings)


def planned(mode: str) -> dict:
    """What the run stores beside its settings for the dashboard (which may not import the
    planner): ``planner_efficiency``, the signal events per muon :mod:`mupnc.planner`
    assumes for ``mode``.  Not a setting: an IOC's autosave does not compare it."""
    return {"planner_efficiency": planner_efficiency(mode)}


def outside_run(
    url: str, config_file: str | None, mode: str | None, channel_map: str | None
) -> int:
    """Register a run for an outside DAQ IOC (``mupnc run new``): its configuration from
    ``config_file`` (a run file; ``mode`` and ``channel_map``, a TOML file, override it),
    no expected asymmetry (real data).  The monitor records what the DAQ serves over these
    settings when it takes the run (:func:`mupnc.monitor.service.served_settings`)."""
    fields = load_run_file(config_file) if config_file else {}
    if mode is not None:
        fields["mode"] = mode
    if channel_map is not None:
        fields["channel_map"] = load_channel_map(channel_map, fields.get("mode", "alr"))
    config = SourceConfig(**fields)
    feedback = load_feedback(config_file, config.resolved_channel_map()) if config_file else {}
    engine = make_engine(url)
    require_schema(engine)
    settings = run_config(config, feedback=feedback) | planned(config.mode)
    settings |= {"daq": "outside", "expected_asymmetry": None, "expected_shape": {}}
    with transaction(engine) as session:
        return allocate_run(session, source="live", mode=config.mode, config=settings)
