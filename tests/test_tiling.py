"""tiling.py: tile grids cover the extent once, with halos, MS windows and crop-back on the ratio."""

import pytest

from pansharp_dist.errors import InvalidParameterError
from pansharp_dist.tiling import TileGrid


def test_tile_grid_windows_cover_the_extent_once_and_align_with_ms():
    grid = TileGrid(height=100, width=72, tile=32, halo=6, ratio=4)
    assert grid.halo == 8  # rounded up to a multiple of the ratio
    assert grid.shape == (4, 3) and len(grid) == 12
    covered = [[0] * 72 for _ in range(100)]
    for t in grid:
        r0, r1, c0, c1 = t.core
        for r in range(r0, r1):
            for c in range(c0, c1):
                covered[r][c] += 1
        rr0, rr1, rc0, rc1 = t.read
        assert rr0 == max(r0 - 8, 0) and rr1 == min(r1 + 8, 100)
        assert t.ms == (rr0 // 4, rr1 // 4, rc0 // 4, rc1 // 4)
        assert all(v % 4 == 0 for v in t.read)
        rows, cols = t.crop
        assert (rows.stop - rows.start, cols.stop - cols.start) == (r1 - r0, c1 - c0)
    assert all(v == 1 for row in covered for v in row)
    assert grid[3, 2].core == (96, 100, 64, 72)


def test_tile_grid_rejects_sizes_off_the_ratio():
    with pytest.raises(InvalidParameterError, match="multiple of the ratio 4"):
        TileGrid(100, 100, 30, 8, 4)
    with pytest.raises(InvalidParameterError, match="not a multiple of the ratio"):
        TileGrid(101, 100, 32, 8, 4)
