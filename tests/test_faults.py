"""Faults and bad input: nothing lost (overwriting, outputs that are inputs, two runs on one output, resuming
after the inputs changed, a damaged saved adaptation), no root escaped (encoded URLs, VRTs and sidecars,
catalogue links and ids), no secret shown. Real files, real CLI processes, a real HTTP server."""

import errno
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from conftest import DATA, GDAL_HPF, cli, copy_raster

from pansharp_dist.catalog import HrefPolicy, ItemLedger, ItemRecord, safe_name, scan_catalog
from pansharp_dist.errors import HrefRefusedError, InputNotFoundError, OutputExistsError
from pansharp_dist.outputs import check_output, output_lock, remove_owned
from pansharp_dist.redact import redact_exception, redact_href, redact_logs, redact_text


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _one_error_line(result) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and "━" not in line]  # bars of earlier phases
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.fixture()
def user_folder(tmp_path) -> Path:
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("field notes")
    (folder / "sub" / "scene.tif").write_bytes(os.urandom(4096))
    return folder


@pytest.fixture()
def inputs(tmp_path) -> tuple[Path, Path]:
    """A private copy of the gdal_hpf_wv3 pair (the tests edit or link to it)."""
    folder = tmp_path / "in"
    folder.mkdir()
    return tuple(Path(shutil.copy(src, folder / src.name)) for src in GDAL_HPF)


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


# --------------------------------------------------------------------------- escapes and secrets


@pytest.fixture()
def served(tmp_path):
    """An HTTP server (a process of its own) of ``tmp_path/www``: a ``scenes`` folder, and a ``secret.tif``
    beside it; yields its base URL and a function giving the paths requested so far."""
    root, log = tmp_path / "www", tmp_path / "requests.log"
    (root / "scenes").mkdir(parents=True)
    shutil.copy(GDAL_HPF[0], root / "scenes" / "pan.tif")
    shutil.copy(GDAL_HPF[0], root / "secret.tif")
    log.touch()
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("range_server.py")), str(root), str(log)],
        stdout=subprocess.PIPE,
        text=True,
    )
    port = int(server.stdout.readline())
    yield f"http://127.0.0.1:{port}", lambda: log.read_text().split()
    server.terminate()
    server.wait(timeout=10)


@pytest.mark.parametrize("escape", ["%2e%2e", "%2E%2E", ".%2e", "%2e.", "..%2f..", "%252e%252e", "..\\", "..%5c"])
def test_encoded_escapes_from_an_http_root_are_refused_before_any_request(served, escape):
    base, requested = served
    policy = HrefPolicy((f"{base}/scenes/",))
    assert policy.check_raster(f"{base}/scenes/pan.tif")  # the root itself is served and readable
    before = requested()
    assert before and all(path.startswith("/scenes/") for path in before)
    with pytest.raises(HrefRefusedError):
        policy.check_raster(f"{base}/scenes/{escape}/secret.tif")
    assert requested() == before  # nothing more was fetched, inside the root or out of it


def test_a_vrt_or_a_sidecar_that_reads_outside_the_root_is_refused(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    secret = Path(shutil.copy(GDAL_HPF[0], outside / "secret.tif"))
    with rasterio.open(secret) as src:
        width, height = src.width, src.height
    (root / "scene.vrt").write_text(
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}"><VRTRasterBand dataType="Float32" band="1">'
        f'<SimpleSource><SourceFilename relativeToVRT="0">{secret}</SourceFilename><SourceBand>1</SourceBand>'
        "</SimpleSource></VRTRasterBand></VRTDataset>"
    )
    policy = HrefPolicy((str(root),))
    with pytest.raises(HrefRefusedError, match="VRT"):
        policy.check_raster(str(root / "scene.vrt"))
    pan = Path(shutil.copy(GDAL_HPF[0], root / "pan.tif"))
    assert policy.check_raster(str(pan))
    (root / "pan.tif.ovr").symlink_to(secret)  # GDAL reads a .ovr beside a GeoTIFF as its overviews
    with pytest.raises(HrefRefusedError, match="outside the allowed roots"):
        policy.check_raster(str(pan))


def test_no_error_log_or_ledger_shows_a_credential(tmp_path, caplog):
    href = "https://ana:pa;ss,w@rd@store.example/scenes/pan.tif?X-Amz-Signature=s3cr3t&X-Amz-Credential=AKIA"
    for text in (
        str(InputNotFoundError(f"PAN not found: {href}; check the URL")),
        redact_text(f"failed: {href}, retry"),
        redact_href(href),
    ):
        assert "pa;ss" not in text and "s3cr3t" not in text and "AKIA" not in text and "store.example" in text
    assert redact_href("https://u:p@host.example:99999/x.tif") == "https://host.example:99999/x.tif"  # never fails
    redact_logs()
    with caplog.at_level(logging.INFO):
        logging.getLogger("prefect.flow_runs").info("reading %s", href)
    assert "s3cr3t" not in caplog.text and "pa;ss" not in caplog.text
    error = redact_exception(OSError(errno.ECONNRESET, f"reset by {href}"))
    assert error.errno == errno.ECONNRESET and "s3cr3t" not in str(error)


def test_catalogue_ids_links_and_bad_hrefs_are_handled_item_by_item(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    catalog = pystac.Catalog("scenes", "real pairs")
    for item_id, pan in (
        ("good", str(GDAL_HPF[0])),
        ("evil", str(GDAL_HPF[0])),
        ("bad-port", "https://host.example:99999/pan.tif"),
    ):
        item = pystac.Item(item_id, geometry=None, bbox=None, datetime=datetime(2024, 1, 1), properties={})
        item.add_asset("pan", pystac.Asset(pan, roles=["data"]))
        item.add_asset("ms", pystac.Asset(str(GDAL_HPF[1]), roles=["data"]))
        catalog.add_item(item)
    catalog.normalize_and_save(str(root / "catalog"), catalog_type=pystac.CatalogType.SELF_CONTAINED)
    elsewhere = pystac.Catalog("elsewhere", "a catalogue outside the roots")
    elsewhere.normalize_and_save(str(outside), catalog_type=pystac.CatalogType.SELF_CONTAINED)
    evil = root / "catalog" / "evil" / "evil.json"  # an id pystac would not save as such: written by hand
    evil.write_text(evil.read_text().replace('"id": "evil"', '"id": "../../escape"'))
    top = json.loads((root / "catalog" / "catalog.json").read_text())
    top["links"].append({"rel": "child", "href": str(outside / "catalog.json"), "type": "application/json"})
    (root / "catalog" / "catalog.json").write_text(json.dumps(top))
    policy = HrefPolicy((str(root), str(GDAL_HPF[0].parent)))
    scenes, skipped = scan_catalog(str(root / "catalog" / "catalog.json"), policy)
    assert sorted(s.item_id for s in scenes) == ["../../escape", "bad-port", "good"]
    assert len(skipped) == 1 and "outside the allowed roots" in skipped[0]
    assert {safe_name(s.item_id) for s in scenes} == {"good", "___.._escape", "bad-port"}
    with pytest.raises(HrefRefusedError):
        policy.check(next(s for s in scenes if s.item_id == "bad-port").pan)
    ledger = ItemLedger(tmp_path / "ledger")
    ledger.put(ItemRecord("../../escape", None, {}, "v", "m"))
    ledger.checksum(str(GDAL_HPF[0]))  # writes the ledger's checksum cache beside the records
    assert [r.item_id for r in ledger.records()] == ["../../escape"]
    assert sorted(p.name for p in (tmp_path / "ledger").iterdir()) == [".checksums.json", "___.._escape.json"]


# --------------------------------------------------------------------------- bad numbers and parameters


def test_nan_and_inf_inputs_are_nodata_and_do_not_spread(tmp_path, inputs):
    with rasterio.open(inputs[0]) as src:
        pan = src.read()
    with rasterio.open(inputs[1]) as src:
        ms = src.read()
    pan[0, 300, 300] = np.inf
    ms[:, 40, 60] = np.nan
    copy_raster(inputs[0], inputs[0], data=pan)
    copy_raster(inputs[1], inputs[1], data=ms)
    for method in ("brovey", "mtf-glp-hpm"):
        out = tmp_path / f"{method}.tif"
        result = cli("run", "--pan", str(inputs[0]), "--ms", str(inputs[1]), "--out", str(out), "--method", method)
        assert result.returncode == 0, result.stderr
        with rasterio.open(out) as cog:
            fused, nodata = cog.read(), cog.nodata
        assert np.isnan(nodata)  # float output: NaN, not 0, marks nodata
        bad = np.isnan(fused).any(axis=0)
        assert bad.sum() == 1 + 16  # the Inf PAN pixel and the 4 x 4 PAN pixels under the NaN MS pixel
        assert np.isfinite(fused[:, ~bad]).all()


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


@pytest.mark.parametrize(
    "args, flag, words",
    [
        (["--weights", "nan"], "--weights", "8 weights"),
        (["--weights", "nan,1,1,1,1,1,1,1"], "--weights", "finite"),
        (["--weights", "0,0,0,0,0,0,0,0"], "--weights", "not all zero"),
        (["--tile", "0"], "--tile", "positive"),
        (["--tile", "-64"], "--tile", "positive"),
        (["--tile", "510"], "--tile", "use a tile size of 128, 256, 512 or 1024"),
        (["--task-mp", "inf"], "--task-mp", "finite"),
        (["--task-mp", "nan"], "--task-mp", "finite"),
    ],
)
def test_parameters_out_of_range_name_their_flag_before_any_work(tmp_path, inputs, args, flag, words):
    result = cli("run", "--pan", str(inputs[0]), "--ms", str(inputs[1]), "--out", str(tmp_path / "o.tif"), *args)
    line = _one_error_line(result)
    assert line.startswith(f"error: {flag}: ") and words in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # refused before the ingest: nothing written


def test_adaptation_parameters_out_of_range_are_refused(tmp_path):
    for args, flag in (
        (["--tiles", "0"], "--tiles"),
        (["--steps", "0"], "--steps"),
        (["--seconds", "nan"], "--seconds"),
    ):
        result = cli(
            "adapt",
            "--zarr",
            str(tmp_path / "none.zarr"),
            "--model",
            "fusionnet-wv3",
            "--out",
            str(tmp_path / "t.safetensors"),
            *args,
        )
        assert _one_error_line(result).startswith(f"error: {flag}: ")


def test_a_ratio_3_pair_is_told_which_tile_sizes_work(tmp_path):
    from rasterio.warp import Resampling, reproject

    with rasterio.open(GDAL_HPF[0]) as src:  # the real pair, its MS resampled to 3 PAN pixels a pixel
        pan_profile, pan_transform, (h, w) = src.profile, src.transform, (src.height // 3 * 3, src.width // 3 * 3)
        pan = src.read(window=((0, h), (0, w)))
    with rasterio.open(GDAL_HPF[1]) as src:
        ms = np.zeros((src.count, h // 3, w // 3), np.float32)
        ms_transform = pan_transform * pan_transform.scale(3)
        reproject(
            src.read(),
            ms,
            src_transform=src.transform,
            src_crs=src.crs,
            dst_transform=ms_transform,
            dst_crs=src.crs,
            resampling=Resampling.average,
        )
        ms_profile = src.profile
    pan_path, ms_path = tmp_path / "pan3.tif", tmp_path / "ms3.tif"
    with rasterio.open(pan_path, "w", **{**pan_profile, "width": w, "height": h, "tiled": False}) as dst:
        dst.write(pan)
    with rasterio.open(
        ms_path, "w", **{**ms_profile, "width": w // 3, "height": h // 3, "transform": ms_transform, "tiled": False}
    ) as dst:
        dst.write(ms)
    common = ["--pan", str(pan_path), "--ms", str(ms_path)]
    refused = cli("run", *common, "--out", str(tmp_path / "a.tif"))
    assert "not a multiple of the resolution ratio 3; use a tile size of 192, 384 or 768" in _one_error_line(refused)
    fitted = cli("run", *common, "--out", str(tmp_path / "b.tif"), "--tile", "384", "--json")
    assert fitted.returncode == 0, fitted.stderr and json.loads(fitted.stdout)["ratio"] == 3


def test_an_unforeseen_error_is_one_line_exit_1_and_no_bad_input_reaches_it(tmp_path):
    inject = (
        "import pansharp_dist.pipeline as p, pansharp_dist.cli as c\n"
        "def broken(*a, **k): raise ZeroDivisionError('an error nobody foresaw')\n"
        "p.run = broken\nc.main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", inject, "run", "--pan", "a", "--ms", "b", "--out", str(tmp_path / "o.tif")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "unexpected ZeroDivisionError" in result.stderr and "bug" in result.stderr


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


def test_a_network_that_does_not_fit_the_scene_is_refused_before_the_ingest(tmp_path):
    from conftest import VHR

    work = tmp_path / "work"
    result = cli(
        "run",
        "--pan",
        str(VHR[0]),
        "--ms",
        str(VHR[1]),
        "--out",
        str(tmp_path / "o.tif"),
        "--method",
        "fusionnet-wv3",
        "--work-dir",
        str(work),
    )
    line = _one_error_line(result)
    assert "takes 8 MS bands" in line and "fusionnet-qb" in line  # names the 4-band networks that fit
    assert not work.exists() or list(work.iterdir()) == []


# --------------------------------------------------------------------------- inputs that ended in a traceback


def _mat(path: Path, **arrays) -> Path:
    import scipy.io

    scipy.io.savemat(path, arrays)
    return path


@pytest.mark.parametrize(
    "case, words",
    [
        ("empty sensor field", None),
        ("4-D image", "4-D"),
        ("fake v7.3 header", "MATLAB v7.3"),
    ],
)
def test_malformed_mat_files_are_one_error_line(tmp_path, case, words):
    import scipy.io

    real = scipy.io.loadmat(DATA / "grip_unina_pnn" / "imgGE1.mat")
    pan, ms = real["I_PAN"][:256, :256], real["I_MS"][:64, :64]
    path = tmp_path / "scene.mat"
    if case == "empty sensor field":
        _mat(path, I_PAN=pan, I_MS=ms, sensor=np.array([], dtype="<U1"))
    elif case == "4-D image":
        _mat(path, I_PAN=pan[None, :, :, None].repeat(2, 0), I_MS=ms)
    else:
        text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
        path.write_bytes(text.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02IM" + os.urandom(4096))  # version 0x0200
    result = cli("run", "--pan", str(path), "--ms", str(path), "--out", str(tmp_path / "o.tif"), "--json")
    if words is None:  # a file whose sensor field is empty is read as a file that names no sensor
        assert result.returncode == 0, result.stderr
    else:
        assert words in _one_error_line(result) and not (tmp_path / "o.tif").exists()


def test_a_symlink_loop_is_named_as_one(tmp_path):
    (tmp_path / "a.tif").symlink_to(tmp_path / "b.tif")
    (tmp_path / "b.tif").symlink_to(tmp_path / "a.tif")
    result = cli("run", "--pan", str(tmp_path / "a.tif"), "--ms", str(GDAL_HPF[1]), "--out", str(tmp_path / "o.tif"))
    assert "loop of symbolic links" in _one_error_line(result)


def test_a_damaged_store_json_is_one_error_line(tmp_path, inputs):
    store = tmp_path / "s.zarr"
    assert cli("ingest", "--pan", str(inputs[0]), "--ms", str(inputs[1]), "--out", str(store)).returncode == 0
    (store / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attri')
    result = cli("adapt", "--zarr", str(store), "--model", "fusionnet-wv3", "--out", str(tmp_path / "t.safetensors"))
    assert "metadata (zarr.json) is damaged" in _one_error_line(result)


@pytest.mark.parametrize(
    "content, words",
    [
        (None, "cannot read the sensor file"),
        (
            '[[sensor]]\nid = 5\nname = "x"\nbands = "abc"\nbit_depth = "12"\nratio = 4\nmtf_ms = [0.3]\n'
            "mtf_pan = 0.15\n"
            "rgb = [2, 1, 0]\n",
            "wrong values of id",
        ),
        ("title = 'no sensors here'\n", "holds no [[sensor]] tables"),
    ],
)
def test_a_broken_or_missing_sensor_file_is_one_error_line(tmp_path, inputs, content, words):
    sensors = tmp_path / "sensors.toml"
    if content is not None:
        sensors.write_text(content)
    env = {"PANSHARP_SENSORS": str(sensors)}
    result = cli("run", "--pan", str(inputs[0]), "--ms", str(inputs[1]), "--out", str(tmp_path / "o.tif"), env=env)
    assert words in _one_error_line(result) and not (tmp_path / "o.tif").exists()


def test_a_checkpoint_with_malformed_keys_is_one_error_line(tmp_path):
    import torch

    torch.save({"backbone.a.conv20.weight": torch.zeros(1), "conv3.bias": torch.zeros(8)}, tmp_path / "bad.pth")
    result = cli(
        "models",
        "import",
        str(tmp_path / "bad.pth"),
        "--arch",
        "fusionnet",
        "--sensor",
        "wv3",
        "--out",
        str(tmp_path / "out"),
    )
    assert "not backbone.<block>.<layer>" in _one_error_line(result)


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


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["threads", "local"])
def test_ctrl_c_is_one_line_exit_130_and_leaves_nothing(tmp_path, scheduler):
    import signal
    import time

    from conftest import WV2_MAT

    exe = Path(sys.executable).with_name("pansharp-dist")
    run = subprocess.Popen(  # a session of its own: the signal reaches the run and its workers, as Ctrl-C does
        [
            str(exe),
            "run",
            "--pan",
            str(WV2_MAT),
            "--ms",
            str(WV2_MAT),
            "--out",
            str(tmp_path / "o.tif"),
            "--method",
            "fusionnet-wv3",
            "--adapt",
            "none",
            "--device",
            "cpu",
            "--tile",
            "256",
            "--scheduler",
            scheduler,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    deadline = time.time() + 120
    while time.time() < deadline and not any(p.name.startswith(".o.tif.work-") for p in tmp_path.iterdir()):
        time.sleep(0.1)  # interrupt once the run is under way
    time.sleep(1.0)
    os.killpg(run.pid, signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    lines = [line for line in stderr.splitlines() if line.strip() and "━" not in line and "warning:" not in line]
    assert run.returncode == 130 and lines == [
        "error: interrupted; nothing was written at the output (a --work-dir keeps its work for --resume)"
    ], stderr
    assert list(tmp_path.iterdir()) == []
