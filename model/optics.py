"""The thin-lens defocus model (``shared/FORMATS.md``, "Thin-lens conventions").

For an object at depth ``d`` imaged by a lens of focal length ``f`` and aperture ``A = f / N`` focused
at ``d_f``, the circle of confusion on the sensor has diameter

    c = A * f * |d - d_f| / (d * (d_f - f))        metres,

and the Gaussian PSF standing for that uniform disc has standard deviation ``sigma = c / (4 p)``
pixels (moment-matched), ``p`` the pixel pitch. Functions here work on Python floats, NumPy arrays and
torch tensors alike (broadcasting as usual); ``defocus_sigma_map`` is the batched torch form.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, Sequence, TypeVar

__all__ = [
    "ThinLensLike",
    "coc_diameter_m",
    "coc_sigma_px",
    "defocus_sigma_map",
    "working_range_m",
    "max_sigma_px",
    "check_focus_distances",
]

T = TypeVar("T")


class ThinLensLike(Protocol):
    """Anything with the three thin-lens numbers (e.g. :class:`model.lens.LensProfile`)."""

    focal_length_m: float
    f_number: float
    pixel_pitch_m: float


def _abs(x: Any) -> Any:
    return x.abs() if hasattr(x, "abs") and not isinstance(x, (int, float)) else abs(x)


def coc_diameter_m(depth_m: T, focus_m: Any, lens: ThinLensLike) -> T:
    """Circle-of-confusion diameter on the sensor, metres.

    Args:
        depth_m: object depth ``d`` in metres (float, array or tensor; must be > f).
        focus_m: focus distance ``d_f`` in metres (broadcasts against ``depth_m``; must be > f).
        lens: the thin lens.
    """
    f = lens.focal_length_m
    aperture = f / lens.f_number
    return aperture * f * _abs(depth_m - focus_m) / (depth_m * (focus_m - f))  # type: ignore[operator]


def coc_sigma_px(depth_m: T, focus_m: Any, lens: ThinLensLike) -> T:
    """Standard deviation of the moment-matched Gaussian PSF, pixels: ``c / (4 p)``."""
    return coc_diameter_m(depth_m, focus_m, lens) / (4.0 * lens.pixel_pitch_m)  # type: ignore[operator]


def defocus_sigma_map(depth_m: Any, focus_m: Any, lens: ThinLensLike) -> Any:
    """Blur map of every slice of a stack (torch).

    Args:
        depth_m: ``(B, 1, H, W)`` depth in metres.
        focus_m: ``(B, S)`` focus distances in metres.
        lens: the thin lens.

    Returns:
        ``(B, S, H, W)`` Gaussian PSF standard deviation in pixels.
    """
    if depth_m.dim() != 4 or depth_m.shape[1] != 1:
        raise ValueError(f"depth must be (B, 1, H, W), got {tuple(depth_m.shape)}")
    if focus_m.dim() != 2 or focus_m.shape[0] != depth_m.shape[0]:
        raise ValueError(f"focus must be (B, S) with B={depth_m.shape[0]}, got {tuple(focus_m.shape)}")
    return coc_sigma_px(depth_m, focus_m[:, :, None, None].to(depth_m.dtype), lens)


def check_focus_distances(focus_m: Sequence[float], lens: ThinLensLike | None = None, what: str = "focus") -> list[float]:
    """Validate focus distances: positive, finite, beyond the focal length. Returns them as floats."""
    out = []
    for i, v in enumerate(focus_m):
        if isinstance(v, bool) or not isinstance(v, (int, float)) and not hasattr(v, "__float__"):
            raise ValueError(f"{what}[{i}]: expected a number, got {v!r}")
        x = float(v)
        if not math.isfinite(x) or x <= 0:
            raise ValueError(f"{what}[{i}]: focus distance must be a positive finite number of metres, got {v!r}")
        if lens is not None and x <= lens.focal_length_m:
            raise ValueError(f"{what}[{i}]: focus distance {x} m is not beyond the focal length {lens.focal_length_m} m")
        out.append(x)
    return out


def working_range_m(focus_m: Sequence[float], lens: ThinLensLike) -> tuple[float, float]:
    """Depth range a model predicts in, derived from the focus distances: ``[d_min / 2, 2 d_max]``.

    The near end is kept at least 1.5 focal lengths from the lens. Returns ``(near_m, far_m)``.
    """
    fs = check_focus_distances(focus_m, lens)
    if not fs:
        raise ValueError("need at least one focus distance")
    near = max(0.5 * min(fs), 1.5 * lens.focal_length_m)
    far = 2.0 * max(fs)
    return near, far


def max_sigma_px(focus_m: Sequence[float], lens: ThinLensLike, near_m: float, far_m: float) -> float:
    """Largest PSF standard deviation (pixels) over the focus distances and depths in ``[near, far]``.

    The blur is monotonic in depth on either side of the focus distance, so the extremes are at the
    ends of the range.
    """
    fs = check_focus_distances(focus_m, lens)
    return max(max(coc_sigma_px(near_m, f, lens), coc_sigma_px(far_m, f, lens)) for f in fs)
