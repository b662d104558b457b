"""Model cards: what each shipped checkpoint is, where it came from, how it scored; the registry of shipped ids.

A checkpoint is two files side by side: ``<id>.safetensors`` (tensors only, no
code can run on load) and ``<id>.json``, its :class:`ModelCard`. The package
ships one pair per (architecture, sensor) in ``pansharp_dist/models/weights``
with the licence and attribution of the originals beside them. Ids are
``<arch>-<sensor>`` in lower case (``fusionnet-wv3``).

Reading cards needs neither torch nor the weights: the method registry and the
command line ask which networks exist without loading one
(:mod:`.checkpoints` converts and loads the weights).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ..errors import BandCountError, InputNotFoundError, InvalidParameterError, UnknownMethodError
from ..outputs import atomic_write

WEIGHTS = "weights"


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
    def from_scores(
        cls, data: str, network: str, scores: dict[str, dict[str, float]], baselines: list[str], adapt: str = "none"
    ) -> NativeCheck:
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
        native_checks: its scores on data of its own sensor, written by ``python -m benchmarks
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

    def check_fits(self, bands: int, ratio: int) -> None:
        """Refuse a scene of ``bands`` MS bands and resolution ``ratio`` that this network was not trained for.

        Raises:
            BandCountError: another number of bands (the message says which models fit).
            InvalidParameterError: another ratio.
        """
        if bands != len(self.bands):
            fitting = [c.id for c in list_models() if len(c.bands) == bands and c.ratio == ratio]
            raise BandCountError(
                f"model {self.id} takes {len(self.bands)} MS bands ({', '.join(self.bands)}) but the scene has "
                f"{bands}: choose a model of a {bands}-band sensor"
                + (f" ({', '.join(fitting)})" if fitting else " (none is shipped: use a classical method)")
            )
        if ratio != self.ratio:
            raise InvalidParameterError(
                f"model {self.id} was trained for ratio {self.ratio}; the scene has ratio {ratio}: "
                "use a classical method"
            )

    def native_failures(self, adapt: str = "none") -> list[NativeCheck]:
        """The own-sensor checks the network failed when run with adaptation ``adapt``."""
        return [c for c in self.native_checks if c.adapt == adapt and not c.passed]

    def native_verdict(self, adapt: str = "none") -> str:
        """``"pass"``, ``"not run"``, or ``"fails on <data>, ..."``: the checks run with ``adapt``."""
        if not any(c.adapt == adapt for c in self.native_checks):
            return "not run"
        failed = self.native_failures(adapt)
        return f"fails on {', '.join(c.data for c in failed)}" if failed else "pass"


WITHHELD = frozenset({"dicnn-wv3", "dicnn-qb", "dicnn-ge1", "pnn-qb"})
"""DLPan-Toolbox checkpoints that are not shipped: on data of their own sensor they lost to plain upsampling
or a classical method, as trained and adapted by the tailor (``weights/README.md``)."""


def withheld_note(model_id: str) -> str:
    """Why ``model_id`` is not shipped, as a sentence to append to an error; ``""`` for any other id."""
    if model_id.lower() not in WITHHELD:
        return ""
    return (
        f" ({model_id.lower()} is not shipped: it did worse than plain upsampling or a classical method on data "
        "of its own sensor, even adapted; see pansharp_dist/models/weights/README.md)"
    )


def shipped_folder() -> Path:
    """The package folder that holds the shipped weights and their cards."""
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


def write_card(meta: ModelCard, folder: Path) -> None:
    """``<id>.json`` in ``folder``, written under a temporary name and renamed: never half a card."""
    atomic_write(folder / f"{meta.id}.json", (json.dumps(asdict(meta), indent=2) + "\n").encode())


def record_native_checks(checks: dict[str, list[NativeCheck]], folder: str | Path | None = None) -> list[ModelCard]:
    """Write ``{model id: checks}`` into the cards in ``folder`` (default: the shipped cards).

    The cards' other fields and the weights are left as they are. Returns the
    cards as read back from ``folder``.
    """
    folder = Path(folder) if folder is not None else shipped_folder()
    missing = [i for i in checks if not (folder / f"{i}.json").is_file()]
    if missing:
        raise InputNotFoundError(
            f"no model card for {', '.join(missing)} in {folder}: import the checkpoint first "
            "(pansharp-dist models import)"
        )
    for model_id, found in checks.items():
        write_card(replace(_read_card(folder / f"{model_id}.json"), native_checks=tuple(found)), folder)
    _shipped_cards.cache_clear()
    return [_read_card(folder / f"{i}.json") for i in checks]


@lru_cache(maxsize=1)
def _shipped_cards() -> dict[str, ModelCard]:
    """Every shipped card by id, read once per process (they are package data)."""
    cards = (_read_card(p) for p in sorted(shipped_folder().glob("*.json")))
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


def tensors_sha256(data: bytes) -> str:
    """SHA-256 of the tensors of a safetensors file: their names, shapes, dtypes and bytes, not the metadata
    (a tailor's card records how long its training took, which differs from run to run)."""
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    header.pop("__metadata__", None)
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    digest.update(data[8 + size :])
    return digest.hexdigest()
