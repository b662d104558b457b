"""cli.py: parameter errors name their flag, an unforeseen error is one line and exit 1, Ctrl-C exit 130."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import _one_error_line, cli


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
        # Ctrl-C as a terminal delivers it, even where this test runs as a background job (which ignores SIGINT)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob(".o.tif.work-*/o.tiles.zarr")):
        time.sleep(0.1)  # interrupt once the run is under way: its cluster up, its ingest begun
    time.sleep(0.5)
    os.killpg(run.pid, signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    lines = [line for line in stderr.splitlines() if line.strip() and "━" not in line and "warning:" not in line]
    assert run.returncode == 130 and lines == [
        "error: interrupted; nothing was written at the output (a --work-dir keeps its work for --resume)"
    ], stderr
    assert list(tmp_path.iterdir()) == []


def test_the_cli_speaks_like_other_command_lines(tmp_path):
    from pansharp_dist import __version__

    assert cli("--version").stdout.strip() == f"pansharp-dist {__version__}"
    short, long = cli("run", "-h"), cli("run", "--help")
    assert short.returncode == 0 and short.stdout == long.stdout
    assert "--overwrite " in short.stdout and "<bool>" not in short.stdout  # a flag takes no value
    assert "[tailor|full|none]" in short.stdout.replace("<", "[").replace(">", "]")  # choices shown
    assert "--tile-side" in cli("adapt", "-h").stdout  # --patch means the .mat patch index only
    refused = cli("run", "--pan", "p.tif", "--ms", "m.tif", "--out", str(tmp_path / "o.tif"), "--adapt", "most")
    assert refused.returncode == 2 and "'most' is not one of" in refused.stderr  # checked as a choice


def test_json_errors_are_json_on_stdout_with_the_exit_status(tmp_path):
    result = cli(
        "run", "--pan", str(tmp_path / "missing.tif"), "--ms", "m.tif", "--out", str(tmp_path / "o.tif"), "--json"
    )
    assert result.returncode == 2
    report = json.loads(result.stdout)
    assert report["exit"] == 2 and "missing.tif" in report["error"]
    assert result.stderr.startswith("error:") and len(result.stderr.strip().splitlines()) == 1


def test_the_run_command_offers_exactly_the_library_s_extents_and_dtypes():
    """The CLI spells its choices out (importing the library's lists would load numpy and dask for --help);
    they must stay the library's."""
    import typing

    from pansharp_dist import cli
    from pansharp_dist.alignment import EXTENTS
    from pansharp_dist.fusion import OUTPUT_DTYPES

    def choices(annotation) -> tuple[str, ...]:
        option = typing.get_args(annotation)[0]  # Annotated[T, typer.Option(...)]: T
        literal = next(a for a in (option, *typing.get_args(option)) if typing.get_origin(a) is typing.Literal)
        return typing.get_args(literal)

    hints = typing.get_type_hints(cli.run, include_extras=True)
    assert choices(hints["extent"]) == EXTENTS and choices(hints["dtype"]) == OUTPUT_DTYPES
