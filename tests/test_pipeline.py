"""End to end: real LocalCluster and real dask scheduler/worker processes, real COGs."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import GDAL_HPF, REPO, VHR, cli, read_cog

from pansharp_dist import open_scene, write_cog
from pansharp_dist.fusion import OutputSpec, make_fuser, pansharpen, render
from pansharp_dist.pipeline import run
from pansharp_dist.store import write_output

BIN = Path(sys.executable).parent


def cog_valid(path: Path) -> bool:
    result = subprocess.run(
        [str(BIN / "rio"), "cogeo", "validate", "--strict", str(path)], capture_output=True, text=True
    )
    return result.returncode == 0 and "is a valid cloud optimized GeoTIFF" in result.stdout


@pytest.mark.slow
def test_cli_run_writes_a_valid_georeferenced_cog_equal_to_a_single_pass(tmp_path):
    out = tmp_path / "hpf.tif"
    result = cli(
        "run",
        "--pan",
        str(GDAL_HPF[0]),
        "--ms",
        str(GDAL_HPF[1]),
        "--out",
        str(out),
        "--method",
        "gsa",
        "--tile",
        "128",
        "--workers",
        "2",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["output"] == str(out) and report["bytes"] == out.stat().st_size
    assert report["method"] == "gsa" and report["tiles"] == 5 * 5 and report["seconds"] > 0
    assert cog_valid(out)
    pixels, meta = read_cog(out)
    scene = open_scene(*GDAL_HPF)
    with rasterio.open(GDAL_HPF[0]) as pan:  # the output is on the PAN raster's grid (the default extent)
        assert meta["crs"] == pan.crs and meta["transform"].almost_equals(pan.transform)
        assert pixels.shape[1:] == pan.shape and (report["height"], report["width"]) == pan.shape
    assert np.isnan(meta["nodata"]) and meta["blocks"][0] == (512, 512) and meta["overviews"] == [2]  # float32
    expected = render(make_fuser(scene, "gsa"), scene.pan.values, scene.ms.values, OutputSpec.for_scene(scene))
    np.testing.assert_array_equal(pixels[:, 1:573, 2:578], expected)  # the MS starts 1 row, 2 columns in
    pixels[:, 1:573, 2:578] = np.nan
    assert np.isnan(pixels).all()  # nodata where the MS does not reach
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hpf.tif"]  # work stores cleaned up


@pytest.mark.slow
def test_cli_shows_progress_and_keeps_stores_in_a_named_work_dir(tmp_path):
    work = tmp_path / "work"
    result = cli(
        "run",
        "--pan",
        str(VHR[0]),
        "--ms",
        str(VHR[1]),
        "--out",
        str(tmp_path / "v.tif"),
        "--tile",
        "256",
        "--workers",
        "1",
        "--work-dir",
        str(work),
    )
    assert result.returncode == 0, result.stderr
    assert all(phase in result.stderr for phase in ("ingest", "fuse", "cog"))
    assert sorted(p.name for p in work.iterdir()) == ["v.hrms.zarr", "v.run.json", "v.tiles.zarr"]


def test_python_api_is_lazy_and_mirrors_the_cli(tmp_path, client):
    scene = open_scene(*VHR)
    hrms = pansharpen(scene, "mtf-glp-hpm", client=client, tile=256)
    assert hrms.dims == ("band", "y", "x") and hrms.shape == (4, 800, 800)
    assert hrms.chunks is not None and hrms.rio.crs == scene.crs
    cog = write_cog(hrms, tmp_path / "api.tif", client=client)
    assert cog_valid(cog) and sorted(p.name for p in tmp_path.iterdir()) == ["api.tif"]
    write_output(hrms, tmp_path / "h.zarr", client)
    assert write_cog(tmp_path / "h.zarr", tmp_path / "again.tif").stat().st_size == cog.stat().st_size
    pixels, meta = read_cog(cog)
    assert meta["transform"].almost_equals(scene.transform) and pixels.dtype == np.uint16
    np.testing.assert_array_equal(pixels, hrms.values)


def test_overwrite_replaces_an_existing_output(tmp_path, client):
    out = tmp_path / "o.tif"
    out.write_bytes(b"old")
    report = run(*VHR, out, client=client, overwrite=True, tile=256)
    assert report.bytes == out.stat().st_size > 3 and cog_valid(out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_joining_an_existing_scheduler_gives_the_same_cog(tmp_path, dask_processes):
    local, remote = tmp_path / "local.tif", tmp_path / "remote.tif"
    common = ["--pan", str(VHR[0]), "--ms", str(VHR[1]), "--method", "brovey", "--tile", "256"]
    r1 = cli("run", *common, "--out", str(remote), "--scheduler", dask_processes.address, "--json")
    assert r1.returncode == 0, r1.stderr
    r2 = cli("run", *common, "--out", str(local), "--workers", "1", "--json")
    assert r2.returncode == 0, r2.stderr
    assert cog_valid(remote)
    np.testing.assert_array_equal(read_cog(remote)[0], read_cog(local)[0])


@pytest.mark.slow
def test_unreachable_scheduler_is_a_clear_error(tmp_path):
    result = cli(
        "run",
        "--pan",
        str(VHR[0]),
        "--ms",
        str(VHR[1]),
        "--out",
        str(tmp_path / "x.tif"),
        "--scheduler",
        f"tcp://127.0.0.1:{_free_port()}",
    )
    assert result.returncode == 2 and "could not reach the Dask scheduler" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_uncompressed_cog_has_the_same_pixels_and_unknown_compressions_are_refused(tmp_path, client):
    zstd, raw = tmp_path / "zstd.tif", tmp_path / "raw.tif"
    run(*GDAL_HPF, zstd, method="brovey", tile=128, client=client)
    run(*GDAL_HPF, raw, method="brovey", tile=128, client=client, compress="NONE")
    assert cog_valid(raw)
    with rasterio.open(raw) as a, rasterio.open(zstd) as b:
        assert a.compression is None and b.compression.name == "zstd"
        np.testing.assert_array_equal(a.read(), b.read())
    result = cli(
        "run",
        "--pan",
        str(GDAL_HPF[0]),
        "--ms",
        str(GDAL_HPF[1]),
        "--out",
        str(tmp_path / "x.tif"),
        "--compress",
        "LZMA9",
    )
    assert result.returncode == 2 and "--compress is CODEC or CODEC:LEVEL" in result.stderr and "LZMA9" in result.stderr
    assert not (tmp_path / "x.tif").exists()


def test_a_small_scene_runs_in_this_process_and_writes_the_bytes_of_a_cluster_run(tmp_path, client):
    threads, cluster = tmp_path / "threads.tif", tmp_path / "cluster.tif"
    run(*GDAL_HPF, threads, method="brovey", tile=128, scheduler="threads")
    run(*GDAL_HPF, cluster, method="brovey", tile=128, client=client)
    assert threads.read_bytes() == cluster.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster.tif", "threads.tif"]


@pytest.mark.slow
def test_a_network_adapted_in_this_process_writes_the_bytes_of_a_cluster_run(tmp_path, client):
    from pansharp_dist.adapt.options import AdaptOptions

    threads, cluster = tmp_path / "threads.tif", tmp_path / "cluster.tif"
    common = dict(method="fusionnet-wv3", tile=256, device="cpu", adapt_options=AdaptOptions(steps=3))
    a = run(*GDAL_HPF, threads, scheduler="threads", **common)
    b = run(*GDAL_HPF, cluster, client=client, **common)
    assert a.adaptation["losses"] == b.adaptation["losses"] and len(a.adaptation["losses"]) == 3
    assert threads.read_bytes() == cluster.read_bytes()


def _modules_after(code: str) -> list[str]:
    """Which of torch, distributed and prefect a fresh interpreter has imported after ``code``."""
    probe = f"{code}\nimport sys\nprint(sorted(m for m in ('torch', 'distributed', 'prefect') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().replace("'", '"'))


def test_importing_the_package_and_the_cli_loads_no_heavy_library():
    assert _modules_after("import pansharp_dist, pansharp_dist.cli, pansharp_dist.pipeline") == []
    assert _modules_after("import pansharp_dist as p; p.open_scene, p.run, p.method_names('network')") == []


def test_a_classical_run_does_not_load_torch(tmp_path):
    code = f"import pansharp_dist as p; p.run({str(GDAL_HPF[0])!r}, {str(GDAL_HPF[1])!r}, {str(tmp_path / 'b.tif')!r})"
    assert "torch" not in _modules_after(code)  # dask itself imports distributed once it builds a graph
    assert cog_valid(tmp_path / "b.tif")


@pytest.mark.slow  # two runs and a CLI process
def test_another_output_dtype_keeps_the_values_in_the_ms_units(tmp_path):
    from pansharp_dist.errors import InvalidParameterError

    sample = REPO / "pansharp_dist" / "sample"
    native, wide = tmp_path / "native.tif", tmp_path / "float.tif"
    run(sample / "pan.tif", sample / "ms.tif", native, method="gsa", scheduler="threads")
    run(sample / "pan.tif", sample / "ms.tif", wide, method="gsa", scheduler="threads", dtype="float32")
    with rasterio.open(native) as a, rasterio.open(wide) as b:
        counts, values = a.read(), b.read()
        assert a.dtypes[0] == "uint16" and a.nodata == 0 and b.dtypes[0] == "float32" and np.isnan(b.nodata)
    valid = counts != 0
    assert (np.isnan(values) == ~valid).all()
    assert np.abs(np.clip(np.rint(values[valid]), 1, None) - counts[valid]).max() == 0  # the same, unrounded
    with pytest.raises(InvalidParameterError, match="would be rounded away in uint16; keep a float `dtype`"):
        run(*GDAL_HPF, tmp_path / "counts.tif", scheduler="threads", dtype="uint16")  # a float32 MS
    result = cli(
        "run", "--pan", str(GDAL_HPF[0]), "--ms", str(GDAL_HPF[1]), "--out", str(tmp_path / "x.tif"), "--dtype", "int16"
    )
    assert result.returncode == 2 and "keep a float --dtype" in result.stderr and not (tmp_path / "x.tif").exists()
