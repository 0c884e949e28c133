"""mupnc: db."""
