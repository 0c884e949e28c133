"""Recordings in and out as Parquet; results out as CSV.

Parquet schema (format ``mupnc-recording`` version 1), one row per recorded window, in
window order, one row group per batch of blocks:

==================== ========= ======================================================
column               type      meaning
==================== ========= ======================================================
``stream_id``        int64     the IOC's window stream (new after an IOC restart)
``block_number``     int64     block the window was published in (blocks are kept whole)
``seq``              int64     window sequence number (MPS counter since the run began)
``pattern_number``   int64     helicity pattern (fast) or reversal interval (slow, kick)
``pattern_phase``    int16     window's place in its pattern, as published
``reported_helicity``int8      +1/-1 as reported by the helicity board (delayed)
``flags``            uint8     bits 0-3: pattern sync, pair sync, settle gate, modulation
``rotator_readback`` int16     spin reverser readback (+1/-1, 0 ramping; kick: turn)
``beam_monitor``     float64   beam-monitor integral of the window, muons
``counts_<channel>`` int64     detector counts of each channel, in channel-map order
==================== ========= ======================================================

The file's key-value metadata ``mupnc`` holds JSON: ``format``, ``version``, ``run`` (the
run's settings as stored: number, source, mode, config, channel map, pattern, delay,
scheme, blinding flag and checksum, ...), ``channels`` (names in column order),
``windows`` and ``blocks`` (totals, so a shortened file is recognised) and
``minirun_patterns`` (the minirun length the run was analysed with).  Floats are
written bit-exactly; an import gives back the very blocks that were exported.  Every data
page carries a CRC32, verified on import.

CSV results: one row per (minirun, channel) of the run's stored results, minirun -1 being
the whole run; columns ``run, minirun, channel, value, error, n, chi2_ndf, blinded``;
asymmetries as plain fractions, an empty field where a value is undefined.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Engine, select

from mupnc.daq.blocks import WindowBlock
from mupnc.db.block_codec import FLOAT_COLUMNS, INTEGER_COLUMNS
from mupnc.db.models import AsymmetryResult, Run
from mupnc.db.recording_reader import recorded_blocks, recording_info
from mupnc.db.session import transaction

FORMAT, VERSION = "mupnc-recording", 1
METADATA_KEY = b"mupnc"
PER_WINDOW = tuple(
    (name, pa.from_numpy_dtype(np.dtype(kind)))
    for name, kind in INTEGER_COLUMNS + FLOAT_COLUMNS
    if name != "counts"
)
"""Per-window fields of a :class:`WindowBlock` with their types, as the recording keeps them."""
WINDOW_COLUMNS = (("stream_id", pa.int64()), ("block_number", pa.int64()), *PER_WINDOW)
COUNTS_PREFIX = "counts_"
RUN_FIELDS = (
    "number",
    "source",
    "replay_of",
    "state",
    "mode",
    "config",
    "provenance",
    "target_z",
    "momentum",
    "scheme",
    "expected_asymmetry",
    "pattern",
    "delay_patterns",
    "channel_map",
    "blinding_checksum",
    "slow_controls",
    "blinded",
)
RESULT_COLUMNS = ("run", "minirun", "channel", "value", "error", "n", "chi2_ndf", "blinded")


class ExchangeError(ValueError):
    """A file that cannot be exported to or imported from; the message names it."""


def _schema(channels: list[str], metadata: dict) -> pa.Schema:
    columns = [pa.field(name, kind, nullable=False) for name, kind in WINDOW_COLUMNS]
    columns += [pa.field(COUNTS_PREFIX + c, pa.int64(), nullable=False) for c in channels]
    return pa.schema(columns, metadata={METADATA_KEY: json.dumps(metadata).encode()})


def _table(blocks: list[WindowBlock], schema: pa.Schema) -> pa.Table:
    lengths = [b.n_windows for b in blocks]
    columns = [
        np.repeat([b.stream_id for b in blocks], lengths),
        np.repeat([b.block_number for b in blocks], lengths),
    ]
    columns += [np.concatenate([getattr(b, n) for b in blocks]) for n, _ in WINDOW_COLUMNS[2:]]
    counts = np.concatenate([b.counts for b in blocks])
    columns += list(counts.T)
    arrays = [pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema)


HIDDEN_WHEN_BLINDED = ("asymmetry", "expected_asymmetry", "expected_shape")
"""Run configuration keys an export of a blinded run leaves out: they give away |A|."""


def _run_fields(run: Run) -> dict:
    fields = {name: getattr(run, name) for name in RUN_FIELDS}
    if run.blinded:
        config = fields["config"] or {}
        fields["config"] = {k: v for k, v in config.items() if k not in HIDDEN_WHEN_BLINDED}
        fields["expected_asymmetry"] = None
    for name in ("start", "end"):
        moment = getattr(run, name)
        fields[name] = None if moment is None else moment.isoformat()
    return fields


def export_parquet(engine: Engine, number: int, path: str | Path) -> int:
    """Write run ``number``'s recording to ``path``; returns the number of windows.

    Written to a temporary file first and renamed, so ``path`` never holds half a file.
    """
    with transaction(engine) as session:
        info = recording_info(session, number)
        run = _run_fields(info.run)
    channels = [c["name"] for c in (run["channel_map"] or run["config"]["channel_map"])["channels"]]
    metadata = dict(
        format=FORMAT,
        version=VERSION,
        run=run,
        channels=channels,
        windows=info.windows,
        blocks=info.blocks,
        minirun_patterns=info.minirun_patterns,
    )
    schema = _schema(channels, metadata)
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    try:
        with pq.ParquetWriter(
            partial, schema, compression="zstd", write_page_checksum=True
        ) as writer:
            for batch in recorded_blocks(engine, number):
                writer.write_table(_table(batch, schema))
        os.replace(partial, path)
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise ExchangeError(f"{path}: cannot write ({err.strerror or err})") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return info.windows


def _open(path: Path) -> tuple[pq.ParquetFile, dict]:
    if not path.is_file():
        raise ExchangeError(f"{path}: no such file")
    try:
        parquet = pq.ParquetFile(path, page_checksum_verification=True)
    except (pa.ArrowException, OSError) as err:
        raise ExchangeError(f"{path}: not a readable Parquet file ({err})") from None
    raw = (parquet.schema_arrow.metadata or {}).get(METADATA_KEY)
    try:
        metadata = json.loads(raw) if raw else None
    except ValueError:
        metadata = None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ExchangeError(f"{path}: not a mupnc recording (no '{FORMAT}' metadata)")
    if metadata.get("version") != VERSION:
        raise ExchangeError(f"{path}: {FORMAT} version {metadata.get('version')!r} is unknown")
    channels, run = metadata.get("channels"), metadata.get("run")
    if not (isinstance(channels, list) and channels and all(isinstance(c, str) for c in channels)):
        raise ExchangeError(f"{path}: the metadata lists no channel names")
    if not (isinstance(run, dict) and isinstance(run.get("config"), dict) and run.get("mode")):
        raise ExchangeError(f"{path}: the metadata lacks the run's settings")
    expected = _schema(metadata["channels"], {})
    actual = parquet.schema_arrow
    for field in expected:
        index = actual.get_field_index(field.name)
        if index < 0 or actual.field(index).type != field.type:
            raise ExchangeError(f"{path}: column {field.name!r} ({field.type}) missing or mistyped")
    return parquet, metadata


def read_parquet(path: str | Path) -> tuple[dict, Iterator[WindowBlock]]:
    """The metadata of a recording file and an iterator over its blocks, checked as read:
    :class:`ExchangeError` for anything that is not a whole, well-formed recording."""
    path = Path(path)
    parquet, metadata = _open(path)
    names = [name for name, _ in WINDOW_COLUMNS]
    names += [COUNTS_PREFIX + c for c in metadata["channels"]]
    return metadata, _blocks(path, parquet, metadata, names)


def _blocks(path: Path, parquet: pq.ParquetFile, metadata: dict, names: list[str]):
    held: dict[str, np.ndarray] | None = None  # rows of a block that may go on
    blocks = windows = 0
    last_block, last_seq = None, None
    try:
        batches = parquet.iter_batches(batch_size=1 << 16, columns=names)
        for batch in batches:
            if any(column.null_count for column in batch.columns):
                raise ExchangeError(f"{path}: empty (null) values in the recording")
            rows = {n: c.to_numpy() for n, c in zip(names, batch.columns, strict=True)}
            if held is not None:
                rows = {n: np.concatenate([held[n], rows[n]]) for n in names}
            key, stream = rows["block_number"], rows["stream_id"]
            starts = np.flatnonzero(
                np.r_[True, (key[1:] != key[:-1]) | (stream[1:] != stream[:-1])]
            )
            for start, stop in itertools.pairwise(starts.tolist()):
                block = _block(rows, metadata["channels"], start, stop)
                last_block, last_seq = _check_order(path, block, last_block, last_seq)
                blocks, windows = blocks + 1, windows + block.n_windows
                yield block
            held = {n: v[starts[-1] :] for n, v in rows.items()}
        if held is not None:
            block = _block(held, metadata["channels"], 0, held["seq"].size)
            _check_order(path, block, last_block, last_seq)
            blocks, windows = blocks + 1, windows + block.n_windows
            yield block
    except (pa.ArrowException, OSError) as err:
        raise ExchangeError(f"{path}: corrupt Parquet data ({err})") from None
    if (blocks, windows) != (metadata.get("blocks"), metadata.get("windows")):
        raise ExchangeError(
            f"{path}: truncated recording: {windows} windows in {blocks} blocks, "
            f"the file says {metadata.get('windows')} in {metadata.get('blocks')}"
        )


def _block(rows: dict, channels: list[str], start: int, stop: int) -> WindowBlock:
    part = slice(start, stop)
    counts = np.column_stack([rows[COUNTS_PREFIX + c][part] for c in channels])
    return WindowBlock(
        stream_id=int(rows["stream_id"][start]),
        block_number=int(rows["block_number"][start]),
        counts=counts.reshape(stop - start, len(channels)),
        **{name: rows[name][part] for name, _ in PER_WINDOW},
    )


def _check_order(path: Path, block: WindowBlock, last_block, last_seq) -> tuple[tuple, int]:
    """Blocks in increasing order within each window stream (a new stream, after an IOC
    restart, numbers from 0 again), windows in increasing ``seq`` throughout."""
    seq = block.seq
    where = f"{path}: block {block.block_number}"
    key = (block.stream_id, block.block_number)
    if last_block is not None and key[0] == last_block[0] and key[1] <= last_block[1]:
        raise ExchangeError(f"{where}: blocks out of order")
    if np.any(np.diff(seq) <= 0) or (last_seq is not None and seq[0] <= last_seq):
        raise ExchangeError(f"{where}: window sequence numbers out of order")
    return key, int(seq[-1])


def export_results_csv(engine: Engine, number: int, path: str | Path) -> int:
    """Write run ``number``'s stored results as CSV; returns the number of rows."""
    with transaction(engine) as session:
        run = session.get(Run, number)
        if run is None:
            raise LookupError(f"run {number} is not in the database")
        blinded = bool(run.blinded)
        results = session.scalars(
            select(AsymmetryResult)
            .where(AsymmetryResult.run == number)
            .order_by(AsymmetryResult.minirun, AsymmetryResult.id)
        ).all()
        rows = [
            [number, r.minirun, r.channel, r.value, r.error, r.n, r.chi2_ndf, blinded]
            for r in results
        ]
    try:
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(RESULT_COLUMNS)
            writer.writerows([["" if v is None else v for v in row] for row in rows])
    except OSError as err:
        raise ExchangeError(f"{path}: cannot write ({err.strerror or err})") from None
    return len(rows)


def imported_run(metadata: dict, path: Path, blinding_checksum: str | None) -> dict:
    """Keyword arguments of :func:`mupnc.db.store.allocate_run` for an imported recording,
    analysed under the blinding named by ``blinding_checksum`` (None: unblinded)."""
    run = metadata["run"]
    config = dict(run["config"])
    config.update(
        blinded=blinding_checksum is not None,
        blinding_checksum=blinding_checksum,
        channel_map=run.get("channel_map") or config.get("channel_map"),
        slow_controls=run.get("slow_controls"),
    )
    provenance = {
        "imported_from": str(path.resolve()),
        "imported_at": datetime.now().astimezone().isoformat(),
        "exported_run": run.get("number"),
        "exported_source": run.get("source"),
        "exported_replay_of": run.get("replay_of"),
        "exported_start": run.get("start"),
        "exported_provenance": run.get("provenance"),
    }
    return dict(source=run["source"], mode=run["mode"], config=config, provenance=provenance)
