"""The DAQ contract (docs/daq-contract.md) without Channel Access: the reference unpacker
refuses another layout in one line, enum states match in any case, the settings a monitor
reads from an outside DAQ's PVs, and the document's worked example decodes as it says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from support.layout2 import layout_2_length, pack_layout_2
from support.shipped import shipped_module
from test_blocks import make_block

from mupnc.daq.blocks import (
    LAYOUT_VERSION,
    MAGIC,
    MAGIC_2,
    BlockFormatError,
    BlockLayoutError,
    WindowBlock,
)
from mupnc.daq.contract import CONTRACT_VERSION, OPTIONAL, REQUIRED, ContractError, enum_state
from mupnc.monitor.service import served_settings, settings_from

DOC = Path(__file__).resolve().parents[1] / "docs" / "daq-contract.md"
CHANNEL_MAP = {"mode": "alr", "channels": [{"name": "s0", "role": "scatter", "acceptance": 1e-4}]}


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_magic_is_mu_and_the_layout_version() -> None:
    assert MAGIC == 0x6D750003 == 1836384259 and LAYOUT_VERSION == 3
    assert MAGIC_2 == 0x6D750002 == 1836384258


@pytest.mark.parametrize("version", [1, 4])
def test_a_block_of_another_layout_version_is_refused_in_one_line(version: int) -> None:
    wire = make_block().pack()
    wire[0] = 0x6D750000 | version
    with pytest.raises(BlockLayoutError) as err:
        WindowBlock.unpack(wire)
    assert f"layout version {version};" in one_line(err)
    assert "reads layout versions 2 and 3" in one_line(err)


@pytest.mark.parametrize("magic", [1.0, 0x6D760003, 1836384259.5, -1836384259, 2.0**40])
def test_an_array_without_the_magic_is_refused_in_one_line(magic: float) -> None:
    wire = make_block().pack().astype(np.float64)
    wire[0] = magic
    with pytest.raises(BlockLayoutError) as err:
        WindowBlock.unpack(wire)
    assert "0x6d750003 = 1836384259" in one_line(err)


def test_a_reader_of_layout_2_refuses_a_layout_3_block_in_one_line(tmp_path, monkeypatch) -> None:
    """The issue's demand: old readers refuse the new encoding cleanly.  The reader is the
    one mupnc shipped before layout 3 (``daq/blocks.py`` of commit 8aa9c35, from git)."""
    blocks_v2 = shipped_module("8aa9c35", "daq/blocks.py", tmp_path, monkeypatch)
    assert blocks_v2.LAYOUT_VERSION == 2
    wire = make_block(4, 3, high=100).pack()
    for as_read in (wire, wire.astype(np.float64)):  # pyepics gives int32, a DBR_DOUBLE get
        with pytest.raises(blocks_v2.BlockLayoutError) as err:
            blocks_v2.WindowBlock.unpack(as_read)
        assert one_line(err).startswith("window block of layout version 3; this reader reads")


def test_a_layout_1_block_is_refused_rather_than_mis_decoded() -> None:
    """The issue's case: a DAQ without the rotator_readback column, whose zero padding passed
    the length check and whose beam monitor came out as its counts."""
    n, c = 3, 2
    block = make_block(n, c)
    columns = [block.seq, block.pattern_number, block.pattern_phase, block.reported_helicity]
    columns += [block.flags, block.beam_monitor, block.counts.reshape(-1)]
    v1 = np.zeros(layout_2_length(n, c) + 10)
    body = np.concatenate([np.asarray(x, dtype=np.float64) for x in columns])
    v1[:5] = (0x6D750001, 7, 1, n, c)
    v1[5 : 5 + body.size] = body
    with pytest.raises(BlockLayoutError, match="layout version 1"):
        WindowBlock.unpack(v1)


def test_non_zero_padding_is_refused() -> None:
    wire = pack_layout_2(make_block(5, 3), length=200)
    wire[-1] = 1.0
    with pytest.raises(BlockFormatError, match="padding must be zeros"):
        WindowBlock.unpack(wire)
    wire[-1] = 0.0
    WindowBlock.unpack(wire)
    wire = np.concatenate([make_block(5, 3).pack(), np.zeros(20, np.int32)])
    wire[-1] = 1
    with pytest.raises(BlockFormatError, match="padding must be zeros"):
        WindowBlock.unpack(wire)


def test_a_truncated_block_is_a_format_error_not_a_layout_error() -> None:
    for wire in (make_block(5, 3).pack(), pack_layout_2(make_block(5, 3))):
        with pytest.raises(BlockFormatError) as err:
            WindowBlock.unpack(wire[:-1])
        assert not isinstance(err.value, BlockLayoutError)


@pytest.mark.parametrize(
    ("pv", "served", "state"),
    [
        ("HEL:PATTERN", "QUARTET", "quartet"),
        ("HEL:PATTERN", "Thue-Morse-64", "thue-morse-64"),
        ("HEL:SCHEME", "fast", "FAST"),
        ("RUN:STATE", "Running", "RUNNING"),
        ("HEL:ROTATOR_PATTERN", " pair ", "PAIR"),
        ("RUN:BLIND", "yes", "YES"),
    ],
)
def test_enum_states_match_in_any_case(pv: str, served: str, state: str) -> None:
    assert enum_state(pv, served) == state


def test_an_unknown_enum_state_is_refused_in_one_line() -> None:
    with pytest.raises(ContractError) as err:
        enum_state("HEL:PATTERN", "sextet")
    assert one_line(err).startswith("HEL:PATTERN is 'sextet', not one of pair, quartet")


def outside_values(**changes) -> dict:
    values = {
        "RUN:NUMBER": 12,
        "HEL:PATTERN": "QUARTET",
        "HEL:DELAY": 2,
        "BEAM:POLARIZATION": 0.8,
        "DAQ:CHANNEL_MAP": json.dumps(CHANNEL_MAP),
        "RUN:BLIND": "no",
        "RUN:BLIND_BOX": 0.0,
        "HEL:WINDOW_RATE": 240.0,
    }
    return values | changes


def test_settings_of_an_outside_daq_in_upper_case() -> None:
    settings = settings_from(outside_values(**{"HEL:SCHEME": "FAST"}))
    assert (settings.run, settings.pattern, settings.scheme) == (12, "quartet", "fast")
    assert not settings.blinder.blinded
    assert settings_from(outside_values(**{"RUN:BLIND": "YES"})).blinder.blinded


def test_settings_of_an_outside_daq_with_an_unknown_pattern_are_refused() -> None:
    with pytest.raises(ContractError, match="HEL:PATTERN is 'QUINTET'"):
        settings_from(outside_values(**{"HEL:PATTERN": "QUINTET"}))
    with pytest.raises(ContractError, match="HEL:SCHEME"):
        settings_from(outside_values(**{"HEL:SCHEME": "SLOWISH"}))


def test_the_run_row_records_what_the_daq_served() -> None:
    settings = settings_from(outside_values())
    row = served_settings({"pattern": "octet", "mode": "alr", "polarization": 0.5}, settings)
    assert row["pattern"] == row["config"]["pattern"] == "quartet"
    assert row["config"]["polarization"] == 0.8 and row["config"]["mode"] == "alr"
    assert row["channel_map"] == CHANNEL_MAP
    assert row["config"]["window_rate"] == 240.0


def test_the_document_names_its_version_and_every_pv_of_the_contract() -> None:
    text = DOC.read_text()
    assert f"Contract version {CONTRACT_VERSION}" in text
    for pv in REQUIRED + OPTIONAL:
        assert f"`{pv.name}`" in text, pv.name
        for state in pv.states:
            assert f"`{state}`" in text, (pv.name, state)


@pytest.mark.parametrize(
    ("title", "dtype"), [("example block, layout 3", np.int32), ("example block", float)]
)
def test_the_documents_worked_examples_decode_as_documented(title: str, dtype: type) -> None:
    """The example blocks in docs/daq-contract.md, packed by hand there, are what the
    reference unpacker reads; the layout-3 one is what :meth:`WindowBlock.pack` makes."""
    text = DOC.read_text()
    example = re.search(rf"```text\n# {title}\n(.*?)```", text, re.S)
    assert example is not None, f"the worked example {title!r} is missing from the document"
    numbers = [float(x) for x in re.findall(r"[-\d.e+]+", example.group(1).split("=", 1)[1])]
    wire = np.array(numbers).astype(dtype)
    block = WindowBlock.unpack(wire)
    assert (block.stream_id, block.block_number, block.n_windows, block.n_channels) == (
        77,
        5,
        2,
        2,
    )
    assert block.seq.tolist() == [40, 41]
    assert block.pattern_phase.tolist() == [0, 1] and block.flags.tolist() == [3, 0]
    assert block.reported_helicity.tolist() == [1, -1]
    assert block.rotator_readback.tolist() == [1, -1]
    assert block.beam_monitor.tolist() == [412000.0, 411873.5]
    assert block.counts.tolist() == [[103, 98], [97, 110]]
    if dtype is np.int32:
        np.testing.assert_array_equal(block.pack(), wire)


def test_the_documents_generator_vector_is_the_generators() -> None:
    from mupnc.daq.helicity import HelicityGenerator

    text = " ".join(DOC.read_text().split())
    found = re.search(
        r"From the register 0x2AAAAAAA the next twelve polarities are `([-+ ]+)`", text
    )
    assert found is not None
    signs = [1 if s == "+" else -1 for s in found.group(1).split()]
    assert signs == HelicityGenerator(0x2AAAAAAA).polarities(12).tolist()
