"""Quality assessment: sensor MTF filters, the Wald protocol and pansharpening metrics."""

from .blockwise import full_scores_blockwise, reduced_scores_blockwise
from .fullres import full_scores
from .metrics import ergas, psnr, q2n, reduced_scores, sam, scc
from .mtf import degrade, degrade_arrays, interp23, mtf_filter, mtf_kernel

__all__ = [
    "degrade",
    "degrade_arrays",
    "ergas",
    "full_scores",
    "full_scores_blockwise",
    "interp23",
    "mtf_filter",
    "mtf_kernel",
    "psnr",
    "q2n",
    "reduced_scores",
    "reduced_scores_blockwise",
    "sam",
    "scc",
]
