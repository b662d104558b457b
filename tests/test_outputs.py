"""outputs.py: what a run may replace: overwrites, outputs that are inputs, locks, work dirs, leftovers, full disk."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import _one_error_line, cli

from pansharp_dist.errors import OutputExistsError
from pansharp_dist.outputs import check_output, output_lock, remove_owned


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture()
def user_folder(tmp_path) -> Path:
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("field notes")
    (folder / "sub" / "scene.tif").write_bytes(os.urandom(4096))
    return folder


def test_overwrite_never_deletes_a_folder_it_did_not_write(tmp_path, user_folder, inputs):
    before = _digests(user_folder)
    result = cli("ingest", "--pan", str(inputs[0]), "--ms", str(inputs[1]), "--out", str(user_folder), "--overwrite")
    assert "did not write" in _one_error_line(result)
    result = cli("run", "--pan", str(inputs[0]), "--ms", str(inputs[1]), "--out", str(user_folder), "--overwrite")
    assert "is a folder" in _one_error_line(result)
    assert _digests(user_folder) == before
    with pytest.raises(OutputExistsError, match="did not write"):
        remove_owned(user_folder)
    assert _digests(user_folder) == before


def test_overwrite_replaces_the_projects_own_store(tmp_path, inputs):
    store = tmp_path / "s.zarr"
    for _ in range(2):
        result = cli("ingest", "--pan", str(inputs[0]), "--ms", str(inputs[1]), "--out", str(store), "--overwrite")
        assert result.returncode == 0, result.stderr
    assert (store / "zarr.json").is_file()


def test_a_work_dir_entry_that_is_the_users_folder_is_refused_not_deleted(tmp_path, user_folder, inputs):
    work = tmp_path / "work"
    work.mkdir()
    shutil.move(user_folder, work / "o.tiles.zarr")
    before = _digests(work)
    result = cli(
        "run",
        "--pan",
        str(inputs[0]),
        "--ms",
        str(inputs[1]),
        "--out",
        str(tmp_path / "o.tif"),
        "--work-dir",
        str(work),
    )
    assert "did not write" in _one_error_line(result)
    assert _digests(work) == before and not (tmp_path / "o.tif").exists()


@pytest.mark.parametrize("how", ["same path", "symlink", "hard link", "relative path"])
def test_an_output_that_is_an_input_is_refused_and_the_input_kept(tmp_path, inputs, how, monkeypatch):
    pan = inputs[0]
    before = pan.read_bytes()
    if how == "same path":
        out = pan
    elif how == "symlink":
        out = tmp_path / "link.tif"
        out.symlink_to(pan)
    elif how == "hard link":
        out = tmp_path / "hard.tif"
        os.link(pan, out)
    else:
        monkeypatch.chdir(pan.parent)
        out = Path(".") / ".." / pan.parent.name / pan.name
    result = cli("run", "--pan", str(pan), "--ms", str(inputs[1]), "--out", str(out), "--overwrite")
    assert "is also an input" in _one_error_line(result)
    assert pan.read_bytes() == before


def test_a_second_run_on_the_same_output_fails_at_once_and_leaves_the_first_alone(tmp_path, inputs):
    out = tmp_path / "o.tif"
    out.write_bytes(b"the first run's")
    with output_lock(out):
        result = cli("run", "--pan", str(inputs[0]), "--ms", str(inputs[1]), "--out", str(out), "--overwrite")
        assert "another run is writing" in _one_error_line(result)
        with output_lock(out):  # this process may take its own lock again (a run's COG writer does)
            pass
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                f"from pansharp_dist.outputs import output_lock\nwith output_lock({str(out)!r}): pass",
            ],
            capture_output=True,
            text=True,
        )
        assert other.returncode == 1 and "OutputLockedError" in other.stderr
    assert out.read_bytes() == b"the first run's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "o.tif"]  # the lock file went with the lock


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path, inputs):
    out = tmp_path / "o.tif"
    (tmp_path / ".o.tif.lock").write_text("4242\n")  # what a SIGKILLed run leaves: the file, no flock
    result = cli("run", "--pan", str(inputs[0]), "--ms", str(inputs[1]), "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "o.tif"]


def test_a_work_dir_that_is_a_file_or_read_only_is_one_error_line(tmp_path, inputs):
    common = ["--pan", str(inputs[0]), "--ms", str(inputs[1]), "--out", str(tmp_path / "o.tif")]
    file = tmp_path / "file"
    file.write_text("x")
    assert "is a file" in _one_error_line(cli("run", *common, "--work-dir", str(file)))
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o500)
        assert "not writable" in _one_error_line(cli("run", *common, "--work-dir", str(locked)))


def test_check_output_refuses_a_folder_where_a_file_goes(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(OutputExistsError, match="is a folder"):
        check_output(tmp_path / "d", overwrite=True)


def test_what_a_killed_run_left_beside_its_output_is_removed_by_the_next(tmp_path, inputs):
    out = tmp_path / "o.tif"
    left = [tmp_path / ".o.tif.parts-k1l2", tmp_path / ".o.tif.work-k3l4", tmp_path / ".o.tif.encode-k5l6"]
    for folder in left:  # the folders and files a SIGKILLed run leaves (the writers' own hidden names)
        (folder / "inner").mkdir(parents=True)
        (folder / "inner" / "part.0").write_bytes(b"\0" * 1024)
    (tmp_path / ".o.tif.partial-k7l8").write_bytes(b"II*\0 half a COG")
    (tmp_path / ".o.tif.lock").write_text("4242\n")
    result = cli("run", "--pan", str(inputs[0]), "--ms", str(inputs[1]), "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "o.tif"]


def test_a_full_disk_is_one_error_line_and_leaves_nothing(tmp_path, inputs):
    disk = tmp_path / "small"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode:
        pytest.skip(
            f"cannot mount a small tmpfs here ({mounted.stderr.decode().strip()}): "
            "needs root in a namespace that allows it"
        )
    try:
        result = cli("run", "--pan", str(inputs[0]), "--ms", str(inputs[1]), "--out", str(disk / "o.tif"))
        assert "No space left on device" in _one_error_line(result)
        assert list(disk.iterdir()) == []
    finally:
        subprocess.run(["umount", str(disk)], check=True)
