"""Data tables that keep up with their data.

BokehJS 3.9 redraws a ``DataTable`` when its ``CDSView``'s indices change, that is when the
number of rows changes: replacing a source's data with as many rows leaves the old cells on
the screen (seen in Chromium: the beam and channel tables froze at their first values while
the plots moved on).  :func:`live_table` makes the view announce every replacement.
"""

from __future__ import annotations

from typing import Any

from bokeh.models import ColumnDataSource, CustomJS, DataTable


def live_table(source: ColumnDataSource, **kwargs: Any) -> DataTable:
    """A ``DataTable`` on ``source`` (``kwargs`` as for ``DataTable``) that redraws whenever
    ``source.data`` is replaced."""
    table = DataTable(source=source, **kwargs)
    source.js_on_change("data", CustomJS(args=dict(view=table.view), code="view.change.emit()"))
    return table
