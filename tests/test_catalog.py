"""catalog.py: the href policy (encoded escapes, VRTs and sidecars outside a root), the catalogue walk, the ledger."""

import json
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pystac
import pytest
import rasterio
from conftest import GDAL_HPF

from pansharp_dist.catalog import HrefPolicy, ItemLedger, ItemRecord, run_options, safe_name, scan_catalog
from pansharp_dist.errors import HrefRefusedError, InvalidParameterError
from pansharp_dist.stac import SceneAssets


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


def test_the_href_policy_keeps_hrefs_under_their_roots():
    policy = HrefPolicy(("/data/scenes", "s3://bucket/scenes/"))
    assert policy.check("/data/scenes/a/pan.tif") and policy.check("s3://bucket/scenes/x.tif")
    for href in (
        "/data/scenes/../secret.tif",
        "/etc/passwd",
        "s3://bucket/other/x.tif",
        "s3://bucket/scenes/../x.tif",
        "https://evil.example/x.tif",
        "file:///etc/passwd",
    ):
        with pytest.raises(HrefRefusedError):
            policy.check(href)


def test_the_ledger_runs_an_item_again_when_its_run_options_change(tmp_path):
    pan, ms = GDAL_HPF
    scene = SceneAssets("hpf", str(pan), str(ms), "2024-01-01", None)
    ledger = ItemLedger(tmp_path / "ledger")
    assert run_options() == {} and run_options(extent="pan", compress="zstd:1") == {"compress": "ZSTD:1"}
    for bad in ({"compress": "ZSTD:99"}, {"extent": "both"}, {"dtype": "int8"}, {"adapt": "some"}):
        with pytest.raises(InvalidParameterError, match=f"`{next(iter(bad))}`"):
            run_options(**bad)
    done = ledger.expected(scene, "brovey", run_options())
    done.status = "done"
    ledger.put(done)
    assert not ledger.needs_run(ledger.expected(scene, "brovey", run_options()))
    for changed in (run_options(extent="union"), run_options(dtype="float32"), run_options(compress="NONE")):
        assert ledger.needs_run(ledger.expected(scene, "brovey", changed))
    # a record written before the ledger kept options: it ran with the defaults
    record = json.loads((tmp_path / "ledger" / "hpf.json").read_text())
    del record["options"]
    (tmp_path / "ledger" / "hpf.json").write_text(json.dumps(record))
    assert not ledger.needs_run(ledger.expected(scene, "brovey", run_options()))
    assert ledger.needs_run(ledger.expected(scene, "brovey", run_options(adapt="none")))
