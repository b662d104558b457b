"""Bad input: a PansharpError subclass with a message that says what to do;
the CLI prints one line, exits 2 and leaves nothing behind."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import VHR, cli, copy_raster

from pansharp_dist import errors
from pansharp_dist.pipeline import run

PAN, MS = VHR


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*"))


def _ms_with(tmp_path, name, **updates):
    return copy_raster(MS, tmp_path / name, **updates)


def case_missing(tmp):
    return tmp / "nope.tif", MS


def case_truncated(tmp):
    data = PAN.read_bytes()
    (tmp / "trunc.tif").write_bytes(data[: len(data) // 2])
    return tmp / "trunc.tif", MS


def case_corrupt_header(tmp):
    (tmp / "garbage.tif").write_bytes(b"II*\x00" + bytes(range(256)) * 8)
    return tmp / "garbage.tif", MS


def case_multiband_pan(tmp):
    return MS, MS


def case_single_band_ms(tmp):
    return PAN, PAN


def case_crs_mismatch(tmp):
    return PAN, _ms_with(tmp, "ms_32650.tif", crs="EPSG:32650")


def case_no_overlap(tmp):
    with rasterio.open(MS) as s:
        t = s.transform
    return PAN, _ms_with(tmp, "ms_far.tif", transform=Affine.translation(10_000, 0) * t)


def case_non_integer_ratio(tmp):
    with rasterio.open(MS) as s:
        t = s.transform
    return PAN, _ms_with(tmp, "ms_25.tif", transform=Affine(t.a * 0.625, 0, t.c, 0, t.e * 0.625, t.f))


def case_unsupported_dtype(tmp):
    with rasterio.open(MS) as s:
        arr = s.read().astype(np.complex64)
    return PAN, copy_raster(MS, tmp / "ms_complex.tif", data=arr)


def case_all_nodata(tmp):
    with rasterio.open(PAN) as s:
        zeros = np.zeros((1, s.height, s.width), np.uint16)
    return copy_raster(PAN, tmp / "pan_empty.tif", data=zeros, nodata=0), MS


CASES = [
    (case_missing, errors.InputNotFoundError, "PAN file not found: .*nope.tif; check the path"),
    (case_truncated, errors.CorruptInputError, "trunc.tif is not a readable raster .*re-download"),
    (case_corrupt_header, errors.CorruptInputError, "garbage.tif is not a readable raster"),
    (case_multiband_pan, errors.BandCountError, "PAN .* has 4 bands; `pan` needs the single-band"),
    (case_single_band_ms, errors.BandCountError, "MS .* has 1 band; .*did you swap `pan` and `ms`"),
    (case_crs_mismatch, errors.CRSMismatchError, "PAN CRS \\(EPSG:32649\\) differs from MS CRS \\(EPSG:32650\\)"),
    (case_no_overlap, errors.NoOverlapError, "do not overlap .*check that they are the same scene"),
    (case_non_integer_ratio, errors.ResolutionRatioError, "resolution ratio of 2.5.*integer ratio"),
    (case_unsupported_dtype, errors.UnsupportedDtypeError, "data type complex64; supported are"),
    (case_all_nodata, errors.EmptySceneError, "every pixel of pan_empty is nodata"),
]


@pytest.mark.parametrize("make, error, message", CASES, ids=[c[0].__name__[5:] for c in CASES])
def test_bad_input_raises_a_clear_error_and_writes_nothing(tmp_path, make, error, message):
    inputs = tmp_path / "in"
    outdir = tmp_path / "out"
    inputs.mkdir(), outdir.mkdir()
    pan, ms = make(inputs)
    with pytest.raises(error, match=message) as info:
        run(pan, ms, outdir / "fused.tif", scheduler="local", workers=1)
    assert isinstance(info.value, errors.PansharpError)
    assert _listing(outdir) == []


@pytest.mark.parametrize("make, error, message", CASES[::3], ids=[c[0].__name__[5:] for c in CASES[::3]])
def test_cli_prints_one_line_exits_2_and_leaves_nothing(tmp_path, make, error, message):
    inputs = tmp_path / "in"
    inputs.mkdir()
    pan, ms = make(inputs)
    before = _listing(tmp_path)
    result = cli("run", "--pan", str(pan), "--ms", str(ms), "--out", str(tmp_path / "fused.tif"), "--workers", "1")
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert _listing(tmp_path) == before


def test_output_exists_without_overwrite(tmp_path):
    out = tmp_path / "fused.tif"
    out.write_bytes(b"precious")
    with pytest.raises(errors.OutputExistsError, match="already exists; pass `overwrite=True`"):
        run(PAN, MS, out)
    result = cli("run", "--pan", str(PAN), "--ms", str(MS), "--out", str(out))
    assert result.returncode == 2 and result.stderr.startswith("error:")
    assert out.read_bytes() == b"precious" and _listing(tmp_path) == ["fused.tif"]


def test_a_withheld_network_is_refused_before_any_work_with_the_reason(tmp_path):
    result = cli(
        "run",
        "--pan",
        str(PAN),
        "--ms",
        str(MS),
        "--out",
        str(tmp_path / "fused.tif"),
        "--method",
        "dicnn-qb",
        "--work-dir",
        str(tmp_path / "work"),
    )
    assert result.returncode == 2 and result.stderr.count("error:") == 1 and "Traceback" not in result.stderr
    assert "unknown method 'dicnn-qb'; choose one of brovey" in result.stderr and "is not shipped" in result.stderr
    assert "ingest" not in result.stderr and _listing(tmp_path) == []


def _unwritable_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    probe = folder / "probe"
    try:
        probe.touch()
    except PermissionError:
        return folder
    probe.unlink()  # running as root: permissions do not stop us; /proc refuses new files
    return Path("/proc")


def test_output_folder_not_writable(tmp_path):
    folder = _unwritable_folder(tmp_path)
    try:
        with pytest.raises(errors.OutputNotWritableError, match="cannot write to output folder"):
            run(PAN, MS, folder / "fused.tif")
        result = cli("run", "--pan", str(PAN), "--ms", str(MS), "--out", str(folder / "fused.tif"))
        assert result.returncode == 2 and result.stderr.count("error:") == 1
        assert not (folder / "fused.tif").exists()
    finally:
        if folder != Path("/proc"):
            folder.chmod(0o755)


def test_ingest_cli_refuses_existing_store(tmp_path):
    store = tmp_path / "scene.zarr"
    store.mkdir()
    result = cli("ingest", "--pan", str(PAN), "--ms", str(MS), "--out", str(store))
    assert result.returncode == 2 and "already exists; pass --overwrite" in result.stderr
    shutil.rmtree(store)
    assert not os.path.exists(store)


@pytest.mark.slow
def test_a_damaged_tile_store_stops_a_resumed_run_with_one_line(tmp_path):
    work, out = tmp_path / "work", tmp_path / "fused.tif"
    args = ("run", "--pan", str(PAN), "--ms", str(MS), "--out", str(out), "--work-dir", str(work), "--workers", "1")
    assert cli(*args).returncode == 0
    out.unlink()
    shutil.rmtree(work / "fused.hrms.zarr")
    shard = work / "fused.tiles.zarr" / "ms" / "c" / "0" / "0" / "0"
    data = shard.read_bytes()
    shard.write_bytes(data[:100] + bytes([data[100] ^ 0x01]) + data[101:])
    result = cli(*args, "--resume")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "fused.tiles.zarr: the ms data at MS rows 0:" in line and "is damaged" in line
    assert not out.exists()


def test_only_connection_timeout_and_transient_os_errors_are_worth_a_retry():
    assert errors.is_transient(ConnectionResetError()) and errors.is_transient(TimeoutError())
    assert not errors.is_transient(errors.CorruptInputError("damaged"))
    assert not errors.is_transient(FileNotFoundError())
