"""False statistics alarms per clean shift-hour: the shipped rules against the budget.

Clean runs (Gaussian minirun means with their errors) go through the shipped
``chi2_ndf`` and ``pull_width`` rules, looked at twice per minirun as the monitor does
(:mod:`mupnc.monitor.alarms.budget`); every annunciation is a false alarm, acknowledged
at once.  For each minirun rate (the slow schemes' 16 quartets at a 10 s flip: 5.6/h;
fast quartets at 240 Hz: 24/h; octets at 1920 Hz: 96/h; quartets at 1920 Hz: 192/h) and
run length (1 h, 8 h), the rate per 100 clean hours with its 3-sigma Poisson upper bound.

Run: .venv/bin/python bench/bench_alarm_budget.py [--hours H] [--rules FILE] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import time

from mupnc.monitor.alarms.budget import BUDGET_PER_HOUR, false_statistics_alarms
from mupnc.monitor.alarms.rules import load_rules

MINIRUNS_PER_HOUR = (5.6, 24, 96, 192)
RUN_HOURS = (1, 8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2000.0, help="clean hours per case")
    parser.add_argument("--rules", help="alarm rules file (default: the shipped rules)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rules = load_rules(args.rules)
    rows = []
    start = time.perf_counter()
    for per_hour in MINIRUNS_PER_HOUR:
        for run_hours in RUN_HOURS:
            miniruns = max(2, round(per_hour * run_hours))
            runs = max(1, math.ceil(args.hours / run_hours))
            check = false_statistics_alarms(rules, runs, miniruns, seed=11)
            rows.append(
                {
                    "miniruns_per_hour": per_hour,
                    "run_hours": run_hours,
                    "runs": runs,
                    "alarms": check.alarms,
                    "per_100_hours": 100 * check.per_hour(per_hour),
                    "upper_per_100_hours": 100 * check.upper_per_hour(per_hour),
                }
            )
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"budget: {100 * BUDGET_PER_HOUR:g} false statistics alarm per 100 clean hours")
    print("miniruns/h  run h   runs  alarms  per 100 h  (3 sigma upper)")
    for r in rows:
        print(
            f"{r['miniruns_per_hour']:>10g} {r['run_hours']:>6g} {r['runs']:>6d} {r['alarms']:>7d}"
            f" {r['per_100_hours']:>10.3f}  ({r['upper_per_100_hours']:.3f})"
        )
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
