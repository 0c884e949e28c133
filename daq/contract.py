"""The PVs a DAQ serves to the monitor, their types and enum strings (``docs/daq-contract.md``).

The monitor reads a run's settings from these PVs (names after the IOC prefix, ``MUPNC:`` by
default).  Enum states are matched **case-insensitively**: ``QUARTET`` and ``quartet`` are
the same pattern.  A value outside a PV's choices is refused with a one-line
:class:`ContractError` naming the PV, what it held and what it may hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mupnc.daq.helicity import PATTERN_SHAPES
from mupnc.daq.scheme import ROTATOR_PATTERNS, SCHEMES

CONTRACT_VERSION = "2.0"
"""Version of ``docs/daq-contract.md`` this code implements (the block layout has its own
version, :data:`mupnc.daq.blocks.LAYOUT_VERSION`)."""

RUN_STATES = ("IDLE", "RUNNING", "ENDED")
"""``RUN:STATE``: no run yet, a run is being taken, the run is over (its last block is out)."""
NO_YES = ("NO", "YES")
"""``RUN:BLIND``."""
STOP = ("-", "STOP")
"""``RUN:STOP``: the monitor's alarm action ``stop_run`` writes STOP."""


def _upper(names) -> tuple[str, ...]:
    return tuple(name.upper() for name in names)


class ContractError(ValueError):
    """A DAQ serves a value the contract does not allow; the message is one line."""


@dataclass(frozen=True)
class ContractPV:
    """One PV of the contract: name (after the prefix), CA type, units and meaning; the enum
    states (exact strings, matched case-insensitively) where it is an enum."""

    name: str
    type: str
    units: str
    meaning: str
    states: tuple[str, ...] = ()


REQUIRED = (
    ContractPV("DAQ:BLOCK", "long[]", "", "latest window block (docs/daq-contract.md)"),
    ContractPV("DAQ:RING:NNN", "long[]", "", "ring slot NNN (000 ...): block k in k mod depth"),
    ContractPV("DAQ:RING_DEPTH", "long", "blocks", "number of ring slots (>= 16)"),
    ContractPV("DAQ:BLOCK_NUMBER", "long", "", "number of the latest block published"),
    ContractPV("DAQ:CHANNEL_MAP", "char[]", "", "the channel map as JSON"),
    ContractPV("RUN:NUMBER", "long", "", "run number, registered with `mupnc run new`"),
    ContractPV("RUN:STATE", "enum", "", "run state", RUN_STATES),
    ContractPV("HEL:PATTERN", "enum", "", "helicity pattern shape", tuple(PATTERN_SHAPES)),
    ContractPV("HEL:DELAY", "long", "patterns", "reporting delay of the helicity board"),
    ContractPV("BEAM:POLARIZATION", "double", "", "beam polarization magnitude (0, 1]"),
)
"""PVs without which the monitor does not start (one-line error naming the first missing)."""

OPTIONAL = (
    ContractPV("DAQ:CONSUMED", "long, writable", "", "last block the monitor took (flow control)"),
    ContractPV("DAQ:SEQ", "long", "", "sequence number of the latest window"),
    ContractPV("DAQ:STREAM_ID", "long", "", "identity of the window stream"),
    ContractPV("HEL:SCHEME", "enum", "", "spin-reversal scheme (default FAST)", _upper(SCHEMES)),
    ContractPV("HEL:WINDOW_RATE", "double", "Hz", "helicity window rate"),
    ContractPV(
        "HEL:ROTATOR_PATTERN", "enum", "", "slow/kick: rotator pattern", _upper(ROTATOR_PATTERNS)
    ),
    ContractPV("HEL:KICK_PRECESSION", "double", "deg", "kick: spin precession per turn"),
    ContractPV("RUN:FIRST_SEQ", "long", "", "sequence number of the run's first window"),
    ContractPV("RUN:BLIND", "enum", "", "run blinded", NO_YES),
    ContractPV("RUN:BLIND_BOX", "double", "", "blinding box half-width (fraction, 0 = default)"),
    ContractPV("RUN:STOP", "enum, writable", "", "the monitor writes STOP to end the run", STOP),
)
"""PVs with a default or whose absence the monitor reports (``docs/daq-contract.md``)."""


def contract_pv(name: str) -> ContractPV:
    """The contract's entry for PV ``name`` (after the prefix)."""
    for pv in REQUIRED + OPTIONAL:
        if pv.name == name:
            return pv
    raise KeyError(name)


def enum_state(name: str, value: object, states: Sequence[str] | None = None) -> str:
    """The state of enum PV ``name`` that ``value`` (its string as served) names, matched
    case-insensitively and returned as the contract spells it; :class:`ContractError` if it
    names none."""
    choices = tuple(states if states is not None else contract_pv(name).states)
    text = str(value).strip()
    for state in choices:
        if text.casefold() == state.casefold():
            return state
    raise ContractError(
        f"{name} is {text!r}, not one of {', '.join(choices)} (case does not matter; "
        "docs/daq-contract.md)"
    )


def blinded(values: Mapping[str, object]) -> bool | None:
    """``RUN:BLIND`` as served (its string, or 0/1): True, False, or None if not served."""
    if "RUN:BLIND" not in values:
        return None
    value = values["RUN:BLIND"]
    if isinstance(value, int | float) or str(value).strip() in ("0", "1"):
        return int(float(str(value))) != 0
    return enum_state("RUN:BLIND", value) == "YES"
