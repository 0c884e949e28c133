import sys

from mupnc.cli import main

sys.exit(main())
