"""mupnc: mupnc."""
