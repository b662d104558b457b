"""Quality assessment: sensor MTF filters, the Wald protocol and pansharpening metrics."""

from .metrics import ergas, psnr, q2n, sam, scc
from .mtf import degrade, degrade_arrays, interp23, mtf_filter, mtf_kernel

__all__ = ["degrade", "degrade_arrays", "ergas", "interp23", "mtf_filter", "mtf_kernel", "psnr", "q2n", "sam", "scc"]
