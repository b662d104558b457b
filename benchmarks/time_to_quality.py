"""``python -m benchmarks tailor --parts time``: how long each adaptation takes to reach its quality.

What a user compares a Feature Tailor with is zero-shot fine-tuning of the
whole network (``full``) run to its own convergence, not for the tailor's step
count. For the cross-sensor case of the issue that set the goal (the WorldView-3
FusionNet on WorldView-2 ``imgWV2``: its central 512 x 512 crop and a 2048 x 2048
mirror mosaic of the whole scene), each mode is fitted with growing step budgets
from the same start (the same tiles and seed, so a budget's run is the
beginning of the next one's); each fit's adaptation seconds (its own clock,
without the scoring) and the full-resolution HQNR of the scene fused with its
result make one point of a curve:

* ``tailor``: budgets up to the default 300 steps, with the default early stop;
* ``full``: budgets doubling up to :data:`FULL_MAX_STEPS`, until a fit stops by
  its convergence test (no relative gain of ``min_delta`` for ``patience`` steps).

Reported per scene: the tailor's final HQNR and the seconds of its first point at
or above it; the seconds of ``full``'s first point at or above that HQNR (or,
when it never gets there, of its best point); their ratio. A PNG plots HQNR
against adaptation seconds for none, tailor and full.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from pansharp_dist.adapt.options import AdaptOptions
from pansharp_dist.adapt.training import adapt_fuser
from pansharp_dist.fusion import make_fuser, pansharpen
from pansharp_dist.models.network import default_device
from pansharp_dist.quality.evaluate import scene_full_scores
from pansharp_dist.scene import Scene, open_scene

from .mosaic import crop_pair, mosaic_pair

SOURCE = "grip_unina_pnn/imgWV2.mat"
SENSOR = "wv2"
MODEL = "fusionnet-wv3"
TAILOR_BUDGETS = (10, 25, 50, 100, 200, 300)
FULL_MAX_STEPS = 800
FULL_FIRST_BUDGET = 50


@dataclass(frozen=True)
class Point:
    """One fit: its step budget, the steps it took, its adaptation seconds, why it stopped, and the HQNR."""

    budget: int
    steps: int
    seconds: float
    stopped: str
    hqnr: float


def _hqnr(scene: Scene, fuser) -> float:
    return scene_full_scores(scene, pansharpen(scene, fuser, tile=512).data)["HQNR"]


def curve(scene: Scene, base, mode: str, budgets, options: AdaptOptions, log: Callable[[str], None]) -> list[Point]:
    """Points of ``mode`` for the step ``budgets`` in order, until a fit stops by converging."""
    points = []
    for budget in budgets:
        fuser, report = adapt_fuser(scene, base, mode, replace(options, steps=budget, seconds=math.inf))
        points.append(Point(budget, report.steps, report.seconds, report.stopped, _hqnr(scene, fuser)))
        log(f"  {mode} {budget} steps: {report.steps} taken, {report.seconds:.1f} s, HQNR {points[-1].hqnr:.4f}")
        if report.stopped == "converged":
            break
    return points


def full_budgets() -> list[int]:
    """``FULL_FIRST_BUDGET``, doubling, up to ``FULL_MAX_STEPS``."""
    return [FULL_FIRST_BUDGET * 2**k for k in range(int(math.log2(FULL_MAX_STEPS // FULL_FIRST_BUDGET)) + 1)]


def seconds_to(points: list[Point], target: float) -> tuple[float, bool]:
    """Seconds of the first point at or above ``target`` (``True``), else of the best point (``False``)."""
    for p in points:
        if p.hqnr >= target:
            return p.seconds, True
    return max(points, key=lambda p: p.hqnr).seconds, False


def _scenes(data: Path, work: Path) -> dict[str, Scene]:
    source = data / SOURCE
    crop = crop_pair(source, source, 512, work / "time-to-quality")
    mosaic = mosaic_pair(source, source, 2048, work / "time-to-quality")
    return {
        "512 x 512 (central crop)": open_scene(*crop, SENSOR),
        "2048 x 2048 (mirror mosaic)": open_scene(*mosaic, SENSOR),
    }


def time_to_quality(
    data: Path,
    work: Path,
    device: str | None,
    plot: Path,
    log: Callable[[str], None],
) -> tuple[list[str], dict[str, dict[str, list[Point]]]]:
    """The table rows and the curves (``{scene: {mode: points}}``), and the PNG at ``plot``."""
    device = device or default_device()
    rows, curves = [], {}
    for label, scene in _scenes(data, work).items():
        base = make_fuser(scene, MODEL, device=device)
        adapt_fuser(scene, base, "tailor", AdaptOptions(steps=2))  # warm-up: model load, kernel selection
        log(f"time to quality: {label}")
        none = _hqnr(scene, base)
        tailor = curve(scene, base, "tailor", TAILOR_BUDGETS, AdaptOptions(), log)
        full = curve(scene, base, "full", full_budgets(), AdaptOptions(), log)
        curves[label] = {"none": [Point(0, 0, 0.0, "none", none)], "tailor": tailor, "full": full}
        target = tailor[-1].hqnr
        t_seconds, _ = seconds_to(tailor, target)
        f_seconds, reached = seconds_to(full, target)
        best = max(full, key=lambda p: p.hqnr)
        full_text = f"{f_seconds:.1f}" if reached else f"never; best {best.hqnr:.4f} at {f_seconds:.1f}"
        rows.append(
            f"| {label} | {none:.4f} | {target:.4f} | {t_seconds:.2f} | {best.hqnr:.4f} ({best.steps} steps, "
            f"{full[-1].stopped}) | {full_text} | {f_seconds / t_seconds:.1f}x |"
        )
    _plot(curves, plot)
    return rows, curves


def _plot(curves: dict[str, dict[str, list[Point]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 4.2), squeeze=False)
    for ax, (label, modes) in zip(axes[0], curves.items()):
        ax.axhline(modes["none"][0].hqnr, color="grey", linestyle="--", label="none (direct transfer)")
        for mode, style in (("tailor", "o-"), ("full", "s-")):
            points = modes[mode]
            ax.plot([p.seconds for p in points], [p.hqnr for p in points], style, label=mode)
        ax.set_xscale("log")
        ax.set_xlabel("adaptation seconds (log)")
        ax.set_ylabel("HQNR")
        ax.set_title(f"{MODEL} on imgWV2, {label}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
