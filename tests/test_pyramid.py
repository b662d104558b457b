"""The COG's pyramid encoded in the tasks that fuse the blocks, against the same COG encoded from an output store.

The two routes must give the same file, byte for byte, whatever lines up: blocks of 1, 2 or 4 pyramid
blocks, a last block of one row (whose overview rows must not exist), a COG window that reaches past the
fused pixels (padded in the fusing task) or far past them (blocks of nodata), or one that starts before the
fused grid (which takes the output store). A resumed encoding redoes only what is missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import DATA
from test_pipeline import cog_valid

from benchmarks.mosaic import mosaic_pair
from pansharp_dist.errors import InvalidParameterError, StoreError
from pansharp_dist.export import write_cog
from pansharp_dist.fusion import pansharpen
from pansharp_dist.pyramid import encode_output, first_levels, is_parts_store
from pansharp_dist.scene import open_scene
from pansharp_dist.store import LEDGER, finished_blocks, write_output

SAMPLE = Path(__file__).resolve().parents[1] / "pansharp_dist" / "sample"
LANDSAT = (DATA / "landsat_istanbul_toolkit" / "pan.tif", DATA / "landsat_istanbul_toolkit" / "ms.tif")


def _both_routes(hrms, tmp_path: Path, window, compress: str = "ZSTD:1") -> tuple[bytes, bytes]:
    """The COG of ``hrms`` encoded where it is fused, and from an output store of it."""
    fused = write_cog(hrms, tmp_path / "fused.tif", window=window, compress=compress)
    write_output(hrms, tmp_path / "hrms.zarr")
    stored = write_cog(tmp_path / "hrms.zarr", tmp_path / "stored.tif", window=window, compress=compress)
    assert cog_valid(fused)
    return fused.read_bytes(), stored.read_bytes()


@pytest.mark.parametrize(
    "size, block, levels",
    [
        (800, 2048, 3),  # the sample scene: one block
        pytest.param(2052, 1024, 2, marks=pytest.mark.slow),  # 4 rows past the last whole block; two passes
        (1537, 512, 1),  # 3 x 512 + 1: a last block of one row, which has no overview row
    ],
)
def test_tiles_encoded_where_they_are_fused_are_the_store_routes_bytes(size, block, levels, tmp_path):
    pair = (SAMPLE / "pan.tif", SAMPLE / "ms.tif")
    if size != 800:
        pair = mosaic_pair(*pair, size + -size % 4, tmp_path / "mosaic")  # the ratio's multiple, then cut
    hrms = pansharpen(open_scene(*pair), "brovey", tile=256, block=block)[:, :size, :size]
    height, width = hrms.shape[1:]
    assert first_levels(hrms.data.chunks, (0, height, 0, width), 9) == levels
    fused, stored = _both_routes(hrms, tmp_path, None)
    assert fused == stored


@pytest.mark.parametrize("extra, blocks", [((1, 0), 2), ((600, 2500), 12)], ids=["one-row-past", "a-block-of-nodata"])
def test_a_window_past_the_fused_pixels_is_nodata_there_on_either_route(extra, blocks, tmp_path):
    hrms = pansharpen(open_scene(*LANDSAT), "brovey", tile=128, block=512)  # 374 x 558: blocks 512 and 46 wide
    height, width = hrms.shape[1:]
    window = (0, height + extra[0], 0, width + extra[1])
    report = encode_output(hrms, tmp_path / "parts.zarr", compress="ZSTD:1", window=window)
    assert report.blocks == report.computed == blocks  # the two fused blocks, and the 512-blocks past them
    fused, stored = _both_routes(hrms, tmp_path, window)
    assert fused == stored


def test_a_window_that_starts_before_the_fused_grid_takes_the_output_store(tmp_path):
    hrms = pansharpen(open_scene(*LANDSAT), "brovey", tile=128, block=512)
    height, width = hrms.shape[1:]
    window = (-1, height + 1, -1, width)  # the scene's union extent
    assert first_levels(hrms.data.chunks, window, 2) is None
    report = encode_output(hrms, tmp_path / "h.zarr", compress="ZSTD:1", window=window)
    assert not is_parts_store(tmp_path / "h.zarr") and report.computed == report.blocks
    fused, stored = _both_routes(hrms, tmp_path, window)
    assert fused == stored


def test_a_resumed_encoding_redoes_only_the_blocks_whose_ledger_entry_or_parts_are_gone_or_damaged(tmp_path):
    hrms = pansharpen(open_scene(SAMPLE / "pan.tif", SAMPLE / "ms.tif"), "brovey", tile=256, block=512)
    parts = tmp_path / "parts.zarr"
    first = encode_output(hrms, parts, compress="ZSTD:1")
    assert first.blocks == first.computed == 4 and finished_blocks(parts) == {(0, 0), (0, 512), (512, 0), (512, 512)}
    whole = write_cog(parts, tmp_path / "whole.tif", compress="ZSTD:1").read_bytes()

    (parts / LEDGER / "0_512").unlink()  # a block whose task died before its ledger entry
    (parts / LEDGER / ".512_512.k1l2").write_text("{")  # a ledger entry a killed task left half written
    lost = json.loads((parts / LEDGER / "512_0").read_text())["tiles"][0][3]
    (parts / "parts" / lost).write_bytes(b"")  # a block whose part was cut short
    with pytest.raises(StoreError, match="lacks 2 encoded COG tiles .*resume"):
        write_cog(parts, tmp_path / "short.tif", compress="ZSTD:1")
    assert not (tmp_path / "short.tif").exists()
    assert finished_blocks(parts) == {(0, 0), (512, 0), (512, 512)}  # the half-written entry is not one
    flipped = parts / "parts" / json.loads((parts / LEDGER / "512_512").read_text())["tiles"][0][3]
    data = bytearray(flipped.read_bytes())
    data[100] ^= 0x10
    flipped.write_bytes(bytes(data))  # a block whose part changed on disk, its size the same

    again = encode_output(hrms, parts, compress="ZSTD:1", resume=True)
    assert (again.blocks, again.computed) == (4, 3)
    assert write_cog(parts, tmp_path / "resumed.tif", compress="ZSTD:1").read_bytes() == whole

    with pytest.raises(StoreError, match="other settings .*codec"):
        encode_output(hrms, parts, compress="ZSTD:9", resume=True)
    with pytest.raises(InvalidParameterError, match="encoded as ZSTD:1 .* not as DEFLATE:6"):
        write_cog(parts, tmp_path / "other.tif", compress="DEFLATE:6")


def test_an_assembly_run_again_writes_the_same_file(tmp_path):
    """A COG whose levels below the first pass make sums of their own (5 levels, the first pass encoding 1):
    a second assembly of the same parts (a retried task, a resumed run) makes them again."""
    hrms = pansharpen(open_scene(*LANDSAT), "brovey", tile=128, block=512)
    parts = tmp_path / "parts.zarr"
    encode_output(hrms, parts, compress="ZSTD:1", window=(0, 374, 0, 4608))
    first = write_cog(parts, tmp_path / "first.tif", compress="ZSTD:1")
    with rasterio.open(first) as src:
        assert len(src.overviews(1)) == 4
    assert write_cog(parts, tmp_path / "again.tif", compress="ZSTD:1").read_bytes() == first.read_bytes()


def test_the_fusing_tasks_pixels_reach_the_cog_unchanged(tmp_path):
    """Full resolution read back from the COG equals the computed output (the encode is lossless)."""
    hrms = pansharpen(open_scene(SAMPLE / "pan.tif", SAMPLE / "ms.tif"), "gsa", tile=256, block=512)
    out = write_cog(hrms, tmp_path / "gsa.tif", compress="ZSTD:1")
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(), hrms.values)
