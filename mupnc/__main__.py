"""``python -m mupnc``: as the console script (:mod:`mupnc.entry`)."""

import sys

try:
    from mupnc.entry import run
except KeyboardInterrupt:  # a Ctrl-C while Python is still loading the command: quiet
    sys.exit(130)

sys.exit(run())
