"""The process behind :func:`support.cli.run_all`: imports :mod:`mupnc.cli` once, then runs
each ``mupnc`` command in a child forked from itself, exactly as the console script runs it.

Standard input: a JSON list of jobs ``{"args", "cwd", "env", "stdout", "stderr"}`` (the last
two: files for the command's output).  Arguments: the seconds a command may take (then it
is killed) and how many run at once.  Standard output: a JSON list, per job, of its exit
status (negative: killed by that signal) or ``"timeout"``.

A child sets its working folder, environment (``os.environ``, so also the C library's),
standard input (``/dev/null``), output and error, sets ``sys.argv`` like the console script
and calls ``sys.exit(main())``; the ``SystemExit`` (or an uncaught exception, printed with
its traceback, status 1) leaves through this module's top level, so the interpreter ends
the child as it ends the console script: atexit handlers, flushed streams, exit status.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import time

# the console script's sys.path[0] is its own folder, not this one
sys.path[0] = os.path.dirname(sys.executable)

from mupnc.cli import main  # noqa: E402  (after the path is the console script's)

SCRIPT = os.path.join(os.path.dirname(sys.executable), "mupnc")


def run_child(job: dict) -> None:
    """Become the command of ``job``; never returns."""
    os.chdir(job["cwd"])
    os.environ.clear()
    os.environ.update(job["env"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    for fd, path in ((1, job["stdout"]), (2, job["stderr"])):
        out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(out, fd)
        os.close(out)
    sys.argv = [SCRIPT, *job["args"]]
    sys.exit(main())


def run_jobs(jobs: list[dict], timeout: float, parallel: int) -> list[int | str]:
    # What the imports made stays out of the children's garbage collections: their
    # collections (above all the interpreter's last ones) would otherwise write to, and so
    # copy, every page of it (0.8 s of CPU a command instead of 0.2 s).
    gc.freeze()
    statuses: list[int | str | None] = [None] * len(jobs)
    waiting = list(reversed(range(len(jobs))))
    running: dict[int, tuple[int, float]] = {}  # pid -> (job, start)
    killed: set[int] = set()
    while waiting or running:
        while waiting and len(running) < parallel:
            index = waiting.pop()
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                run_child(jobs[index])
            running[pid] = (index, time.monotonic())
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid:
            index, _ = running.pop(pid)
            statuses[index] = "timeout" if pid in killed else os.waitstatus_to_exitcode(status)
            continue
        now = time.monotonic()
        for pid, (_, start) in running.items():
            if now - start > timeout and pid not in killed:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        time.sleep(0.002)
    return statuses


if __name__ == "__main__":
    results = run_jobs(json.loads(sys.stdin.buffer.read()), float(sys.argv[1]), int(sys.argv[2]))
    print(json.dumps(results))
