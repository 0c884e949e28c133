import sys

from mupnc.entry import run

sys.exit(run())
