"""mupnc: dashboards."""
