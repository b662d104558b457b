"""The project's benchmarks: ``python -m benchmarks COMMAND`` from the checkout, ``../shared/data`` beside it.

Each command measures one thing on real (mosaicked) pairs and writes its table to
``docs/results/<name>.md``; the docs link to those files. What a user times on
their own scene is ``pansharp-dist bench`` (:mod:`pansharp_dist.timing`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .results import RESULTS

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])

WorkDir = Annotated[Path, typer.Option("--work-dir", help="Folder for the benchmarks' mosaics and stores.")]
Results = Annotated[Path, typer.Option("--results", help="Folder of the Markdown tables (docs/results).")]
Workers = Annotated[int | None, typer.Option("--workers", help="Worker processes of a local cluster.")]
Device = Annotated[str | None, typer.Option("--device", help="'cpu' or 'cuda' (default: cuda when present).")]
Tile = Annotated[int, typer.Option("--tile", help="Tile size in PAN pixels.")]


def _log(message: str) -> None:
    typer.echo(message, err=True)


@app.command()
def classical(
    sizes: Annotated[str, typer.Option("--sizes", help="PAN sizes, comma-separated.")] = "8192,16384",
    work_dir: WorkDir = Path("bench-work"),
    results: Results = RESULTS,
    workers: Workers = None,
    repeats: Annotated[
        int, typer.Option("--repeats", help="Back-to-back pairs of runs per size, in alternating order.")
    ] = 2,
) -> None:
    """Brovey through the pipeline against gdal_pansharpen.py on mosaicked real scenes."""
    from .classical import run_classical_bench

    run_classical_bench(
        [int(s) for s in sizes.split(",")],
        work_dir,
        results,
        workers=workers,
        repeats=repeats,
        log=_log,
    )


@app.command()
def scale(
    sizes: Annotated[
        str, typer.Option("--sizes", help="PAN sizes of the scaling runs, comma-separated ('' for none).")
    ] = "4096,8192,16384",
    big: Annotated[
        int | None, typer.Option("--big", help="PAN size of one run whose uncompressed COG exceeds RAM.")
    ] = None,
    parallel: Annotated[
        int | None, typer.Option("--parallel", help="PAN size of the network parallel-efficiency runs.")
    ] = None,
    method: Annotated[str, typer.Option("--method", help="Method of the scaling and big runs.")] = "brovey",
    model: Annotated[str, typer.Option("--model", help="Network of the parallel-efficiency runs.")] = "fusionnet-wv2",
    work_dir: WorkDir = Path("bench-work"),
    results: Results = RESULTS,
    workers: Workers = None,
    device: Device = None,
) -> None:
    """Cost against scene size, an output larger than RAM, and parallel efficiency, on mosaicked real scenes
    (``--device cuda``: the parallel part on one GPU, with a Feature Tailor)."""
    from pansharp_dist.models.network import check_device, default_device

    from .scale import run_scale_bench

    run_scale_bench(
        results,
        work_dir,
        [int(s) for s in sizes.split(",") if s.strip()],
        big,
        parallel,
        method=method,
        model=model,
        workers=workers,
        log=_log,
        device=check_device(device or default_device()),
    )


@app.command()
def quality(
    results: Results = RESULTS,
) -> None:
    """Reduced- and full-resolution metrics of EXP and each classical method on every dataset."""
    from .quality import run_quality_bench

    run_quality_bench(results, log=_log)


@app.command()
def networks(
    results: Results = RESULTS,
    work_dir: WorkDir = Path("bench-work"),
    patches: Annotated[int | None, typer.Option("--patches", help="Score only the first N WV3 patches.")] = None,
) -> None:
    """Each pretrained network on its own sensor's data and across sensors, both protocols."""
    from .networks import run_networks_bench

    run_networks_bench(results, work_dir, log=_log, patches=patches)


@app.command()
def models(
    results: Results = RESULTS,
    device: Device = None,
    tile: Tile = 512,
    seconds: Annotated[float, typer.Option("--seconds", help="Timed seconds per network.")] = 5.0,
) -> None:
    """PAN megapixels per second of each network's forward pass."""
    from .models import run_models_bench

    run_models_bench(results, device, tile, seconds, log=_log)


@app.command()
def tailor(
    archs: Annotated[
        str, typer.Option("--archs", help="Architectures, comma-separated.")
    ] = "fusionnet,pannet,dicnn,pnn",
    steps: Annotated[int, typer.Option("--steps", help="Steps for tailor and full alike.")] = 300,
    sizes: Annotated[str, typer.Option("--sizes", help="PAN sizes of the speed scenes, comma-separated.")] = "512,2048",
    device: Device = None,
    results: Results = RESULTS,
    work_dir: WorkDir = Path("bench-work"),
    parts: Annotated[
        str,
        typer.Option(
            "--parts", help="'quality', 'speed', 'time' (time to quality against full fine-tuning), comma-separated."
        ),
    ] = "quality,speed",
) -> None:
    """Direct transfer, tailor and full fine-tuning on real cross-sensor pairs; adaptation speed."""
    from pansharp_dist.adapt.options import AdaptOptions

    from .tailor import run_tailor_bench

    run_tailor_bench(
        results,
        work_dir,
        tuple(archs.split(",")),
        AdaptOptions(steps=steps, seconds=3600.0),
        tuple(int(s) for s in sizes.split(",")),
        device,
        log=_log,
        parts=tuple(parts.split(",")),
    )


@app.command()
def codecs(
    work_dir: WorkDir = Path("bench-work"),
    results: Results = RESULTS,
    size: Annotated[int, typer.Option("--size", help="PAN size of the fused mosaic the tiles come from.")] = 4096,
    seconds: Annotated[float, typer.Option("--seconds", help="Timed seconds per codec.")] = 2.0,
) -> None:
    """Encode speed on one core and file size of each COG codec and level; encoder cores per GPU."""
    from .codecs import run_codecs_bench

    run_codecs_bench(results, work_dir, size=size, seconds=seconds, log=_log)


@app.command()
def feed(
    work_dir: WorkDir = Path("bench-work"),
    results: Results = RESULTS,
    size: Annotated[int, typer.Option("--size", help="PAN size of the mosaicked scene.")] = 8192,
    workers: Workers = None,
) -> None:
    """CPU cores one GPU needs at each codec level: the pipeline around a stand-in for the GPU's forward."""
    from .gpu_feed import run_feed_bench

    run_feed_bench(results, work_dir, size=size, workers=workers, log=_log)


@app.command()
def scaling(
    sizes: Annotated[str, typer.Option("--sizes", help="PAN sizes of the Brovey and GDAL runs.")] = "4096,8192,16384",
    network_sizes: Annotated[
        str, typer.Option("--network-sizes", help="PAN sizes of the network runs ('' for none).")
    ] = "4096,8192",
    model: Annotated[str, typer.Option("--model", help="Network of the network runs.")] = "fusionnet-wv2",
    compress: Annotated[str, typer.Option("--compress", help="COG codec and level of both sides.")] = "ZSTD:1",
    work_dir: WorkDir = Path("bench-work"),
    results: Results = RESULTS,
) -> None:
    """Throughput against workers and scene size, classical and network, against GDAL; a plot."""
    from .scaling import run_scaling_bench

    run_scaling_bench(
        results,
        work_dir,
        [int(s) for s in sizes.split(",") if s.strip()],
        [int(s) for s in network_sizes.split(",") if s.strip()],
        model=model,
        compress=compress,
        log=_log,
    )


if __name__ == "__main__":
    app()
