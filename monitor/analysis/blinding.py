"""Blinding: hide a run's physics asymmetries behind a secret additive offset (pure).

JAPAN style (``QwBlinder``): the MD5 digest
of a seed string gives ``x`` in [-1, 1); the offset is ``box * x * |x|`` (JAPAN's
``(sqrt(M) x) |sqrt(M) x|`` with M = ``box``), so it lies in (-box, +box) and small values
are likelier.  Every reported physics asymmetry (per analysing channel and combined) is
``measured / P + sign * offset``, where ``sign`` is the channel's analysing sign: +1 for
``scatter`` and ``backward`` channels, -1 for ``forward`` ones (they see -A), 0 for
``monitor`` channels.  Errors, chi2/ndf and pulls are unchanged (a common additive offset
cancels in them); the beam charge asymmetry and the null asymmetries are never blinded.

The box: JAPAN blinds PREX-II's ~0.55 ppm with M = 0.15 ppm, about 30 % of the expected
asymmetry, large against the statistical error of any single run.  mupnc's box is the one
given to the IOC (``mupnc ioc --blind BOX``), else ``DEFAULT_BOX`` = 1e-3 (the
light-new-physics A_LR scale): never derived from the run's injected or expected
asymmetry, since the box is visible (``RUN:BLIND_BOX``, the run's configuration) and would
give away |A|.

The checksum identifies a blinding (seed and box) without revealing the offset: a
SHA-256 digest under a fixed domain tag, independent of the MD5 that gives the offset.
It is only as secret as the seed is unguessable: use random seeds.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

Asymmetry = TypeVar("Asymmetry", float, np.ndarray)
"""One asymmetry, or an array of them (per channel)."""
DEFAULT_BOX = 1e-3
_CHECKSUM_TAG = b"mupnc-blinding-checksum-v1\0"

ANALYZING_SIGN = {
    "scatter": 1.0,
    "backward": 1.0,
    "forward": -1.0,
    "monitor": 0.0,
    "pol_forward": 0.0,
    "pol_backward": 0.0,
    "bpm": 0.0,
    "coil": 0.0,
}
"""Sign of the physics asymmetry each channel role sees (as in :mod:`mupnc.sim.source`)."""


@dataclass(frozen=True)
class Blinder:
    """An additive blinding offset (fraction) and the checksum that names it.

    :data:`UNBLINDED` is the identity.  ``repr`` never shows the offset.
    """

    offset: float
    checksum: str
    box: float

    @classmethod
    def from_seed(cls, seed: str, box: float = DEFAULT_BOX) -> Blinder:
        """The blinding a seed string gives within ``(-box, +box)``."""
        if not seed:
            raise ValueError("a blinding seed must be a non-empty string")
        if not (math.isfinite(box) and box > 0):
            raise ValueError(f"the blinding box must be a positive fraction, got {box!r}")
        digest = hashlib.md5(seed.encode(), usedforsecurity=False).digest()
        x = 2.0 * int.from_bytes(digest[:8], "big") / 2.0**64 - 1.0
        return cls(offset=box * x * abs(x), checksum=blinding_checksum(seed, box), box=box)

    @property
    def blinded(self) -> bool:
        return bool(self.checksum)

    def blind(self, asymmetry: Asymmetry, sign: Asymmetry | float = 1.0) -> Asymmetry:
        """The reported value of a physics asymmetry seen with analysing ``sign``."""
        return asymmetry + sign * self.offset

    def unblind(self, reported: float, sign: float = 1.0) -> float:
        """Inverse of :meth:`blind`."""
        return reported - sign * self.offset

    def __repr__(self) -> str:
        return f"Blinder(checksum={self.checksum!r}, box={self.box!r})"


UNBLINDED = Blinder(offset=0.0, checksum="", box=0.0)
"""The blinding of an unblinded run: reports the true values."""


def blinding_checksum(seed: str, box: float) -> str:
    """Hex checksum naming the blinding of ``seed`` within ``box`` (reveals neither)."""
    data = _CHECKSUM_TAG + seed.encode() + b"\0" + float(box).hex().encode()
    return hashlib.sha256(data).hexdigest()[:16]


def ioc_blinder(blind: bool | None, seed: str | None, box: float | None = None) -> Blinder:
    """The blinding of a run as its IOC serves it (``RUN:BLIND``); ``blind`` None (it could
    not be read) blinds the run with the default box: never analysed unblinded by mistake."""
    return run_blinder(True if blind is None else blind, seed, box)


def run_blinder(blind: bool, seed: str | None, box: float | None = None) -> Blinder:
    """The blinding of a run configured ``blind``: identity for an unblinded run.

    ``box`` <= 0 or ``None`` means :data:`DEFAULT_BOX`.  Without a ``seed`` a random one is
    drawn and forgotten: the run stays blinded everywhere, and only a re-analysis of its
    recording can unblind it.
    """
    if not blind:
        return UNBLINDED
    return Blinder.from_seed(seed or secrets.token_hex(16), box if box and box > 0 else DEFAULT_BOX)
