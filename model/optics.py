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
    "coc_sigma_px_dioptres",
    "sensor_distance_m",
    "breathing_magnification",
    "coc_px_per_dioptre",
    "blur_per_dioptre_px",
]

T = TypeVar("T")


class ThinLensLike(Protocol):
    """Anything with the three thin-lens numbers (e.g. :class:`model.lens.LensProfile`)."""

    focal_length_m: float
    f_number: float
    pixel_pitch_m: float


def _abs(x: Any) -> Any:
    return x.abs() if hasattr(x, "abs") and not isinstance(x, (int, float)) else abs(x)


def _check_blur_scale(blur_scale: float) -> float:
    s = float(blur_scale)
    if not (math.isfinite(s) and s > 0):
        raise ValueError(f"blur_scale must be a positive finite factor, got {blur_scale!r}")
    return s


def _coc_m(depth_m: Any, focus_m: Any, lens: ThinLensLike, blur_scale: float) -> Any:
    f = lens.focal_length_m
    # ``blur_scale * f / N``, written as the aperture of the f-number ``N / blur_scale`` (exactly ``f / N``
    # for a scale of 1), so that a scaled blur is bit-identical to the scaled-aperture lens it stands for
    aperture = f / (lens.f_number / blur_scale)
    return aperture * f * _abs(depth_m - focus_m) / (depth_m * (focus_m - f))


def coc_diameter_m(depth_m: T, focus_m: Any, lens: ThinLensLike) -> T:
    """Circle-of-confusion diameter on the sensor, metres.

    Args:
        depth_m: object depth ``d`` in metres (float, array or tensor; must be > f).
        focus_m: focus distance ``d_f`` in metres (broadcasts against ``depth_m``; must be > f).
        lens: the thin lens.
    """
    return _coc_m(depth_m, focus_m, lens, 1.0)  # type: ignore[no-any-return]


def coc_sigma_px(depth_m: T, focus_m: Any, lens: ThinLensLike, blur_scale: float = 1.0) -> T:
    """Standard deviation of the moment-matched Gaussian PSF, pixels: ``blur_scale * c / (4 p)``.

    ``blur_scale`` (dimensionless, > 0) widens or narrows the Gaussian that stands for the uniform disc
    (e.g. ``model.refine``'s disc-matched 1.08); 1 is the moment-matched ``c / (4 p)`` of
    ``shared/FORMATS.md``.
    """
    return _coc_m(depth_m, focus_m, lens, _check_blur_scale(blur_scale)) / (4.0 * lens.pixel_pitch_m)  # type: ignore[no-any-return]


def coc_sigma_px_dioptres(depth_m: float, focus_dpt: float, lens: ThinLensLike, blur_scale: float = 1.0) -> float:
    """:func:`coc_sigma_px` for a focus given in dioptres ``1 / d_f``, valid through and past infinity focus.

    For ``focus_dpt > 0`` this is ``coc_sigma_px(depth_m, 1 / focus_dpt, lens, blur_scale)``. At and past
    infinity (``focus_dpt <= 0``: the sensor at or nearer than ``f``, as a lens whose focus actuator
    overshoots) the same circle of confusion is evaluated in its dioptre form,
    ``c = A s |1/d_f - 1/d|`` with the sensor distance ``s`` of :func:`sensor_distance_m`.

    Args:
        depth_m: object distance, metres (> 0).
        focus_dpt: focus in dioptres (``< 1 / f``).
        lens: the thin lens.
        blur_scale: as :func:`coc_sigma_px`.

    Returns:
        Gaussian sigma, pixels.
    """
    dpt = float(focus_dpt)
    if dpt > 0:
        return float(coc_sigma_px(float(depth_m), 1.0 / dpt, lens, blur_scale))
    s = sensor_distance_m(dpt, lens)
    aperture = lens.focal_length_m / (lens.f_number / _check_blur_scale(blur_scale))
    return aperture * s * abs(dpt - 1.0 / float(depth_m)) / (4.0 * lens.pixel_pitch_m)


def coc_px_per_dioptre(focus_m: float, lens: ThinLensLike) -> float:
    """Blur-disc diameter in pixels per dioptre of defocus at focus ``focus_m``: ``A f d_f / ((d_f - f) p)``.

    :func:`coc_diameter_m` in its dioptre form: ``c / p = coc_px_per_dioptre(d_f) * |1/d - 1/d_f|``
    (the layered renderer's depth layers are spaced with it). Units: pixels * metres.
    """
    f = lens.focal_length_m
    df = float(focus_m)
    return (f / lens.f_number) * f * df / ((df - f) * lens.pixel_pitch_m)


def sensor_distance_m(focus_dpt: float, lens: ThinLensLike) -> float:
    """Lens-to-sensor distance for focus at ``focus_dpt`` dioptres: ``1 / s = 1 / f - 1 / d_f``, metres.

    ``s = f d_f / (d_f - f)``; ``focus_dpt = 0`` is focus at infinity (``s = f``), negative values are past
    infinity. Raises ``ValueError`` when the focus is not beyond the focal length (``focus_dpt >= 1 / f``).
    """
    inv = 1.0 / lens.focal_length_m - float(focus_dpt)
    if not inv > 0:
        raise ValueError(f"focus {focus_dpt} dioptres is nearer than the focal length {lens.focal_length_m} m")
    return 1.0 / inv


def breathing_magnification(focus_m: float, lens: ThinLensLike, reference_m: float = math.inf) -> float:
    """Focus breathing: image scale at focus ``focus_m`` relative to focus at ``reference_m`` (both metres,
    ``math.inf`` for infinity): ``s(focus) / s(reference)`` with :func:`sensor_distance_m` (chief rays through
    the lens centre). Relative to infinity it is ``d_f / (d_f - f)``.

    Raises ``ValueError`` for a focus distance not beyond the focal length.
    """
    def dpt(d: float, what: str) -> float:
        x = float(d)
        if math.isinf(x) and x > 0:
            return 0.0
        if not (math.isfinite(x) and x > lens.focal_length_m):
            raise ValueError(f"{what} distance {d} m is not beyond the focal length {lens.focal_length_m} m")
        return 1.0 / x

    return sensor_distance_m(dpt(focus_m, "focus"), lens) / sensor_distance_m(dpt(reference_m, "reference"), lens)


def blur_per_dioptre_px(lens: ThinLensLike) -> float:
    """The lens's blur gain ``K = f^2 / (4 N p)``: Gaussian PSF sigma in pixels per dioptre of defocus.

    Under the thin lens the blur of a frame focused at ``d_f`` for an object at ``d`` is
    ``sigma = K * d_f / (d_f - f) * |1/d_f - 1/d|`` pixels; for ``d_f >> f`` the factor is 1, so
    ``K / d`` (pixels) places depth on a lens-independent "blur" axis: two lenses with the same ``K``
    blur alike. This is what the lens-aware network sees and predicts (:mod:`model.network`). The
    focus-dependent slope ``K d_f / (d_f - f)`` is :func:`model.sweep_plan.sigma_per_dioptre_px`
    (``coc_px_per_dioptre / 4``).
    Units: pixels * metres (pixels per dioptre).
    """
    return lens.focal_length_m**2 / (4.0 * lens.f_number * lens.pixel_pitch_m)


def defocus_sigma_map(depth_m: Any, focus_m: Any, lens: ThinLensLike, blur_scale: float = 1.0) -> Any:
    """Blur map of every slice of a stack (torch).

    Args:
        depth_m: ``(B, 1, H, W)`` depth in metres.
        focus_m: ``(B, S)`` focus distances in metres.
        lens: the thin lens.
        blur_scale: factor on the moment-matched blur (:func:`coc_sigma_px`).

    Returns:
        ``(B, S, H, W)`` Gaussian PSF standard deviation in pixels.
    """
    if depth_m.dim() != 4 or depth_m.shape[1] != 1:
        raise ValueError(f"depth must be (B, 1, H, W), got {tuple(depth_m.shape)}")
    if focus_m.dim() != 2 or focus_m.shape[0] != depth_m.shape[0]:
        raise ValueError(f"focus must be (B, S) with B={depth_m.shape[0]}, got {tuple(focus_m.shape)}")
    return coc_sigma_px(depth_m, focus_m[:, :, None, None].to(depth_m.dtype), lens, blur_scale)


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
