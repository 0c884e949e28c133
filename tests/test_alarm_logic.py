"""The alarm state machine, table-driven: latch, acknowledge, re-trip, debounce by delay and
by count, decay, shelving with expiry, gating (Phoebus AlarmLogicUnitTest sequences)."""

from __future__ import annotations

import pytest

from mupnc.daq.severity import Severity
from mupnc.monitor.alarms.logic import (
    ACTIVE,
    CLEARED,
    OK,
    SHELVED,
    AlarmStatus,
    Debounce,
    acknowledge,
    evaluate,
    shelve,
)

N, MINOR, MAJOR, INVALID = Severity.NO_ALARM, Severity.MINOR, Severity.MAJOR, Severity.INVALID
PLAIN = Debounce()


def run(steps, debounce: Debounce = PLAIN) -> list[tuple]:
    """Apply steps ``(t, event)``; event is a Severity, "ack", ("shelve", until), ("gate",
    sev) for a closed gate or (violations, checks, sev).  Returns (state, shown severity,
    acknowledged, annunciated) after each step."""
    status, out = AlarmStatus(), []
    for t, event in steps:
        transition = None
        if event == "ack":
            transition = acknowledge(status)
        elif isinstance(event, tuple) and event[0] == "shelve":
            transition = shelve(status, event[1])
        elif isinstance(event, tuple) and event[0] == "gate":
            transition = evaluate(status, debounce, event[1], t, enabled=False)
        elif isinstance(event, tuple):
            violations, checks, severity = event
            transition = evaluate(status, debounce, severity, t, violations, checks)
        else:
            transition = evaluate(status, debounce, event, t)
        annunciated = transition is not None and transition.annunciate
        out.append((status.state, status.latched, status.acknowledged, annunciated))
    return out


def shown(results: list[tuple]) -> list[tuple[str, Severity, bool]]:
    return [r[:3] for r in results]


# Phoebus: "Minor, Minor, Major, Major, Ack, Minor, OK"; "Major, Minor, Ack, Major"
# re-annunciates; "INVALID, MAJOR, Ack" acknowledges the current MAJOR.
LATCH_TABLE = [
    (
        "maximize then ack then recover",
        [MINOR, MINOR, MAJOR, MAJOR, "ack", MINOR, N],
        [
            (ACTIVE, MINOR, False),
            (ACTIVE, MINOR, False),
            (ACTIVE, MAJOR, False),
            (ACTIVE, MAJOR, False),
            (ACTIVE, MAJOR, True),
            (ACTIVE, MINOR, True),
            (OK, N, False),
        ],
    ),
    (
        "ack while lower re-latches, a rise annunciates again",
        [MAJOR, MINOR, "ack", MAJOR],
        [
            (ACTIVE, MAJOR, False),
            (ACTIVE, MAJOR, False),
            (ACTIVE, MINOR, True),
            (ACTIVE, MAJOR, False),
        ],
    ),
    (
        "ack acknowledges the current severity",
        [INVALID, MAJOR, "ack", N],
        [
            (ACTIVE, INVALID, False),
            (ACTIVE, INVALID, False),
            (ACTIVE, MAJOR, True),
            (OK, N, False),
        ],
    ),
    (
        "recovered but latched until ack",
        [MAJOR, N, N, "ack", N],
        [
            (ACTIVE, MAJOR, False),
            (CLEARED, MAJOR, False),
            (CLEARED, MAJOR, False),
            (OK, N, False),
            (OK, N, False),
        ],
    ),
    (
        "re-trip after recovery, before ack",
        [MINOR, N, MAJOR, N, "ack"],
        [
            (ACTIVE, MINOR, False),
            (CLEARED, MINOR, False),
            (ACTIVE, MAJOR, False),
            (CLEARED, MAJOR, False),
            (OK, N, False),
        ],
    ),
    (
        "a new occurrence after OK starts unacknowledged",
        [MAJOR, "ack", N, MINOR],
        [
            (ACTIVE, MAJOR, False),
            (ACTIVE, MAJOR, True),
            (OK, N, False),
            (ACTIVE, MINOR, False),
        ],
    ),
    ("ack of an OK alarm does nothing", ["ack", N], [(OK, N, False), (OK, N, False)]),
]


@pytest.mark.parametrize(
    ("events", "expected"), [t[1:] for t in LATCH_TABLE], ids=[t[0] for t in LATCH_TABLE]
)
def test_latching(events, expected) -> None:
    assert shown(run(list(enumerate(events)))) == expected


def test_annunciation_on_new_and_higher_severity_only() -> None:
    results = run(list(enumerate([MINOR, MINOR, MAJOR, N, MINOR, "ack", MAJOR])))
    assert [r[3] for r in results] == [True, False, True, False, False, False, True]


def test_non_latching_follows_the_condition() -> None:
    results = run(list(enumerate([MAJOR, MINOR, N, MINOR])), Debounce(latch=False))
    assert shown(results) == [
        (ACTIVE, MAJOR, False),
        (ACTIVE, MINOR, False),
        (OK, N, False),
        (ACTIVE, MINOR, False),
    ]


DELAY_TABLE = [
    # (times and severities, delay) -> states: the condition must last `delay` seconds
    ("short blip never trips", [(0, MAJOR), (1, N), (2, MAJOR), (3, N)], [OK] * 4),
    (
        "persisting condition trips after the delay",
        [(0, MAJOR), (1, MAJOR), (2, MAJOR), (3, N)],
        [OK, OK, ACTIVE, CLEARED],
    ),
    (
        "the delay restarts after a clean evaluation",
        [(0, MAJOR), (1.5, N), (2, MAJOR), (3, MAJOR), (4, MAJOR)],
        [OK, OK, OK, OK, ACTIVE],
    ),
]


@pytest.mark.parametrize(
    ("steps", "states"), [t[1:] for t in DELAY_TABLE], ids=[t[0] for t in DELAY_TABLE]
)
def test_debounce_by_delay(steps, states) -> None:
    assert [r[0] for r in run(steps, Debounce(delay=2.0))] == states


def test_a_blip_held_in_the_ring_does_not_pass_the_delay() -> None:
    steps = [
        (0, MAJOR),
        (1, N),
        (2, N),
        (3, N),
        (4, MAJOR),
        (5, MAJOR),
        (6, MAJOR),
        *[(t, N) for t in range(7, 12)],
    ]
    states = [r[0] for r in run(steps, Debounce(ring=5, delay=2.0))]
    assert states == [OK, OK, OK, OK, OK, OK, ACTIVE, ACTIVE, ACTIVE, ACTIVE, ACTIVE, CLEARED]


# JAPAN: trip on `count` violations within a ring of `ring` checks; decays only once the
# ring holds no violation (a clean stretch of `ring` checks).
COUNT_TABLE = [
    (
        "isolated violations never reach the count",
        [(1, 100), (0, 100), (0, 100), (1, 100), (0, 100), (0, 100), (1, 100)],
        [OK] * 7,
    ),
    (
        "three within the ring trip",
        [(1, 100), (1, 100), (1, 100), (0, 100), (0, 100), (0, 100)],
        [OK, OK, ACTIVE, ACTIVE, ACTIVE, CLEARED],
    ),
    ("many in one evaluation trip at once", [(5, 100), (0, 100)], [ACTIVE, ACTIVE]),
    (
        "decay needs a whole clean ring",
        [(3, 100), (0, 100), (0, 100), (1, 100), (0, 100), (0, 100), (0, 100)],
        [ACTIVE, ACTIVE, ACTIVE, ACTIVE, ACTIVE, ACTIVE, CLEARED],
    ),
    ("evaluations without checks hold the ring", [(3, 100), (0, 0), (0, 0), (0, 0)], [ACTIVE] * 4),
]


@pytest.mark.parametrize(
    ("steps", "states"), [t[1:] for t in COUNT_TABLE], ids=[t[0] for t in COUNT_TABLE]
)
def test_debounce_by_count_and_decay(steps, states) -> None:
    debounce = Debounce(count=3, ring=300)
    events = [(t, (v, c, MAJOR)) for t, (v, c) in enumerate(steps)]
    assert [r[0] for r in run(events, debounce)] == states


def test_severity_is_the_worst_still_in_the_ring() -> None:
    debounce = Debounce(count=1, ring=200)
    events = [(0, (1, 100, MAJOR)), (1, (1, 100, MINOR)), (2, (0, 100, N)), (3, (0, 100, N))]
    status = AlarmStatus()
    seen = []
    for t, (v, c, sev) in events:
        evaluate(status, debounce, sev, t, v, c)
        seen.append(status.condition)
    assert seen == [MAJOR, MAJOR, MINOR, N]


SHELVE_TABLE = [
    (
        "shelved alarm is hidden, latches, and comes back after expiry",
        [(0, MAJOR), (1, ("shelve", 5.0)), (2, MAJOR), (3, MAJOR), (5, MAJOR), (6, MAJOR)],
        [ACTIVE, SHELVED, SHELVED, SHELVED, ACTIVE, ACTIVE],
        [True, False, False, False, True, False],
    ),
    (
        "condition gone while shelved: cleared (latched) after expiry, no annunciation",
        [(0, MAJOR), (1, ("shelve", 3.0)), (2, N), (3, N), (4, "ack")],
        [ACTIVE, SHELVED, SHELVED, CLEARED, OK],
        [True, False, False, False, False],
    ),
    (
        "a trip while shelved is not annunciated until the shelf expires",
        [(0, MINOR), (0.5, "ack"), (1, ("shelve", 4.0)), (2, MAJOR), (4, MAJOR)],
        [ACTIVE, ACTIVE, SHELVED, SHELVED, ACTIVE],
        [True, False, False, False, True],
    ),
    (  # it showed as shelved, NO_ALARM and not acknowledged until the shelf expired
        "an acknowledged alarm whose condition goes while shelved is over",
        [(0, MAJOR), (0.5, "ack"), (1, ("shelve", 5.0)), (2, N), (6, N)],
        [ACTIVE, ACTIVE, SHELVED, OK, OK],
        [True, False, False, False, False],
    ),
    (
        "the shelf still holds a new trip before it expires",
        [(0, MAJOR), (0.5, "ack"), (1, ("shelve", 5.0)), (2, N), (3, MAJOR), (6, MAJOR)],
        [ACTIVE, ACTIVE, SHELVED, OK, SHELVED, ACTIVE],
        [True, False, False, False, False, True],
    ),
]


@pytest.mark.parametrize(
    ("steps", "states", "annunciated"),
    [t[1:] for t in SHELVE_TABLE],
    ids=[t[0] for t in SHELVE_TABLE],
)
def test_shelving_with_expiry(steps, states, annunciated) -> None:
    results = run(steps)
    assert [r[0] for r in results] == states
    assert [r[3] for r in results] == annunciated


def test_a_closed_gate_suppresses_the_condition_but_keeps_the_latch() -> None:
    debounce = Debounce(count=2, ring=300)
    steps = [
        (0, (1, 100, MAJOR)),
        (1, ("gate", MAJOR)),  # beam off: the pending violation is forgotten
        (2, (1, 100, MAJOR)),  # one violation after the gate opens: below the count
        (3, (1, 100, MAJOR)),  # two: trips
        (4, ("gate", MAJOR)),  # gate closes while tripped: cleared, still latched
        (5, "ack"),
    ]
    assert shown(run(steps, debounce)) == [
        (OK, N, False),
        (OK, N, False),
        (OK, N, False),
        (ACTIVE, MAJOR, False),
        (CLEARED, MAJOR, False),
        (OK, N, False),
    ]


def test_transitions_report_what_changed() -> None:
    status = AlarmStatus()
    first = evaluate(status, Debounce(), MAJOR, 0.0, reason="x = 3")
    assert (first.from_state, first.to_state, first.to_severity, first.reason) == (
        OK,
        ACTIVE,
        MAJOR,
        "x = 3",
    )
    assert evaluate(status, Debounce(), MAJOR, 1.0) is None  # nothing changed
    ack = acknowledge(status, "acknowledged by Ann")
    assert ack.acknowledged and ack.to_state == ACTIVE and ack.reason == "acknowledged by Ann"


def test_debounce_refuses_nonsense() -> None:
    for bad in ({"count": 0}, {"ring": 0}, {"delay": -1.0}):
        with pytest.raises(ValueError, match="debounce"):
            Debounce(**bad)
