"""Quality assessment: sensor MTF filters, the Wald protocol and pansharpening metrics."""

from .blockwise import full_resolution_metrics, reduced_resolution_metrics
from .fullres import full_resolution
from .metrics import ergas, psnr, q2n, reduced_resolution, sam, scc
from .mtf import degrade, degrade_arrays, interp23, mtf_filter, mtf_kernel

__all__ = [
    "degrade",
    "degrade_arrays",
    "ergas",
    "full_resolution",
    "full_resolution_metrics",
    "interp23",
    "mtf_filter",
    "mtf_kernel",
    "psnr",
    "q2n",
    "reduced_resolution",
    "reduced_resolution_metrics",
    "sam",
    "scc",
]
