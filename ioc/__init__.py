"""mupnc: ioc."""
