"""Checkpoints: import PanCollection state dicts, the shipped registry, and loading by id.

A checkpoint is two files side by side: ``<id>.safetensors`` (tensors only, no
code can run on load) and ``<id>.json``, its :class:`ModelCard`. The package
ships one pair per (architecture, sensor) in ``pansharp_dist/models/weights``
with the licence and attribution of the originals beside them. Ids are
``<arch>-<sensor>`` in lower case (``fusionnet-wv3``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import (
    CorruptInputError,
    InputNotFoundError,
    InvalidParameterError,
    UnknownMethodError,
)
from ..sensors import get_sensor
from .backbones import ARCHITECTURES, Backbone

WEIGHTS = "weights"
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


@dataclass(frozen=True)
class NativeCheck:
    """A checkpoint's reduced-resolution score on one dataset of its own sensor (``bench networks``).

    Attributes:
        data: the dataset (``gdal_hpf_wv3``).
        ergas: the network's ERGAS (lower is better).
        sam: the network's SAM, degrees.
        best_ergas: ``(method, ERGAS)`` of the best of EXP and the classical methods.
        best_sam: ``(method, SAM)`` of the best of EXP and the classical methods.
        adapt: how the network ran: ``none`` (as trained) or ``tailor`` (adapted to the
            degraded scene first, as a run does by default).
    """

    data: str
    ergas: float
    sam: float
    best_ergas: tuple[str, float]
    best_sam: tuple[str, float]
    adapt: str = "none"

    @property
    def passed(self) -> bool:
        """Whether the network beats EXP and every classical method on both ERGAS and SAM."""
        return self.ergas < self.best_ergas[1] and self.sam < self.best_sam[1]

    @classmethod
    def from_scores(cls, data: str, network: str, scores: dict[str, dict[str, float]],
                    baselines: list[str], adapt: str = "none") -> "NativeCheck":
        """The check of ``network`` from ``{method: {"ERGAS": ..., "SAM": ...}}`` of a reduced-resolution run."""
        best = {k: min(((b, scores[b][k]) for b in baselines), key=lambda pair: pair[1]) for k in ("ERGAS", "SAM")}
        return cls(data, scores[network]["ERGAS"], scores[network]["SAM"], best["ERGAS"], best["SAM"], adapt)


@dataclass(frozen=True)
class ModelCard:
    """What a checkpoint is and where it came from.

    Attributes:
        id: ``<arch>-<sensor>``.
        arch: architecture id, a key of :data:`~pansharp_dist.models.backbones.ARCHITECTURES`.
        sensor: source sensor id (sensor registry).
        bands: MS band names, in the order the network expects.
        ratio: PAN/MS resolution ratio it was trained on.
        input_scale: model units per count of the training data (1/2047: 11-bit).
        input_p99_ms: training 99th percentile of each MS band, in model units (radiometry rule 2).
        input_p99_pan: training 99th percentile of the PAN, in model units.
        receptive_radius: PAN pixels each output pixel depends on, on every side.
        feature_channels: channels of ``features`` (what a tailor adapts).
        parameters: number of weights.
        sha256: of the ``.safetensors`` file.
        source: where the original came from, and its file name and SHA-256.
        licence: licence of the weights.
        native_checks: its scores on data of its own sensor, written by ``pansharp-dist bench
            networks`` (empty until that has run): a network that fails one scores worse than
            plain upsampling or a classical method there.
    """

    id: str
    arch: str
    sensor: str
    bands: tuple[str, ...]
    ratio: int
    input_scale: float
    input_p99_ms: tuple[float, ...]
    input_p99_pan: float
    receptive_radius: int
    feature_channels: int
    parameters: int
    sha256: str
    source: str
    licence: str
    native_checks: tuple[NativeCheck, ...] = ()

    def native_failures(self, adapt: str = "none") -> list[NativeCheck]:
        """The own-sensor checks the network failed when run with adaptation ``adapt``."""
        return [c for c in self.native_checks if c.adapt == adapt and not c.passed]

    def native_verdict(self, adapt: str = "none") -> str:
        """``"pass"``, ``"not run"``, or ``"fails on <data>, ..."``: the checks run with ``adapt``."""
        if not any(c.adapt == adapt for c in self.native_checks):
            return "not run"
        failed = self.native_failures(adapt)
        return f"fails on {', '.join(c.data for c in failed)}" if failed else "pass"


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
            _, index, rest = key.split(".", 2)
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
    missing, unexpected = (sorted(k) for k in (set(model.state_dict()) - set(state), set(state) - set(model.state_dict())))
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
    card = ModelCard(
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
    _write_card(card, out_dir)
    return card


WITHHELD = frozenset({"dicnn-wv3", "dicnn-qb", "dicnn-ge1", "pnn-qb"})
"""DLPan-Toolbox checkpoints that are not shipped: on data of their own sensor they lost to plain upsampling
or a classical method, as trained and adapted by the tailor (``weights/README.md``)."""


def withheld_note(model_id: str) -> str:
    """Why ``model_id`` is not shipped, as a sentence to append to an error; ``""`` for any other id."""
    if model_id.lower() not in WITHHELD:
        return ""
    return (f" ({model_id.lower()} is not shipped: it did worse than plain upsampling or a classical method on data "
            "of its own sensor, even adapted; see pansharp_dist/models/weights/README.md)")


def _shipped() -> Path:
    return Path(str(resources.files("pansharp_dist.models") / WEIGHTS))


def _read_card(path: Path) -> ModelCard:
    values = json.loads(path.read_text())
    values["bands"] = tuple(values["bands"])
    values["input_p99_ms"] = tuple(values["input_p99_ms"])
    values["native_checks"] = tuple(
        NativeCheck(**(c | {"best_ergas": tuple(c["best_ergas"]), "best_sam": tuple(c["best_sam"])}))
        for c in values.get("native_checks", ())
    )
    return ModelCard(**values)


def _write_card(meta: ModelCard, folder: Path) -> None:
    """``<id>.json`` in ``folder``, written under a temporary name and renamed: never half a card."""
    tmp = folder / f".{meta.id}.json.tmp"
    tmp.write_text(json.dumps(asdict(meta), indent=2) + "\n")
    tmp.replace(folder / f"{meta.id}.json")


def record_native_checks(checks: dict[str, list[NativeCheck]], folder: str | Path | None = None) -> list[ModelCard]:
    """Write ``{model id: checks}`` into the cards in ``folder`` (default: the shipped cards).

    The cards' other fields and the weights are left as they are. Returns the
    cards as read back from ``folder``.
    """
    folder = Path(folder) if folder is not None else _shipped()
    missing = [i for i in checks if not (folder / f"{i}.json").is_file()]
    if missing:
        raise InputNotFoundError(
            f"no model card for {', '.join(missing)} in {folder}: import the checkpoint first (pansharp-dist models import)"
        )
    for model_id, found in checks.items():
        _write_card(replace(_read_card(folder / f"{model_id}.json"), native_checks=tuple(found)), folder)
    _shipped_cards.cache_clear()
    return [_read_card(folder / f"{i}.json") for i in checks]


@lru_cache(maxsize=1)
def _shipped_cards() -> dict[str, ModelCard]:
    """Every shipped card by id, read once per process (they are package data)."""
    cards = (_read_card(p) for p in sorted(_shipped().glob("*.json")))
    return {c.id: c for c in cards}


def list_models() -> list[ModelCard]:
    """Cards of every shipped checkpoint, sorted by id."""
    return list(_shipped_cards().values())


def model_ids() -> list[str]:
    """Ids of every shipped checkpoint."""
    return list(_shipped_cards())


def card(model_id: str) -> ModelCard:
    """The card of the shipped checkpoint ``model_id``."""
    meta = _shipped_cards().get(model_id.lower())
    if meta is None:
        raise UnknownMethodError(
            f"unknown model {model_id!r}; shipped models: {', '.join(model_ids())}{withheld_note(model_id)}"
        )
    return meta


@lru_cache(maxsize=8)
def load(model_id: str) -> Backbone:
    """The shipped backbone ``model_id`` in eval mode on the CPU, weights checked against its card.

    Cached per process: a worker loads each backbone once.
    """
    meta = card(model_id)
    weights = _shipped() / f"{meta.id}.safetensors"
    if _sha256(weights) != meta.sha256:
        raise CorruptInputError(f"{weights} does not match the SHA-256 in its card: reinstall pansharp-dist")
    model = ARCHITECTURES[meta.arch](len(meta.bands), meta.ratio)
    model.load_state_dict(load_file(str(weights)))
    return model.eval().requires_grad_(False)
