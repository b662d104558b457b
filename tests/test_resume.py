"""resume.py: `--resume` refuses inputs or settings that changed, and a damaged saved adaptation."""

import hashlib
import json

import pytest
import rasterio
from conftest import GDAL_HPF, _one_error_line, cli, copy_raster


@pytest.mark.slow
def test_resume_refuses_inputs_or_settings_that_changed(tmp_path, inputs):
    work, out = tmp_path / "work", tmp_path / "o.tif"
    common = ["--pan", str(inputs[0]), "--ms", str(inputs[1]), "--out", str(out), "--work-dir", str(work)]
    assert cli("run", *common, "--json").returncode == 0
    record = json.loads((work / "o.run.json").read_text())
    assert record["inputs"]["pan"]["sha256"] == hashlib.sha256(inputs[0].read_bytes()).hexdigest()
    out.unlink()
    resumed = cli("run", *common, "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["computed_blocks"] == 0
    out.unlink()
    changed = cli("run", *common, "--resume", "--tile", "256")
    assert "setting tile changed" in _one_error_line(changed)
    with rasterio.open(inputs[0]) as src:
        pixels = src.read()
    pixels[0, :10, :10] += 1  # the same file name and size, another scene
    copy_raster(inputs[0], inputs[0], data=pixels)
    changed = cli("run", *common, "--resume")
    assert "input pan changed" in _one_error_line(changed) and not out.exists()


@pytest.mark.slow
def test_a_damaged_saved_adaptation_is_refused(tmp_path):
    work, out = tmp_path / "work", tmp_path / "o.tif"
    common = [
        "--pan",
        str(GDAL_HPF[0]),
        "--ms",
        str(GDAL_HPF[1]),
        "--out",
        str(out),
        "--work-dir",
        str(work),
        "--method",
        "fusionnet-wv3",
        "--device",
        "cpu",
        "--adapt-steps",
        "2",
        "--tile",
        "256",
    ]
    assert cli("run", *common, "--json").returncode == 0
    out.unlink()
    weights = work / "o.fusionnet-wv3.tailor.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(data))
    result = cli("run", *common, "--resume")
    assert "does not match its recorded SHA-256" in _one_error_line(result) and not out.exists()
