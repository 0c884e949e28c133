"""mupnc: sim."""
