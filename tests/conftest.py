"""Shared fixtures: the real data beside the repo, a real LocalCluster, the real CLI, private copies of inputs."""

from __future__ import annotations

import inspect
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

# One OpenMP/BLAS thread in every process the tests start (pytest's, its clusters' workers, the CLI's), set
# before torch or numpy loads: two test processes on two cores, each with a two-worker cluster, would
# otherwise run four times as many threads as cores, and OpenMP threads that wait for a core spin.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import rasterio  # noqa: E402

from benchmarks.dask_processes import DaskProcesses  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
GDAL_HPF = (DATA / "gdal_hpf_wv3" / "pan.tif", DATA / "gdal_hpf_wv3" / "mul.tif")
VHR = (DATA / "vhr_china_toolkit" / "pan.tif", DATA / "vhr_china_toolkit" / "ms.tif")
WV2_MAT = DATA / "grip_unina_pnn" / "imgWV2.mat"
QB = (DATA / "msdcnn_quickbird" / "QB-PAN.tif", DATA / "msdcnn_quickbird" / "QB-MS.tif")
ONE_PER_ARCH = ("fusionnet-qb", "pannet-qb", "dicnn-wv2", "pnn-ge1")
"""A shipped network of each architecture; there is no 4-band DiCNN, so dicnn-wv2 runs on ``WV2_MAT``."""
LANDSAT = (DATA / "pansharpen_r_landsat8" / "pan_example.tif", DATA / "pansharpen_r_landsat8" / "ms_example.tif")


def pytest_configure(config):
    warnings.filterwarnings("ignore", module="rasterio")


def _under_data(value: object, depth: int = 0) -> bool:
    """Whether ``value`` is a path under ``../shared`` (the data, the weights), or holds one (tuples, lists,
    dicts a few levels deep)."""
    if isinstance(value, Path):
        return value == DATA.parent or DATA.parent in value.parents
    if depth < 3 and isinstance(value, (tuple, list, set)):
        return any(_under_data(v, depth + 1) for v in value)
    if depth < 3 and isinstance(value, dict):
        return any(_under_data(v, depth + 1) for v in value.values())
    return False


def _needs_shared_data(item: pytest.Item) -> bool:
    """Whether ``item`` reads ``DATA``: a parameter is a path under it, or the test, one of its fixtures or a
    callable parameter names a module-level value that is (``GDAL_HPF``, a table of scenes...)."""
    module = getattr(item, "module", None)
    spaces = [globals(), vars(module) if module is not None else {}]
    names = {"DATA", "shared_data"} | {n for space in spaces for n, v in space.items() if _under_data(v)}
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, sorted(names))) + r")\b")
    params = getattr(getattr(item, "callspec", None), "params", {})
    if any(_under_data(value) for value in params.values()):
        return True
    fixtures = getattr(item, "_fixtureinfo", None)
    definitions = fixtures.name2fixturedefs if fixtures is not None else {}
    functions = [getattr(item, "function", None), *(v for v in params.values() if callable(v))]
    functions += [d.func for name in item.fixturenames for d in definitions.get(name, ())]
    for function in functions:
        try:
            if function is not None and pattern.search(inspect.getsource(function)):
                return True
        except (OSError, TypeError):
            continue
    return False


def pytest_collection_modifyitems(config, items):
    """Without ``../shared/data`` beside the checkout, the tests that read its real scenes are skipped with
    that reason; the others (the embedded sample, data built in the test) still run."""
    if DATA.is_dir():
        return
    skip = pytest.mark.skip(reason=f"needs the real scenes in {DATA} (../shared/data beside the checkout)")
    for item in items:
        if _needs_shared_data(item):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def client():
    """A real two-worker LocalCluster, one thread each (this machine's 2 cores)."""
    from pansharp_dist.cluster import connect

    with connect("local", workers=2) as c:
        yield c


def cli(*args: str, timeout: int = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the installed ``pansharp-dist`` console script (with ``env`` added to the environment)."""
    exe = shutil.which("pansharp-dist", path=str(Path(sys.executable).parent)) or "pansharp-dist"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, env=env)


def _one_error_line(result) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and "━" not in line]  # bars of earlier phases
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.fixture()
def inputs(tmp_path) -> tuple[Path, Path]:
    """A private copy of the gdal_hpf_wv3 pair (the tests edit or link to it)."""
    folder = tmp_path / "in"
    folder.mkdir()
    return tuple(Path(shutil.copy(src, folder / src.name)) for src in GDAL_HPF)


def copy_raster(src: Path, dst: Path, *, data=None, **profile_updates) -> Path:
    """Write a copy of ``src`` at ``dst`` with an altered profile and/or data."""
    with rasterio.open(src) as s:
        profile = s.profile
        arr = s.read() if data is None else data
    profile.update(**profile_updates)
    profile.update(count=arr.shape[0], dtype=str(arr.dtype))
    with rasterio.open(dst, "w", **profile) as d:
        d.write(arr)
    return dst


def read_cog(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as src:
        return src.read(), {
            "crs": src.crs,
            "transform": src.transform,
            "nodata": src.nodata,
            "blocks": src.block_shapes,
            "overviews": src.overviews(1),
            "dtype": src.dtypes[0],
        }


@pytest.fixture()
def dask_processes(tmp_path):
    procs = DaskProcesses(tmp_path)
    yield procs
    procs.close()
