"""TileGrid: tiles of a PAN extent, their halos, MS windows and crop-back.

All windows are half-open ``(row0, row1, col0, col1)`` tuples in pixels. A tile's
core is the part of the output it owns; its read window is the core grown by
the halo and clipped to the extent; the MS window is the read window divided by
the ratio, exact because tile size, halo and extent are multiples of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import InvalidParameterError

Window = tuple[int, int, int, int]


@dataclass(frozen=True)
class Tile:
    """One tile of a :class:`TileGrid`.

    Attributes:
        index: ``(row, col)`` position of the tile in the grid.
        core: PAN window the tile writes.
        read: PAN window the tile reads (core plus halo, clipped).
        ms: MS window matching ``read``.
    """

    index: tuple[int, int]
    core: Window
    read: Window
    ms: Window

    @property
    def crop(self) -> tuple[slice, slice]:
        """Slices that cut the core out of an array covering ``read``."""
        r0, r1, c0, c1 = self.core
        rr0, _, rc0, _ = self.read
        return slice(r0 - rr0, r1 - rr0), slice(c0 - rc0, c1 - rc0)


@dataclass(frozen=True)
class TileGrid:
    """A regular grid of ``tile`` x ``tile`` PAN tiles over a ``height`` x ``width`` extent.

    Args:
        height, width: PAN extent in pixels (multiples of ``ratio``).
        tile: tile size in PAN pixels (a multiple of ``ratio``); edge tiles may be smaller.
        halo: context each tile reads around its core, in PAN pixels; rounded up to
            a multiple of ``ratio``.
        ratio: integer PAN/MS resolution ratio.
    """

    height: int
    width: int
    tile: int
    halo: int
    ratio: int

    def __post_init__(self) -> None:
        r = self.ratio
        if self.tile <= 0 or self.tile % r:
            raise InvalidParameterError(f"tile size {self.tile} must be a positive multiple of the ratio {r}")
        if self.height % r or self.width % r:
            raise InvalidParameterError(f"extent {self.height}x{self.width} is not a multiple of the ratio {r}")
        if self.halo < 0:
            raise InvalidParameterError(f"halo {self.halo} must not be negative")
        object.__setattr__(self, "halo", math.ceil(self.halo / r) * r)

    @property
    def shape(self) -> tuple[int, int]:
        """Number of tiles along rows and columns."""
        return math.ceil(self.height / self.tile), math.ceil(self.width / self.tile)

    def __len__(self) -> int:
        rows, cols = self.shape
        return rows * cols

    def __iter__(self) -> Iterator[Tile]:
        rows, cols = self.shape
        for i in range(rows):
            for j in range(cols):
                yield self[i, j]

    def __getitem__(self, index: tuple[int, int]) -> Tile:
        i, j = index
        rows, cols = self.shape
        if not (0 <= i < rows and 0 <= j < cols):
            raise IndexError(f"tile {index} outside a {rows}x{cols} grid")
        t, h, r = self.tile, self.halo, self.ratio
        core = (i * t, min((i + 1) * t, self.height), j * t, min((j + 1) * t, self.width))
        read = (
            max(core[0] - h, 0),
            min(core[1] + h, self.height),
            max(core[2] - h, 0),
            min(core[3] + h, self.width),
        )
        ms = (read[0] // r, read[1] // r, read[2] // r, read[3] // r)
        return Tile((i, j), core, read, ms)


def axis_chunks(length: int, size: int, min_last: int) -> tuple[int, ...]:
    """Chunk sizes of ``size`` along an axis of ``length``; a last chunk thinner than
    ``min_last`` joins its neighbour (so halos and blocks always fit inside one chunk)."""
    sizes = [size] * (length // size)
    rest = length - size * len(sizes)
    if rest:
        if sizes and rest < min_last:
            sizes[-1] += rest
        else:
            sizes.append(rest)
    return tuple(sizes)
