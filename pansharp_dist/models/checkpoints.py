"""Checkpoints: convert PanCollection state dicts, and load a shipped backbone by id.

The files and their cards are described in :mod:`.cards`; this module is the
part that needs torch.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import CorruptInputError, InputNotFoundError, InvalidParameterError
from ..sensors import get_sensor
from .backbones import ARCHITECTURES, Backbone
from .cards import ModelCard, card, shipped_folder, write_card

PANCOLLECTION_SCALE = 1 / 2047
PANCOLLECTION_SOURCE = (
    "liangjiandeng/DLPan-Toolbox, 01-DL-toolbox(Pytorch)/UDL/pretrained-model/<SENSOR>/; "
    "trained by the toolbox authors on PanCollection reduced-resolution data"
)
PANCOLLECTION_LICENCE = "GPL-2.0 (DLPan-Toolbox, 01-DL-toolbox(Pytorch)/LICENSE); see LICENSE beside the weights"
# 99th percentiles of native data in model units, per MS band and for the PAN (value / 2047; the 8-bit
# imgGE1 / 255), measured on fusionnet_wv3_patches (PanCollection's own WV3 gt and pan),
# grip_unina_pnn/imgWV2, msdcnn_quickbird and grip_unina_pnn/imgGE1.
TRAINING_P99 = {
    "wv3": ((0.25, 0.499, 0.771, 0.613, 0.619, 0.569, 0.69, 0.467), 0.682),
    "wv2": ((0.44, 0.389, 0.597, 0.754, 0.592, 0.632, 0.711, 0.576), 0.548),
    "qb": ((0.181, 0.283, 0.227, 0.291), 0.269),
    "ge1": ((0.341, 0.275, 0.271, 0.694), 0.263),
}
DEFAULT_P99 = 0.5


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise InputNotFoundError(f"checkpoint {path} does not exist: give the path of a .pth state dict")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors alike
        raise CorruptInputError(
            f"cannot load {path} as a plain state dict ({type(exc).__name__}); only tensors are accepted, "
            "never pickled code: re-save it with torch.save(model.state_dict(), ...)"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CorruptInputError(f"{path} is not a state dict of tensors")
    return state


def _without_duplicates(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop ``backbone.<i>.*``: DLPan-Toolbox saved the residual blocks twice, as ``res<i+1>.*`` too."""
    kept = {}
    for key, value in state.items():
        if key.startswith("backbone."):
            parts = key.split(".", 2)
            if len(parts) != 3 or not parts[1].isdigit():
                raise CorruptInputError(
                    f"checkpoint key {key} is not backbone.<block>.<layer>: not a DLPan-Toolbox state dict"
                )
            _, index, rest = parts
            twin = state.get(f"res{int(index) + 1}.{rest}")
            if twin is None or not torch.equal(twin, value):
                raise CorruptInputError(f"checkpoint key {key} has no identical res{int(index) + 1}.{rest}")
            continue
        kept[key] = value.float().contiguous()
    return kept


def import_checkpoint(path: str | Path, arch: str, sensor: str, out_dir: str | Path) -> ModelCard:
    """Convert a PanCollection/DLPan-Toolbox state dict to ``<id>.safetensors`` + ``<id>.json`` in ``out_dir``.

    The state dict is loaded with ``weights_only=True`` and must fit the
    architecture exactly (every key, every shape). The training percentiles of
    the card are those measured for the sensor (:data:`TRAINING_P99`), or
    :data:`DEFAULT_P99` for every band of a sensor without a measurement.
    """
    path = Path(path)
    cls = ARCHITECTURES.get(arch.lower())
    if cls is None:
        raise InvalidParameterError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    source_sensor = get_sensor(sensor)
    state = _without_duplicates(_read_state_dict(path))
    bands = state["conv3.bias"].shape[0] if "conv3.bias" in state else 0
    model = cls(bands)
    missing, unexpected = (
        sorted(k) for k in (set(model.state_dict()) - set(state), set(state) - set(model.state_dict()))
    )
    if missing or unexpected:
        raise CorruptInputError(f"{path} does not fit {cls.arch}: missing keys {missing}, unexpected keys {unexpected}")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CorruptInputError(f"{path} does not fit {cls.arch}: {str(exc).splitlines()[-1].strip()}") from None
    if bands != len(source_sensor.bands):
        raise InvalidParameterError(
            f"{path} has {bands} output bands but sensor {source_sensor.id} has {len(source_sensor.bands)}"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_id = f"{cls.arch}-{source_sensor.id}"
    p99_ms, p99_pan = TRAINING_P99.get(source_sensor.id, ((DEFAULT_P99,) * bands, DEFAULT_P99))
    weights = out_dir / f"{model_id}.safetensors"
    save_file(state, str(weights))  # no metadata: the card holds it, and the bytes stay reproducible
    meta = ModelCard(
        id=model_id,
        arch=cls.arch,
        sensor=source_sensor.id,
        bands=source_sensor.bands,
        ratio=model.ratio,
        input_scale=PANCOLLECTION_SCALE,
        input_p99_ms=p99_ms,
        input_p99_pan=p99_pan,
        receptive_radius=model.receptive_radius(),
        feature_channels=cls.width,
        parameters=sum(v.numel() for v in state.values()),
        sha256=_sha256(weights),
        source=f"{PANCOLLECTION_SOURCE}; file {path.name}, sha256 {_sha256(path)}",
        licence=PANCOLLECTION_LICENCE,
    )
    write_card(meta, out_dir)
    return meta


@lru_cache(maxsize=8)
def load(model_id: str) -> Backbone:
    """The shipped backbone ``model_id`` in eval mode on the CPU, weights checked against its card.

    Cached per process: a worker loads each backbone once.
    """
    meta = card(model_id)
    weights = shipped_folder() / f"{meta.id}.safetensors"
    if _sha256(weights) != meta.sha256:
        raise CorruptInputError(f"{weights} does not match the SHA-256 in its card: reinstall pansharp-dist")
    model = ARCHITECTURES[meta.arch](len(meta.bands), meta.ratio)
    model.load_state_dict(load_file(str(weights)))
    return model.eval().requires_grad_(False)
