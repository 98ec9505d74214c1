"""The window of the Gaussian PSF renderer: its constants and the one radius rule (no torch import).

Every renderer of the gather-form Gaussian PSF (:mod:`model.render` in PyTorch, the CUDA kernel, the CPU
library and the TensorRT plugin of ``export/plugins/gaussPsf``) shares these numbers, and every
re-rendering of a stack from a prediction (:func:`model.render.rerender_stack`: the physics check,
training, refinement, the exported graph) sizes its window with :func:`capped_window_radius`. This
module imports nothing heavy, so that :mod:`export.psf_ext` can use it on a device without PyTorch.
"""

from __future__ import annotations

import math
from typing import Any, Final

__all__ = [
    "MIN_SIGMA_PX",
    "MAX_RADIUS_PX",
    "DEFAULT_TRUNCATE",
    "DEFAULT_MAX_RADIUS_PX",
    "psf_window_radius",
    "capped_window_radius",
]

MIN_SIGMA_PX: Final[float] = 0.25
"""Smooth floor on the blur, pixels: ``s_eff = sqrt(sigma^2 + MIN_SIGMA_PX^2)`` (keeps ``sigma -> 0`` finite)."""

MAX_RADIUS_PX: Final[int] = 64
"""Largest window radius accepted (a ``129 x 129`` window); the CUDA/TensorRT kernels share this bound."""

DEFAULT_TRUNCATE: Final[float] = 3.0
"""Window half-size in units of the largest effective blur (``R = ceil(3 * max s_eff)``)."""

DEFAULT_MAX_RADIUS_PX: Final[int] = 32
"""Default cap on the window when a stack is re-rendered from a prediction (physics check of the runners,
refinement's check, the exported physics graph), pixels: blur beyond it is truncated (weights renormalised)."""


def psf_window_radius(max_sigma: Any, truncate: float = DEFAULT_TRUNCATE) -> int:
    """Window radius (pixels) for the largest blur in play: ``ceil(truncate * s_eff)``, at least 1.

    Args:
        max_sigma: largest PSF standard deviation, pixels (a float, or a one-element tensor/array), ``>= 0``.
        truncate: window half-size in effective standard deviations (``> 0``).

    Returns:
        ``R``; the window is ``(2R+1) x (2R+1)``. Not clipped to :data:`MAX_RADIUS_PX` (the renderer
        raises for larger windows; :func:`capped_window_radius` clips).

    Raises:
        ValueError: ``max_sigma`` negative or not finite, or ``truncate`` not positive.
    """
    if hasattr(max_sigma, "numel") and hasattr(max_sigma, "detach"):  # a torch tensor (torch is not imported here)
        if max_sigma.numel() != 1:
            raise ValueError(f"max_sigma must be a single number, got a tensor of shape {tuple(max_sigma.shape)}")
        max_sigma = float(max_sigma.detach().reshape(()).item())
    s = float(max_sigma)
    if not math.isfinite(s) or s < 0:
        raise ValueError(f"max_sigma must be a finite blur >= 0 pixels, got {max_sigma!r}")
    t = float(truncate)
    if not math.isfinite(t) or t <= 0:
        raise ValueError(f"truncate must be a positive number of standard deviations, got {truncate!r}")
    return max(1, math.ceil(t * math.sqrt(s * s + MIN_SIGMA_PX * MIN_SIGMA_PX)))


def capped_window_radius(max_sigma: Any, max_radius: int | None = DEFAULT_MAX_RADIUS_PX) -> int:
    """The window rule of a re-rendering: :func:`psf_window_radius` of the largest blur, capped at
    :data:`MAX_RADIUS_PX` and at ``max_radius`` (``None``: no cap of its own), pixels.

    Raises:
        ValueError: as :func:`psf_window_radius`, or ``max_radius`` negative.
    """
    r = min(psf_window_radius(max_sigma), MAX_RADIUS_PX)
    if max_radius is not None:
        if isinstance(max_radius, bool) or int(max_radius) < 0:
            raise ValueError(f"max_radius must be an int >= 0 pixels or None, got {max_radius!r}")
        r = min(r, int(max_radius))
    return r
