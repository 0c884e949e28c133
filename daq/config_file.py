"""Reading TOML configuration files (channel maps, alarm rules) with one-line errors.

Every error is raised as the caller's error class, in one line naming the file and, where
the problem sits in the file, its line: ``rules.toml, line 7: not valid TOML: ...``.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

_TOML_AT = re.compile(r"^(?P<message>.*) \(at line (?P<line>\d+), column (?P<column>\d+)\)$")


def read_text(path: str | Path, what: str, error: type[Exception]) -> str:
    """The UTF-8 text of the file at ``path`` (``what`` it is, for messages)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise error(f"{path}: cannot read the {what}: {err.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise error(
            f"{path}, line {line}: not a TOML text file (byte 0x{raw[err.start]:02x} is not UTF-8)"
        ) from None


def parse_toml(text: str, name: str, error: type[Exception]) -> dict:
    """The TOML document in ``text`` (from the file ``name``)."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        at = _TOML_AT.match(str(err))
        if at is None:
            raise error(f"{name}: not valid TOML: {err}") from None
        raise error(
            f"{name}, line {at['line']}: not valid TOML: {at['message']} (column {at['column']})"
        ) from None
