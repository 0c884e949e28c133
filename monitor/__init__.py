"""mupnc: monitor."""
