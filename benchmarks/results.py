"""Where the benchmarks find their data and write their tables.

Each benchmark section is one Markdown file in ``docs/results/`` (``<name>.md``),
rewritten whole by the command that measures it; the prose of
``docs/benchmarks.md`` and ``docs/quality.md`` links to these files and is
never edited by code.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path

import rasterio

RESULTS = Path("docs") / "results"


def shared_data() -> Path:
    """The real PAN + MS pairs in ``../shared/data`` beside the checkout.

    Raises:
        FileNotFoundError: the folder is not there.
    """
    for parent in Path(__file__).resolve().parents:
        candidate = parent.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("benchmark data not found: put the shared data in ../shared/data beside the checkout")


def write_result(folder: Path, name: str, body: str) -> Path:
    """Write one section's table, with its heading and settings, as ``folder/<name>.md``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.md"
    path.write_text(body.strip("\n") + "\n")
    return path


def machine() -> str:
    """This machine in one line: cores, CPU model, memory, Python and GDAL versions."""
    cpu = platform.processor() or platform.machine()
    info = Path("/proc/cpuinfo")
    if info.exists():
        found = re.search(r"model name\s*:\s*(.+)", info.read_text())
        cpu = found.group(1).strip() if found else cpu
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    try:
        gdal_cli = subprocess.run(["gdalinfo", "--version"], capture_output=True, text=True).stdout.strip()
    except FileNotFoundError:
        gdal_cli = "no GDAL command line"
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, no GPU; Python {platform.python_version()}, "
        f"rasterio GDAL {rasterio.__gdal_version__}, Debian {gdal_cli}"
    )
