"""classical.py: Brovey refuses a PAN and an MS in different units; GSA, which matches them, runs."""

import numpy as np
import pytest
import rasterio
from conftest import _one_error_line, cli, copy_raster


@pytest.mark.slow  # three CLI processes, one a run
def test_brovey_refuses_pan_and_ms_in_different_units(tmp_path, inputs):
    from conftest import VHR

    with rasterio.open(VHR[1]) as src:
        ms8 = (src.read() // 8).astype(np.uint8)  # the same scene's MS as 8-bit counts beside a 16-bit PAN
    ms = copy_raster(VHR[1], tmp_path / "ms8.tif", data=ms8)
    result = cli("run", "--pan", str(VHR[0]), "--ms", str(ms), "--out", str(tmp_path / "b.tif"))
    assert "uint16 and the MS uint8" in _one_error_line(result) and "gsa" in result.stderr
    result = cli("run", "--pan", str(VHR[0]), "--ms", str(ms), "--out", str(tmp_path / "g.tif"), "--method", "gsa")
    assert result.returncode == 0, result.stderr
    with rasterio.open(tmp_path / "g.tif") as cog:
        assert (cog.read() == 255).mean() < 0.01  # GSA matches the PAN to the MS: nothing saturates
    with rasterio.open(inputs[1]) as src:
        scaled = src.read() * 100  # the same float MS, in other units than its PAN
    copy_raster(inputs[1], inputs[1], data=scaled)
    result = cli("run", "--pan", str(inputs[0]), "--ms", str(inputs[1]), "--out", str(tmp_path / "f.tif"))
    assert result.returncode == 2 and "not in the same units" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "f.tif").exists()
