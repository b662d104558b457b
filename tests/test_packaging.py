"""The package as users install it: a wheel built from the checkout holds what the documented commands need,
and the demo runs from it."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
import rasterio
from conftest import REPO
from test_pipeline import cog_valid


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_environment_runs_the_demo(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(REPO), "-w", str(dist)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("pansharp_dist-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"pansharp_dist/sample/pan.tif", "pansharp_dist/models/weights/fusionnet-wv3.safetensors"} <= set(names)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "License-Expression: Apache-2.0 AND GPL-2.0-only AND MIT" in metadata  # the GPL weights are declared

    env = tmp_path / "env"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    # the dependencies come from this test's environment, the package only from the wheel
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run(
        [python, "-c", "import pansharp_dist; print(pansharp_dist.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env=clean,
    ).stdout
    assert where.startswith(str(env))
    demo = subprocess.run(
        [env / "bin" / "pansharp-dist", "demo", "--out", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=clean,
    )
    # the README's first command: the headline (a network adapted by the Feature Tailor), quietly: bars and one
    # summary, a valid COG and a quicklook
    assert demo.returncode == 0, demo.stderr
    assert "valid COG: True" in demo.stdout and "pannet-qb" in demo.stdout and "Feature Tailor" in demo.stdout
    assert "warning" not in demo.stderr
    assert cog_valid(tmp_path / "demo" / "demo.tif")
    with rasterio.open(tmp_path / "demo" / "demo.png") as png:
        assert png.count == 3 and png.read().std() > 10
