"""``pansharp-dist bench``: a run of the user's scene, timed per phase, with peak memory."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO

SAMPLE = REPO / "pansharp_dist" / "sample"


def test_bench_times_each_phase_of_runs_on_the_users_scene_and_leaves_nothing(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pansharp_dist.cli",
            "bench",
            "--pan",
            str(SAMPLE / "pan.tif"),
            "--ms",
            str(SAMPLE / "ms.tif"),
            "--method",
            "gsa",
            "--scheduler",
            "threads",
            "--repeats",
            "2",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["runs"] == 2 and len(summary["seconds_each"]) == 2 and summary["method"] == "gsa"
    ends = summary["phase_ends"]
    assert list(ends) == ["ingest", "fuse", "cog"] and 0 < ends["ingest"] <= ends["fuse"] <= ends["cog"]
    assert ends["cog"] <= summary["seconds"] * 1.5 and summary["megapixels_per_second"] > 0
    assert summary["peak_client_mib"] > 0 and summary["peak_worker_mib"] == 0  # threads: no worker process
    assert list(tmp_path.iterdir()) == []  # the timed outputs went to a temporary folder, now gone


def test_bench_refuses_a_bad_scene_in_one_line(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pansharp_dist.cli",
            "bench",
            "--pan",
            str(tmp_path / "missing.tif"),
            "--ms",
            str(SAMPLE / "ms.tif"),
            "--scheduler",
            "threads",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stderr.startswith("error:") and len(done.stderr.splitlines()) == 1
