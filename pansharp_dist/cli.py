"""The ``pansharp-dist`` command line: a thin shell over the library.

Library errors (:class:`PansharpError`) become one line on stderr and exit
status 2, with no traceback. Progress goes to stderr; ``--json`` prints one
JSON object on stdout.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import warnings
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from .errors import PansharpError

# plain help: flags shown as flags (--overwrite), choices as choices (--adapt [tailor|full|none]); -h as --help
_HELP = {"rich_markup_mode": None, "context_settings": {"help_option_names": ["-h", "--help"]}}
app = typer.Typer(add_completion=False, no_args_is_help=True, **_HELP)  # type: ignore[arg-type]
models_app = typer.Typer(
    no_args_is_help=True,
    help="Pretrained networks: list the shipped ones, import checkpoints.",
    **_HELP,  # type: ignore[arg-type]
)
app.add_typer(models_app, name="models")
err = Console(stderr=True)

Pan = Annotated[str, typer.Option("--pan", help="PAN GeoTIFF/COG path or URL, or a .mat file.")]
Ms = Annotated[str, typer.Option("--ms", help="MS GeoTIFF/COG path or URL, or a .mat file.")]
Sensor = Annotated[str | None, typer.Option("--sensor", help="Sensor (wv3, wv2, qb, ge1, ikonos, pleiades, landsat8).")]
Tile = Annotated[int, typer.Option("--tile", help="Tile size in PAN pixels.")]
Scheduler = Annotated[
    str,
    typer.Option(
        "--scheduler",
        help="'auto' (in this process for scenes up to 256 PAN megapixels, else 'local'), 'threads' "
        "(in this process), 'local' (worker processes), 'cuda' (dask-cuda, one worker per GPU) or a scheduler "
        "address tcp:// or tls://HOST:PORT.",
    ),
]
Workers = Annotated[int | None, typer.Option("--workers", help="Worker processes of a local cluster.")]
Device = Annotated[str | None, typer.Option("--device", help="'cpu' or 'cuda' (default: cuda when present).")]
TlsConfig = Annotated[
    Path | None, typer.Option("--tls-config", help="Dask YAML config with the TLS certificates (tls:// only).")
]
TaskMp = Annotated[float, typer.Option("--task-mp", help="PAN megapixels per task (a block of tiles).")]
Patch = Annotated[int | None, typer.Option("--patch", help="Patch index in .mat patch stacks.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]
Json = Annotated[
    bool, typer.Option("--json", help="Print one JSON object on stdout: the result, or {error, exit} on failure.")
]
AdaptMode = Annotated[
    Literal["tailor", "full", "none"] | None,
    typer.Option("--adapt", help="Networks: tailor (default: the Feature Tailor), full (every weight) or none."),
]
Compress = Annotated[
    str | None,
    typer.Option(
        "--compress",
        help="COG compression: ZSTD[:LEVEL] (1-22), DEFLATE[:LEVEL] (1-9) or NONE; default ZSTD:9, ZSTD:1 when a "
        "GPU fuses.",
    ),
]


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"pansharp-dist {__version__}")
        raise typer.Exit()


@app.callback()
def _commands(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Distributed pansharpening on Dask: PAN + MS to a cloud-optimized GeoTIFF, classical methods or pretrained
    networks adapted to each scene by a Feature Tailor."""


FLAGS = {
    "tile": "--tile",
    "task_megapixels": "--task-mp",
    "weights": "--weights",
    "steps": "--adapt-steps",
    "patch": "--patch",
    "seconds": "--seconds",
    "adapt": "--adapt",
    "device": "--device",
    "work_dir": "--work-dir",
    "resume": "--resume",
    "out": "--out",
    "extent": "--extent",
    "dtype": "--dtype",
}
"""The flag that sets each parameter the library names in its errors (:class:`InvalidParameterError`)."""
ADAPT_FLAGS = {
    **FLAGS,
    "k": "--tiles",
    "steps": "--steps",
    "mode": "--mode",
    "patch": "--tile-side",
    "model": "--model",
}


_PARAMETER = re.compile(r"`(\w+)(?:=([^`]*))?`")


def in_cli_terms(message: str, flags: dict[str, str] = FLAGS) -> str:
    """A library message as the command line says it: each parameter the library names in backquotes
    (`` `work_dir` ``, `` `overwrite=True` ``, `` `scheduler='local'` ``) becomes the flag that sets it
    (``--work-dir``, ``--overwrite``, ``--scheduler local``)."""

    def flag(match: re.Match[str]) -> str:
        name, value = match.groups()
        option = flags.get(name, "--" + name.replace("_", "-"))
        return option if value in (None, "True") else f"{option} {value.strip(chr(39) + chr(34))}"

    return _PARAMETER.sub(flag, message)


@contextmanager
def _edge(quiet: bool = False, flags: dict[str, str] = FLAGS):
    """Turn library errors into one line and exit 2 (a parameter's error names its flag, from ``flags``);
    show warnings as one line each."""

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001
        if not quiet:
            err.print(
                f"[yellow]warning:[/] {escape(in_cli_terms(str(message), flags))}", highlight=False, soft_wrap=True
            )

    previous = warnings.showwarning
    warnings.showwarning = show
    if not os.environ.get("PANSHARP_DEBUG"):
        # the libraries' own error logs (a lost scheduler or worker, zarr's writes in flight when a run failed)
        # would repeat, with tracebacks, what the command says in one line; PANSHARP_DEBUG=1 keeps them
        logging.disable(logging.ERROR)
    try:
        yield
    except PansharpError as exc:
        message = in_cli_terms(str(exc), flags)
        flag = flags.get(getattr(exc, "parameter", None) or "")
        prefix = f"{flag}: " if flag and flag not in message else ""
        _fail(f"{prefix}{message}", 2, quiet)
    except KeyboardInterrupt:
        _fail("interrupted; nothing was written at the output (a --work-dir keeps its work for --resume)", 130, quiet)
    finally:
        warnings.showwarning = previous


def _fail(message: str, status: int, as_json: bool) -> None:
    """End the command: one ``error:`` line on stderr (and, for ``--json``, ``{"error", "exit"}`` on stdout)."""
    err.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    if as_json:
        typer.echo(json.dumps({"error": message, "exit": status}))
    raise typer.Exit(status) from None


@contextmanager
def _progress(enabled: bool):
    """A rich progress bar on stderr, fed by ``callback(phase, done, total)``.

    The bar appears with the first report, so runs that fail validation print
    nothing but their error line.
    """
    if not enabled:
        yield None
        return
    columns = (
        TextColumn("{task.description:>7}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
    )
    bar = Progress(*columns, console=err, transient=False)
    tasks: dict[str, TaskID] = {}

    def update(phase: str, done: int, total: int, note: str | None = None) -> None:
        if not tasks:
            bar.start()
        if phase not in tasks:
            tasks[phase] = bar.add_task(phase, total=total, note="")
        if note is None:
            bar.update(tasks[phase], completed=done, total=total)
        else:
            bar.update(tasks[phase], completed=done, total=total, note=note)

    try:
        yield update
    finally:
        if tasks:
            bar.stop()


def _weights(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    from .errors import InvalidParameterError

    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InvalidParameterError(f"--weights must be comma-separated numbers, got {text!r}") from None


@app.command()
def run(
    pan: Pan,
    ms: Ms,
    out: Annotated[Path, typer.Option("--out", help="Output COG path.")],
    method: Annotated[
        str, typer.Option("--method", help="brovey, gsa, mtf-glp-hpm or a model id (pansharp-dist models list).")
    ] = "brovey",
    sensor: Sensor = None,
    tile: Tile = 512,
    task_mp: TaskMp = 4.0,
    scheduler: Scheduler = "auto",
    workers: Workers = None,
    tls_config: TlsConfig = None,
    work_dir: Annotated[
        Path | None, typer.Option("--work-dir", help="Keep the Zarr stores and adaptation here.")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted run kept in --work-dir.")] = False,
    compress: Compress = None,
    overwrite: Overwrite = False,
    json_out: Json = False,
    patch: Patch = None,
    weights: Annotated[str | None, typer.Option("--weights", help="Brovey weights, comma-separated.")] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="Networks: 'cpu' or 'cuda' (default: cuda when present).")
    ] = None,
    adapt: AdaptMode = None,
    adapt_steps: Annotated[int, typer.Option("--adapt-steps", help="Networks: step budget of the adaptation.")] = 300,
    tailor: Annotated[
        Path | None,
        typer.Option("--tailor", help="Networks: apply this saved tailor (pansharp-dist adapt) instead of adapting."),
    ] = None,
    extent: Annotated[
        Literal["pan", "overlap", "union"],
        typer.Option(
            "--extent",
            help="Output grid, as gdal_pansharpen's -spat_adjust: pan (the PAN raster's), overlap (pixels both "
            "inputs cover) or union (both footprints); nodata where the MS does not reach.",
        ),
    ] = "pan",
    dtype: Annotated[
        Literal["uint8", "uint16", "int16", "uint32", "int32", "float32", "float64"] | None,
        typer.Option(
            "--dtype",
            help="Output data type, values in the MS's units (integers rounded and clipped, 0 kept for nodata); "
            "default the MS's, float32 for float MS.",
        ),
    ] = None,
) -> None:
    """Pansharpen a PAN + MS pair into a cloud-optimized GeoTIFF."""
    from .adapt.options import AdaptOptions
    from .pipeline import run as run_pipeline

    with _edge(quiet=json_out), _progress(not json_out) as progress:
        report = run_pipeline(
            pan,
            ms,
            out,
            method=method,
            sensor=sensor,
            tile=tile,
            task_megapixels=task_mp,
            patch=patch,
            weights=_weights(weights),
            device=device,
            adapt=adapt,
            adapt_options=AdaptOptions(steps=adapt_steps),
            tailor=tailor,
            extent=extent,
            dtype=dtype,
            scheduler=scheduler,
            workers=workers,
            tls_config=tls_config,
            work_dir=work_dir,
            resume=resume,
            compress=compress,
            overwrite=overwrite,
            progress=progress,
        )
    if json_out:
        typer.echo(json.dumps(report.to_dict()))
    else:
        err.print(
            f"wrote {report.output} ({report.bytes / 1e6:.1f} MB) in {report.seconds:.1f} s; "
            f"computed {report.computed_blocks} of {report.blocks} blocks",
            highlight=False,
        )


@app.command()
def ingest(
    pan: Pan,
    ms: Ms,
    out: Annotated[Path, typer.Option("--out", help="Zarr tile store to create.")],
    sensor: Sensor = None,
    tile: Tile = 512,
    task_mp: TaskMp = 4.0,
    scheduler: Scheduler = "auto",
    workers: Workers = None,
    tls_config: TlsConfig = None,
    overwrite: Overwrite = False,
    json_out: Json = False,
    patch: Patch = None,
) -> None:
    """Write a PAN + MS pair to a Zarr v3 tile store with per-scene statistics."""
    from .pipeline import ingest_scene

    with _edge(quiet=json_out), _progress(not json_out) as progress:
        scene = ingest_scene(
            pan,
            ms,
            out,
            sensor=sensor,
            tile=tile,
            task_megapixels=task_mp,
            patch=patch,
            scheduler=scheduler,
            workers=workers,
            tls_config=tls_config,
            overwrite=overwrite,
            progress=progress,
        )
    assert scene.stats is not None  # a scene opened from its tile store has its statistics
    summary = {
        "store": str(out),
        "height": scene.shape[0],
        "width": scene.shape[1],
        "bands": scene.bands,
        "ratio": scene.ratio,
        "sensor": scene.sensor,
        "valid_pixels": scene.stats.pan_count,
    }
    typer.echo(json.dumps(summary) if json_out else f"wrote tile store {out} {summary}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo's outputs.")] = Path("pansharp-demo"),
    method: Annotated[
        str,
        typer.Option("--method", help="A network (adapted to the scene by a Feature Tailor) or a classical method."),
    ] = "pannet-qb",
    scheduler: Scheduler = "auto",
    workers: Workers = None,
    json_out: Json = False,
) -> None:
    """Pansharpen the embedded sample scene: a pretrained network adapted to it by the Feature Tailor, a COG, a
    PNG quicklook and a summary."""
    from rio_cogeo.cogeo import cog_validate

    from .export import write_quicklook
    from .pipeline import run as run_pipeline
    from .sensors import UnknownSensorWarning

    sample = resources.files("pansharp_dist") / "sample"
    with _edge(quiet=json_out), warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownSensorWarning)  # the sample's sensor is not stated: the summary says so
        out.mkdir(parents=True, exist_ok=True)
        cog = out / "demo.tif"
        with _progress(not json_out) as progress:
            report = run_pipeline(
                str(sample / "pan.tif"),
                str(sample / "ms.tif"),
                cog,
                method=method,
                tile=256,
                scheduler=scheduler,
                workers=workers,
                overwrite=True,
                progress=progress,
            )
        png = write_quicklook(cog, out / "demo.png")
    valid, errors, _ = cog_validate(str(cog))
    adaptation = report.adaptation
    adapted = (
        f"Feature Tailor, {adaptation['steps']} steps in {adaptation['seconds']:.1f} s on {adaptation['tiles']} tiles"
        if adaptation
        else "none"
    )
    summary = {**report.to_dict(), "quicklook": str(png), "valid_cog": valid}
    if json_out:
        typer.echo(json.dumps(summary))
    else:
        table = Table(title="pansharp-dist demo", show_header=False)
        rows = [
            ("input", "embedded sample: 4-band VHR, 0.5 m PAN (MIT, see pansharp_dist/sample/README.md)"),
            ("grid", f"{report.width} x {report.height} PAN pixels, ratio {report.ratio}, {report.crs}"),
            ("sensor", "not stated by the source: default MTF gains"),
            ("method", report.method),
            ("adaptation", adapted),
            ("seconds", f"{report.seconds:.2f}"),
            (
                "COG",
                f"{cog} ({report.bytes / 1e6:.2f} MB), valid COG: {valid}{'' if valid else ' ' + '; '.join(errors)}",
            ),
            ("quicklook", str(png)),
        ]
        for key, value in rows:
            table.add_row(key, value)
        Console().print(table)
    if not valid:
        raise typer.Exit(1)


@app.command("eval")
def evaluate(
    pan: Pan,
    ms: Ms,
    fused: Annotated[Path | None, typer.Option("--fused", help="Pansharpened image on the PAN grid.")] = None,
    reference: Annotated[
        Path | None, typer.Option("--reference", help="Ground truth: adds reduced-resolution metrics.")
    ] = None,
    protocol: Annotated[
        Literal["full", "reduced"],
        typer.Option(
            "--protocol", help="'full' (score --fused) or 'reduced' (Wald: degrade, fuse with --method, score)."
        ),
    ] = "full",
    method: Annotated[str | None, typer.Option("--method", help="Method for --protocol reduced.")] = None,
    sensor: Sensor = None,
    patch: Patch = None,
    scheduler: Scheduler = "local",
    workers: Workers = None,
    tls_config: TlsConfig = None,
    json_out: Json = False,
) -> None:
    """Quality metrics: full resolution (QNR, HQNR...) or reduced resolution (SAM, ERGAS, Q2n...)."""
    from .cluster import connect
    from .errors import InvalidParameterError
    from .quality.evaluate import evaluate as evaluate_fused
    from .quality.evaluate import evaluate_reduced_protocol

    with _edge(quiet=json_out):
        if protocol == "reduced" and method is None:
            raise InvalidParameterError("--protocol reduced needs --method (the method to degrade, fuse and score)")
        if protocol == "full" and fused is None:
            raise InvalidParameterError(
                "give the pansharpened image with --fused (or use --protocol reduced --method M)"
            )
        with connect(scheduler, workers, tls_config) as client:
            if protocol == "reduced":
                assert method is not None  # checked above
                scores = evaluate_reduced_protocol(pan, ms, method, sensor=sensor, patch=patch, client=client)
            else:
                assert fused is not None  # checked above
                scores = evaluate_fused(pan, ms, fused, reference=reference, sensor=sensor, patch=patch, client=client)
    if json_out:
        typer.echo(json.dumps(scores))
        return
    table = Table(title=f"quality ({protocol} resolution)", show_header=False)
    for name, value in scores.items():
        table.add_row(name, f"{value:.4f}")
    Console().print(table)


@app.command()
def bench(
    pan: Pan,
    ms: Ms,
    method: Annotated[str, typer.Option("--method", help="brovey, gsa, mtf-glp-hpm or a model id.")] = "brovey",
    sensor: Sensor = None,
    tile: Tile = 512,
    task_mp: TaskMp = 4.0,
    scheduler: Annotated[
        str,
        typer.Option(
            "--scheduler",
            help="'local' (a new cluster of worker processes, timed without its start), 'threads' "
            "(this process) or a scheduler address.",
        ),
    ] = "local",
    workers: Workers = None,
    adapt: Annotated[
        str | None, typer.Option("--adapt", help="Networks: 'tailor' (default), 'full' or 'none'.")
    ] = None,
    device: Device = None,
    repeats: Annotated[int, typer.Option("--repeats", help="Runs to time; the medians are reported.", min=1)] = 3,
    json_out: Json = False,
) -> None:
    """Time run on your scene and cluster: seconds per phase, PAN megapixels per second, peak memory."""
    import tempfile
    from statistics import median

    from .timing import measured_run

    with _edge(quiet=json_out), tempfile.TemporaryDirectory(prefix="pansharp-bench-") as folder:
        runs = [
            measured_run(
                pan,
                ms,
                Path(folder) / "bench.tif",
                workers,
                scheduler=scheduler,
                method=method,
                sensor=sensor,
                tile=tile,
                task_megapixels=task_mp,
                adapt=adapt,
                device=device,
            )
            for _ in range(repeats)
        ]
    phases = {name: round(median(r.phases.get(name, 0.0) for r in runs), 3) for name in runs[0].phases}
    summary = {
        "method": runs[0].report.method,
        "megapixels": runs[0].report.width * runs[0].report.height / 1e6,
        "runs": repeats,
        "seconds": round(median(r.seconds for r in runs), 3),
        "seconds_each": [round(r.seconds, 3) for r in runs],
        "phase_ends": phases,
        "megapixels_per_second": round(median(r.megapixels_per_second for r in runs), 3),
        "peak_client_mib": round(max(r.client_peak for r in runs) / 2**20),
        "peak_worker_mib": round(max(r.worker_peak for r in runs) / 2**20),
    }
    if json_out:
        typer.echo(json.dumps(summary))
        return
    table = Table(title=f"{summary['method']} on {summary['megapixels']:.1f} PAN MP, median of {repeats} runs")
    for col in ("seconds", *(f"{name} ends (s)" for name in phases), "PAN MP/s", "peak client MiB", "peak worker MiB"):
        table.add_column(col)
    table.add_row(
        f"{summary['seconds']:.2f}",
        *(f"{v:.2f}" for v in phases.values()),
        f"{summary['megapixels_per_second']:.2f}",
        str(summary["peak_client_mib"]),
        str(summary["peak_worker_mib"]),
    )
    Console().print(table)


@app.command()
def adapt(
    zarr: Annotated[Path, typer.Option("--zarr", help="Tile store of the scene (pansharp-dist ingest).")],
    model: Annotated[str, typer.Option("--model", help="Model id (pansharp-dist models list).")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the tailor (.safetensors).")],
    mode: Annotated[
        Literal["tailor", "full"], typer.Option("--mode", help="tailor, or full to fine-tune the whole network.")
    ] = "tailor",
    tiles: Annotated[int, typer.Option("--tiles", help="Tiles to train on.")] = 16,
    tile_side: Annotated[int, typer.Option("--tile-side", help="Side of the training tiles, PAN pixels.")] = 64,
    strategy: Annotated[
        Literal["random", "grid", "farthest", "manifold"], typer.Option("--strategy", help="How tiles are sampled.")
    ] = "manifold",
    steps: Annotated[int, typer.Option("--steps", help="Step budget.")] = 300,
    seconds: Annotated[float, typer.Option("--seconds", help="Time budget.")] = 120.0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    degradation: Annotated[
        Literal["mtf", "bicubic"],
        typer.Option(
            "--degradation",
            help="Spectral loss: 'mtf' (the sensor's MTF; real scenes) or 'bicubic' (data reduced by imresize).",
        ),
    ] = "mtf",
    device: Device = None,
    overwrite: Overwrite = False,
    json_out: Json = False,
) -> None:
    """Adapt a pretrained network to one scene and save the result (a tailor of a few tens of KB); run --tailor
    applies it."""
    from .adapt.options import AdaptOptions
    from .errors import InvalidParameterError
    from .methods import check_method, is_network
    from .outputs import atomic_write, check_output
    from .store import open_store

    with _edge(quiet=json_out, flags=ADAPT_FLAGS), _progress(not json_out) as progress:
        check_output(out, overwrite, inputs=(zarr,))
        options = AdaptOptions(  # checked here, before torch is imported
            k=tiles,
            patch=tile_side,
            strategy=strategy,
            steps=steps,
            seconds=seconds,
            seed=seed,
            degradation=degradation,
        )
        scene = open_store(zarr)
        step_progress = (
            (lambda done, total, loss: progress("adapt", done, total, f"loss {loss:.4g}")) if progress else None
        )
        if not is_network(check_method(model)):  # make_fuser would pass a classical method `device` (a TypeError)
            raise InvalidParameterError(
                f"`model={model}` is a classical method: only pretrained networks are adapted "
                "(pansharp-dist models list)",
                "model",
            )
        from .adapt.training import adapt_fuser
        from .fusion import make_fuser
        from .models.network import NetworkFuser

        base = make_fuser(scene, model, device=device)
        assert isinstance(base, NetworkFuser)  # a network's fuser
        fuser, report = adapt_fuser(scene, base, mode, options, progress=step_progress)
        weights = fuser.weights
        assert weights is not None  # mode is one of TRAINED
        atomic_write(out, weights)
    size = out.stat().st_size
    summary = {
        "out": str(out),
        "bytes": size,
        "model": model,
        "mode": mode,
        "steps": report.steps,
        "seconds": round(report.seconds, 3),
        "tiles": report.tiles,
        "stopped": report.stopped,
        "kept_step": report.kept_step,
        "terms": report.terms,
        "losses": [round(v, 6) for v in report.losses],
    }
    typer.echo(
        json.dumps(summary)
        if json_out
        else f"wrote {out} ({size / 1e3:.1f} KB): {report.steps} steps in {report.seconds:.1f} s "
        f"on {len(report.tiles)} tiles, stopped: {report.stopped}; kept the weights before step "
        f"{report.kept_step} (lowest loss)"
    )


@models_app.command("list")
def models_list(json_out: Json = False) -> None:
    """The shipped pretrained networks and their cards."""
    from dataclasses import asdict

    from .models import list_models

    cards = list_models()
    if json_out:
        typer.echo(json.dumps([asdict(c) for c in cards]))
        return
    table = Table(title="pretrained networks: <architecture>-<sensor> ids for --method")
    table.add_column("id", no_wrap=True)
    for col in ("bands", "weights", "receptive radius (PAN px)", "own-sensor check", "adapted (tailor)"):
        table.add_column(col)
    for c in cards:
        verdicts = [c.native_verdict(mode) for mode in ("none", "tailor")]
        table.add_row(
            c.id,
            str(len(c.bands)),
            f"{c.parameters:,}",
            str(c.receptive_radius),
            *(v if v in ("pass", "not run") else f"[yellow]{v}[/]" for v in verdicts),
        )
    Console().print(table)
    err.print(
        "weights: DLPan-Toolbox (GPL-2.0); attribution in pansharp_dist/models/weights/README.md", highlight=False
    )
    err.print(
        "own-sensor check: beats plain upsampling and every classical method on ERGAS and SAM, "
        "reduced resolution, on data of the sensor it was trained on, as trained and adapted to the "
        "scene by the Feature Tailor (python -m benchmarks networks; docs/quality.md)",
        highlight=False,
    )


@models_app.command("import")
def models_import(
    path: Annotated[Path, typer.Argument(help="PanCollection/DLPan-Toolbox state dict (.pth).")],
    arch: Annotated[str, typer.Option("--arch", help="fusionnet, pannet, dicnn or pnn.")],
    sensor: Annotated[str, typer.Option("--sensor", help="Sensor the network was trained on (wv3, wv2, qb, ge1...).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for <id>.safetensors and <id>.json.")] = Path("."),
    json_out: Json = False,
) -> None:
    """Convert a checkpoint to safetensors plus a model card (tensors only: no pickled code is run)."""
    from dataclasses import asdict

    from .models import import_checkpoint

    with _edge(quiet=json_out):
        meta = import_checkpoint(path, arch, sensor, out)
    if json_out:
        typer.echo(json.dumps(asdict(meta)))
    else:
        err.print(
            f"wrote {out / meta.id}.safetensors and {out / meta.id}.json ({meta.parameters:,} weights)", highlight=False
        )


def main() -> None:
    """Console-script entry point: the commands, with a last guard. An error the library did not foresee is
    one ``error:`` line asking for a report, exit 1 (``PANSHARP_DEBUG=1`` shows its traceback); Ctrl-C is one
    line, exit 130 (:func:`_edge`). GDAL's own messages to standard error (warnings about a file's tags, say)
    are silenced unless ``CPL_LOG`` names where they go: the CLI reports what matters as its own lines."""
    os.environ.setdefault("CPL_LOG", os.devnull)
    if not os.environ.get("PANSHARP_DEBUG"):  # coroutines of zarr's writes collected after a failed run's loop closed
        sys.unraisablehook = lambda unraisable: None
    # the process's children (a local cluster's workers and its resource tracker) would warn of what a
    # Ctrl-C left them, after the run's own line
    os.environ.setdefault("PYTHONWARNINGS", "ignore::UserWarning:multiprocessing.resource_tracker")
    try:
        app()
    except Exception as exc:  # noqa: BLE001  (the last guard: every library error was turned into exit 2 above)
        if os.environ.get("PANSHARP_DEBUG"):
            raise
        from .redact import redact_text

        err.print(
            f"[red]error:[/] unexpected {type(exc).__name__}: "
            f"{escape(redact_text(str(exc)).splitlines()[0]) if str(exc) else ''}"
            " -- this is a bug: please report it to the pansharp-dist maintainers with the command you ran; "
            "PANSHARP_DEBUG=1 shows the traceback",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
