"""Sharpness of a toy surface: the largest eigenvalue of its exact Hessian (Section 3.2, Table 1)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def hessian_top_eigenvalue(fn: Callable[[Tensor], Tensor], points: Tensor) -> Tensor:
    """``lambda_max(Hessian of fn)`` at each of ``points`` ``[R, D]`` -> ``[R]``.

    Exact second derivatives by autograd (``torch.func``), batched over the
    points; float64 for the eigenvalues.
    """
    # Reverse over reverse, not torch.func.hessian (forward over reverse): forward-mode autograd
    # loads torch's JVP decompositions, which call the deprecated torch.jit.script and print a
    # FutureWarning in every toy run. A surface has 2 to 10 coordinates, so the extra reverse
    # passes cost nothing that shows.
    hessians = torch.func.vmap(torch.func.jacrev(torch.func.jacrev(fn)))(points.detach().to(torch.float64))
    return torch.linalg.eigvalsh(hessians)[..., -1]
