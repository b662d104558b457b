"""Pretrained backbones: the features/head split, checkpoint import, correct ports on native data,
radiometry, networks on the tile pipeline (tiled equals single pass), the CLI, float16 on CUDA, malformed
checkpoint keys and networks that do not fit the scene."""

import hashlib
import json
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DATA, GDAL_HPF, ONE_PER_ARCH, QB, WV2_MAT, _one_error_line, cli, read_cog

from benchmarks.networks import PATCHES, patch_scores, shipped_networks, wald_scores
from pansharp_dist import open_scene
from pansharp_dist.errors import (
    BandCountError,
    CorruptInputError,
    InputNotFoundError,
    InvalidParameterError,
    UnknownMethodError,
)
from pansharp_dist.fusion import OutputSpec, make_fuser, pansharpen, render
from pansharp_dist.methods import method_names
from pansharp_dist.models import (
    ARCHITECTURES,
    NativeCheck,
    card,
    import_checkpoint,
    list_models,
    load,
    record_native_checks,
)
from pansharp_dist.models.cards import WITHHELD
from pansharp_dist.models.radiometry import radiometry_for
from pansharp_dist.plan import adapt_mode_for
from pansharp_dist.sensors import UNKNOWN, get_sensor
from pansharp_dist.store import scene_stats

WEIGHTS = DATA.parent / "weights" / "pancollection"
ORIGINAL = {"fusionnet": "fusionnet", "pannet": "pannet", "dicnn": "dicnn1", "pnn": "pnn"}
SAMPLE = Path(__file__).resolve().parents[1] / "pansharp_dist" / "sample"


@pytest.fixture(scope="module")
def wv2_scene():
    return open_scene(WV2_MAT, WV2_MAT, "wv2")


def _torch_inputs(scene, size=96):
    r = scene.ratio
    pan = torch.from_numpy(scene.pan.values[:size, :size].astype(np.float32))[None, None]
    ms = torch.from_numpy(scene.ms.values[:, : size // r, : size // r].astype(np.float32))[None]
    return pan, ms


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_forward_is_head_of_features(wv2_scene, arch):
    model = load(f"{arch}-wv2")
    pan, ms = _torch_inputs(wv2_scene)
    with torch.inference_mode():
        x = model.prepare(pan, ms, 1 / 2047, 1 / 2047)
        f = model.features(x)
        out = model(pan, ms, 1 / 2047, 1 / 2047)
        np.testing.assert_array_equal(out.numpy(), (model.head(f, x) / (1 / 2047)).numpy())
    assert f.shape[1] == card(f"{arch}-wv2").feature_channels == model.width
    grow = 2 if arch == "pnn" else 0  # PNN's features still carry the 2 pixels its last valid 5x5 convolution eats
    assert f.shape[-2:] == (96 + 2 * grow, 96 + 2 * grow)
    assert out.shape == (1, 8, 96, 96)
    assert x.lms.shape == out.shape


def test_shipped_registry_has_every_arch_and_sensor_but_the_withheld():
    ids = {c.id for c in list_models()}
    assert ids == {f"{a}-{s}" for a in ARCHITECTURES for s in ("wv3", "wv2", "qb", "ge1")} - WITHHELD
    assert len(ids) == 12 and {c.arch for c in list_models()} == set(ARCHITECTURES)
    for unknown in (card, load):
        with pytest.raises(UnknownMethodError, match="dicnn-qb is not shipped: it did worse than plain upsampling"):
            unknown("DiCNN-QB")
    with pytest.raises(UnknownMethodError, match="unknown method 'pnn-qb'.*not shipped"):
        make_fuser(open_scene(*QB, "qb"), "pnn-qb")
    with pytest.raises(UnknownMethodError, match="unknown model 'unet-qb'; shipped models: dicnn-wv2,") as info:
        card("unet-qb")
    assert "not shipped" not in str(info.value)
    ge1 = card("fusionnet-ge1")
    assert (ge1.sensor, len(ge1.bands), ge1.ratio) == ("ge1", 4, 4)
    assert "WV4_fusionnet.pth" in ge1.source and "GPL-2.0" in ge1.licence
    assert set(method_names("network")) == ids


def test_import_reproduces_the_shipped_checkpoint(tmp_path):
    meta = import_checkpoint(WEIGHTS / "WV3_fusionnet.pth", "FusionNet", "WorldView-3", tmp_path)
    assert meta.id == "fusionnet-wv3"
    shipped = card("fusionnet-wv3")
    assert (
        meta.sha256
        == shipped.sha256
        == hashlib.sha256((tmp_path / "fusionnet-wv3.safetensors").read_bytes()).hexdigest()
    )
    on_disk = json.loads((tmp_path / "fusionnet-wv3.json").read_text())
    assert on_disk["receptive_radius"] == 18 and on_disk["input_scale"] == pytest.approx(1 / 2047)
    original = torch.load(WEIGHTS / "WV3_fusionnet.pth", map_location="cpu", weights_only=True)
    model = load("fusionnet-wv3")
    for key, value in model.state_dict().items():
        assert torch.equal(value, original[key])


class _Payload:
    """Unpickling this runs code: it creates the file named in ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_import_never_unpickles_code(tmp_path):
    marker = tmp_path / "code-ran"
    bad = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "payload": _Payload(str(marker))}, bad)
    with pytest.raises(CorruptInputError, match="only tensors are accepted"):
        import_checkpoint(bad, "fusionnet", "wv3", tmp_path / "out")
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_import_refuses_a_checkpoint_of_another_architecture(tmp_path):
    with pytest.raises(CorruptInputError, match="does not fit fusionnet: missing keys"):
        import_checkpoint(WEIGHTS / "WV3_dicnn1.pth", "fusionnet", "wv3", tmp_path)
    with pytest.raises(InvalidParameterError, match="unknown architecture"):
        import_checkpoint(WEIGHTS / "WV3_dicnn1.pth", "unet", "wv3", tmp_path)


@pytest.mark.slow
def test_models_cli_lists_and_imports(tmp_path):
    listed = cli("models", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 12
    done = cli(
        "models",
        "import",
        str(WEIGHTS / "WV4_pnn.pth"),
        "--arch",
        "pnn",
        "--sensor",
        "wv4",
        "--out",
        str(tmp_path),
        "--json",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["id"] == "pnn-ge1" and json.loads(done.stdout)["native_checks"] == []
    assert (tmp_path / "pnn-ge1.safetensors").is_file()
    missing = cli("models", "import", str(tmp_path / "nope.pth"), "--arch", "pnn", "--sensor", "qb")
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr


# --------------------------------------------------------------------------- correct ports


@pytest.mark.slow
def test_wv3_ports_beat_exp_and_classical_on_pancollection_patches():
    classical = method_names("classical")
    nets = shipped_networks(("wv3",))
    scores = patch_scores(DATA / PATCHES.pan, classical + nets, count=12)
    assert _failing(scores, classical, nets) == []
    assert scores["fusionnet-wv3"]["ERGAS"] < 0.55 * scores["EXP"]["ERGAS"]


def test_wv2_ports_beat_exp_and_classical_on_imgwv2(wv2_scene):
    classical = method_names("classical")
    nets = [f"{a}-wv2" for a in ARCHITECTURES]
    scores = wald_scores(wv2_scene, classical + nets)
    assert _failing(scores, classical, nets) == []


def _failing(scores: dict, classical: list[str], nets: list[str]) -> list[str]:
    return [n for n in nets if not NativeCheck.from_scores("data", n, scores, ["EXP", *classical]).passed]


def test_a_native_check_is_recorded_in_the_card(tmp_path):
    import_checkpoint(WEIGHTS / "WV4_pnn.pth", "pnn", "ge1", tmp_path)
    before = (tmp_path / "pnn-ge1.safetensors").read_bytes()
    scores = {
        "EXP": {"ERGAS": 3.0, "SAM": 2.0},
        "gsa": {"ERGAS": 2.0, "SAM": 2.5},
        "pnn-ge1": {"ERGAS": 1.9, "SAM": 2.1},
    }
    check = NativeCheck.from_scores("imgGE1", "pnn-ge1", scores, ["EXP", "gsa"])
    assert (check.best_ergas, check.best_sam, check.adapt, check.passed) == (("gsa", 2.0), ("EXP", 2.0), "none", False)
    scores["pnn-ge1 adapted"] = {"ERGAS": 1.9, "SAM": 1.9}
    adapted = NativeCheck.from_scores("imgGE1", "pnn-ge1 adapted", scores, ["EXP", "gsa"], adapt="tailor")
    assert adapted.passed
    (meta,) = record_native_checks({"pnn-ge1": [check, adapted]}, tmp_path)
    assert meta.native_checks == (check, adapted)
    assert (meta.native_verdict("none"), meta.native_verdict("tailor"), meta.native_verdict("full")) == (
        "fails on imgGE1",
        "pass",
        "not run",
    )
    assert (tmp_path / "pnn-ge1.safetensors").read_bytes() == before and meta.sha256 == card("pnn-ge1").sha256
    with pytest.raises(InputNotFoundError, match="no model card for dicnn-qb"):
        record_native_checks({"dicnn-qb": [check]}, tmp_path)


def test_every_shipped_card_carries_its_own_sensor_checks():
    for meta in list_models():
        own = {"wv3": ["gdal_hpf_wv3"], "wv2": ["imgWV2"], "qb": ["msdcnn QuickBird"], "ge1": ["imgGE1"]}[meta.sensor]
        as_trained = ["fusionnet_wv3_patches", *own] if meta.sensor == "wv3" else own
        assert [(c.data, c.adapt) for c in meta.native_checks] == (
            [(d, "none") for d in as_trained] + [(d, "tailor") for d in own]
        ), meta.id
        assert meta.native_verdict("tailor") == "pass", f"{meta.id} fails adapted: it should not ship"


def test_a_network_that_failed_its_own_sensor_check_warns():
    failing = next(c.id for c in list_models() if c.native_failures("none"))
    passing = next(c.id for c in list_models() if c.native_verdict("none") == "pass")
    with pytest.warns(UserWarning, match=rf"{failing} failed its own-sensor check unadapted on .*ERGAS .*models list"):
        assert adapt_mode_for(failing, "none") == "none"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert adapt_mode_for(failing, None) == "tailor"  # every shipped network passes adapted
        assert adapt_mode_for(passing, "none") == "none"
        assert adapt_mode_for("brovey", None) == "none"


def test_a_card_that_records_a_failure_with_the_tailor_warns_on_the_default_run(monkeypatch):
    import pansharp_dist.plan

    scores = {
        "EXP": {"ERGAS": 3.0, "SAM": 2.0},
        "gsa": {"ERGAS": 2.0, "SAM": 2.5},
        "pnn-ge1": {"ERGAS": 2.2, "SAM": 1.9},
    }
    failed = NativeCheck.from_scores("imgGE1", "pnn-ge1", scores, ["EXP", "gsa"], adapt="tailor")
    recorded = replace(card("pnn-ge1"), native_checks=(failed,))  # what a later bench run could write
    monkeypatch.setattr(pansharp_dist.plan, "card", lambda model_id: recorded)
    with pytest.warns(
        UserWarning, match=r"pnn-ge1 failed its own-sensor check with `adapt=tailor` on imgGE1 .*gsa 2.00"
    ):
        assert adapt_mode_for("pnn-ge1", None) == "tailor"


# --------------------------------------------------------------------------- radiometry


def test_radiometry_rules():
    qb = card("pannet-qb")
    pleiades = open_scene(DATA / "dgif_pairs" / "Pan3.tif", DATA / "dgif_pairs" / "MS3.tif", "pleiades")
    r = radiometry_for(scene_stats(pleiades), get_sensor("pleiades"), qb.input_p99_ms, qb.input_p99_pan)
    assert r.ms_scale == (1 / 4095,) * 4 and r.pan_scale == 1 / 4095  # a 12-bit scene for an 11-bit-trained model
    ge1 = open_scene(DATA / "grip_unina_pnn" / "imgGE1.mat", DATA / "grip_unina_pnn" / "imgGE1.mat", "ge1")
    assert radiometry_for(scene_stats(ge1), get_sensor("ge1"), qb.input_p99_ms, qb.input_p99_pan).pan_scale == 1 / 255
    wv3 = card("pannet-wv3")
    floats = open_scene(*GDAL_HPF, "wv3")
    stats = scene_stats(floats)
    r = radiometry_for(stats, get_sensor("wv3"), wv3.input_p99_ms, wv3.input_p99_pan)
    assert "percentile" in r.rule
    np.testing.assert_allclose(np.array(r.ms_scale) * [b[7] for b in stats.ms_percentiles], wv3.input_p99_ms)
    sample = open_scene(SAMPLE / "pan.tif", SAMPLE / "ms.tif")  # uint16 from an unknown sensor
    assert "percentile" in radiometry_for(scene_stats(sample), UNKNOWN, qb.input_p99_ms, qb.input_p99_pan).rule
    with pytest.warns(UserWarning, match="above the 8-bit range"):
        radiometry_for(
            scene_stats(pleiades),
            get_sensor("ge1").__class__(**{**get_sensor("ge1").__dict__, "bit_depth": 8}),
            qb.input_p99_ms,
            qb.input_p99_pan,
        )


def test_network_refuses_a_scene_with_other_bands():
    scene = open_scene(*QB, "qb")
    with pytest.raises(BandCountError, match="takes 8 MS bands"):
        make_fuser(scene, "fusionnet-wv3")


# --------------------------------------------------------------------------- on the tile pipeline


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_tiled_network_equals_single_pass(arch):
    scene = open_scene(*GDAL_HPF, "wv3")  # float32: no rounding hides differences
    fuser = make_fuser(scene, f"{arch}-wv2")
    assert fuser.halo >= card(f"{arch}-wv2").receptive_radius and fuser.halo % scene.ratio == 0
    single = render(fuser, scene.pan.values, scene.ms.values, OutputSpec.for_scene(scene))
    tiled = pansharpen(scene, fuser, tile=64, block=128).values
    h = fuser.halo
    core = (slice(None), slice(h, -h), slice(h, -h))
    err = np.abs(tiled[core] - single[core]).max() / np.abs(single[core]).max()
    assert err < 1e-5
    assert np.isfinite(tiled).all()


def test_a_backbone_resident_on_another_device_leaves_the_cpu_one_in_place():
    from pansharp_dist.models.network import resident

    resident.cache_clear()
    on_cpu = resident("pnn-ge1", "cpu")
    elsewhere = resident("pnn-ge1", "meta")  # stands in for a GPU: Module.to would move a shared module in place
    assert elsewhere is not on_cpu and next(elsewhere.parameters()).device.type == "meta"
    assert next(on_cpu.parameters()).device.type == "cpu" and resident("pnn-ge1", "cpu") is on_cpu
    resident.cache_clear()


@pytest.mark.slow
def test_run_cli_with_a_network_writes_a_cog(tmp_path):
    out = tmp_path / "pannet.tif"
    done = cli(
        "run",
        "--pan",
        str(SAMPLE / "pan.tif"),
        "--ms",
        str(SAMPLE / "ms.tif"),
        "--out",
        str(out),
        "--method",
        "pannet-qb",
        "--tile",
        "256",
        "--workers",
        "1",
        "--adapt-steps",
        "20",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["method"] == "pannet-qb"
    pixels, meta = read_cog(out)
    assert pixels.shape == (4, 800, 800) and meta["crs"] is not None
    with_cuda = cli(
        "run",
        "--pan",
        str(SAMPLE / "pan.tif"),
        "--ms",
        str(SAMPLE / "ms.tif"),
        "--out",
        str(tmp_path / "x.tif"),
        "--method",
        "brovey",
        "--device",
        "cuda",
    )
    assert with_cuda.returncode == 2 and "network methods only" in with_cuda.stderr
    elsewhere = cli(
        "run",
        "--pan",
        str(SAMPLE / "pan.tif"),
        "--ms",
        str(SAMPLE / "ms.tif"),
        "--out",
        str(tmp_path / "y.tif"),
        "--method",
        "pannet-qb",
        "--device",
        "tpu",
    )
    assert (
        elsewhere.returncode == 2 and "unknown device 'tpu'" in elsewhere.stderr and "Traceback" not in elsewhere.stderr
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pannet.tif"]  # nothing else left behind


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("model", ONE_PER_ARCH)
def test_float16_on_cuda_stays_near_float32(model, wv2_scene):
    scene = open_scene(SAMPLE / "pan.tif", SAMPLE / "ms.tif") if len(card(model).bands) == 4 else wv2_scene
    cpu, full, half = (
        make_fuser(scene, model, device=d, half=h) for d, h in (("cpu", False), ("cuda", False), ("cuda", True))
    )
    assert half.half and not full.half
    pan = scene.pan.values[None, :512, :512].astype(np.float32)
    ms = scene.ms.values[None, :, :128, :128].astype(np.float32)
    ref = cpu.fuse(pan, ms)
    # stated tolerance, against float32 on the CPU: within 0.5% of the data range everywhere and 0.05% on
    # average, for float16 autocast and for CUDA's float32 path (cuDNN runs its convolutions in TF32)
    for fuser in (full, half):
        diff = np.abs(fuser.fuse(pan, ms) - ref)
        assert diff.max() < 5e-3 * ref.max() and diff.mean() < 5e-4 * ref.max()


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
