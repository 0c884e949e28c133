"""``mupnc pvs`` and ``mupnc ioc --list-pvs``: every PV the IOC and the monitor serve.

The names come from the PV groups the servers themselves are built from
(:func:`mupnc.ioc.server.build_ioc`, :func:`mupnc.monitor.publisher.result_pv_groups`,
:func:`mupnc.monitor.alarms.pvs.alarm_pv_group` with the alarm rules' names), never from a
copy.  A family of PVs that differ only in one zero-padded number — the IOC's ring of
read-back blocks, ``DAQ:RING:000`` … ``DAQ:RING:399`` — is folded into one line in bash's
brace notation, ``DAQ:RING:{000..399}``, with its size.

Every monitor PV is served over Channel Access and, unless the monitor runs with
``--no-pva``, over pvAccess under the same name (:mod:`mupnc.monitor.pva`); the one PV
pvAccess alone serves, the per-minirun table ``MON:MINIRUNS``, is listed with the server
``monitor (pva)`` (:func:`pva_only_lines`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from caproto.server import PVGroup

from mupnc.daq.record_fields import description, meaning
from mupnc.monitor.alarms.rules import RuleSet
from mupnc.sim.source import SourceConfig

FOLD_AT_LEAST = 3
"""Members a numbered family needs to be folded into one line."""
_LAST_NUMBER = re.compile(r"^(.*?)(\d+)(\D*)$")

IOC, MONITOR = "ioc", "monitor"
"""The servers: the IOC process (``mupnc ioc``) and the monitor's result PVs."""
MONITOR_PVA_ONLY = "monitor (pva)"
"""The server column of a monitor PV served over pvAccess only."""


@dataclass(frozen=True)
class PVLine:
    """One line of the listing: a PV, or a folded family of ``count`` PVs."""

    name: str
    count: int
    server: str
    type: str
    units: str
    meaning: str
    description: str = ""
    """The PVs' ``.DESC`` (a folded family's with its number as N)."""


def ioc_channels(
    prefix: str, config: SourceConfig, block_rate: float, groups: tuple[str, ...]
) -> dict:
    """The IOC's PV database (name -> caproto channel) as ``mupnc ioc`` would serve it."""
    from mupnc.ioc.server import build_ioc

    return dict(build_ioc(prefix, config, 0, block_rate, groups).pvdb)


def monitor_channels(prefix: str, rules: RuleSet) -> dict:
    """The monitor's PV database (name -> caproto channel): results, beam, feedback and one
    alarm PV per rule of ``rules``, as ``mupnc monitor`` serves them."""
    from mupnc.monitor.alarms.pvs import alarm_pv_group
    from mupnc.monitor.feedback.service import FeedbackRequests
    from mupnc.monitor.publisher import result_pv_groups

    groups: list[PVGroup] = [*result_pv_groups(prefix, FeedbackRequests())]
    groups.append(alarm_pv_group(prefix, [rule.name for rule in rules.rules]))
    pvdb: dict = {}
    for group in groups:
        pvdb.update(group.pvdb)
    return pvdb


def _describe(channel) -> tuple[str, str, str, str]:
    """(type, units, meaning, description) of a caproto channel."""
    spec = getattr(channel, "pvspec", None)
    writable = spec is not None and not spec.read_only
    kind = channel.data_type.name + (" (writable)" if writable else "")
    doc = spec.doc if spec is not None else ""
    return kind, str(getattr(channel, "units", "") or ""), meaning(doc), description(doc)


def fold(names: Iterable[str]) -> list[tuple[str, list[str]]]:
    """Names in their order, each family of at least :data:`FOLD_AT_LEAST` names differing
    only in their last number (same width, consecutive values) as one entry
    ``(folded name, members)`` at its first member's place; any other name as
    ``(name, [name])``."""
    names = list(names)
    families: dict[tuple[str, int, str], list[tuple[int, str]]] = {}
    for name in names:
        match = _LAST_NUMBER.match(name)
        if match:
            head, number, tail = match.groups()
            families.setdefault((head, len(number), tail), []).append((int(number), name))
    folded: dict[str, tuple[str, list[str]]] = {}
    for (head, width, tail), members in families.items():
        numbers = sorted(n for n, _ in members)
        consecutive = numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        if len(members) >= FOLD_AT_LEAST and consecutive:
            label = f"{head}{{{numbers[0]:0{width}d}..{numbers[-1]:0{width}d}}}{tail}"
            entry = (label, [name for _, name in sorted(members)])
            folded.update({name: entry for _, name in members})
    listed: list[tuple[str, list[str]]] = []
    seen: set[str] = set()
    for name in names:
        entry = folded.get(name, (name, [name]))
        if entry[0] not in seen:
            seen.add(entry[0])
            listed.append(entry)
    return listed


def _common_meaning(docs: list[str], names: list[str]) -> str:
    """The meaning of a folded family: its members' docs with each one's own number as N
    when they then agree (``Ring buffer slot N: ...``), else the first member's."""
    shapes = set()
    for doc, name in zip(docs, names, strict=True):
        number = str(int(_LAST_NUMBER.match(name).group(2)))
        shapes.add(re.sub(rf"\b{number}\b", "N", doc))
    return shapes.pop() if len(shapes) == 1 else docs[0]


def pv_lines(servers: Mapping[str, Mapping]) -> list[PVLine]:
    """The listing of ``{server: pvdb}``: one line per PV, numbered families folded."""
    lines = []
    for server, pvdb in servers.items():
        for label, members in fold(pvdb):
            kind, units, what, desc = _describe(pvdb[members[0]])
            if len(members) > 1:
                described = [_describe(pvdb[m]) for m in members]
                what = _common_meaning([d[2] for d in described], members)
                desc = _common_meaning([d[3] for d in described], members)
            lines.append(PVLine(label, len(members), server, kind, units, what, desc))
    return lines


def pva_only_lines(prefix: str) -> list[PVLine]:
    """The monitor's PVs that only pvAccess serves (none without p4p)."""
    try:
        from mupnc.monitor.pva import MINIRUNS_DOC, MINIRUNS_PV
    except ImportError:
        return []
    return [PVLine(prefix + MINIRUNS_PV, 1, MONITOR_PVA_ONLY, "NTTable", "", MINIRUNS_DOC)]


def format_lines(lines: list[PVLine], with_server: bool) -> list[str]:
    """Tab-separated lines under a header: PV, (server,) type, units, meaning; a folded
    family's meaning ends with its size, ``(400 PVs)``."""
    header = ["PV", *(["server"] if with_server else []), "type", "units", "meaning"]
    out = ["\t".join(header)]
    for line in lines:
        meaning = line.meaning + (f" ({line.count} PVs)" if line.count > 1 else "")
        server = [line.server] if with_server else []
        out.append("\t".join([line.name, *server, line.type, line.units, meaning]))
    return out


def markdown_table(lines: list[PVLine]) -> list[str]:
    """The listing as a Markdown table: PV, server, type, units, ``.DESC``, meaning (a
    folded family's name in code, with its size); docs/reference.md's "Process variables" table."""
    out = ["| PV | server | type | units | DESC | meaning |", "|---|---|---|---|---|---|"]
    for line in lines:
        name = f"`{line.name}`" + (f" ({line.count} PVs)" if line.count > 1 else "")
        meaning = "" if line.meaning == line.description else line.meaning
        cells = [name, line.server, line.type, line.units, line.description, meaning]
        out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return out
