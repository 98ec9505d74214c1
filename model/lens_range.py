"""Which lenses and focus sets a lens-aware network serves, and a clear error for the others.

The lens-aware network (:mod:`model.network`, ``focus_code="blur"``) sees each frame's focus as the blur
code ``x_f = K / d_f`` pixels, ``K = f^2 / (4 N p)`` the lens's blur gain in pixels per dioptre
(:func:`model.optics.blur_per_dioptre_px`), and predicts depth on the same axis. It was trained with
codes in ``[x_lo_px, x_hi_px]``; a stack whose codes fall outside is refused with what to change: focus
farther or downscale (codes too large), focus nearer or use more resolution or a wider aperture (codes
too small). Units: metres, pixels, dioptres.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from model.optics import blur_per_dioptre_px, check_focus_distances

__all__ = ["LensOutOfRangeError", "check_lens_supported", "supported_focus_range_m"]

log = logging.getLogger(__name__)

# codes this far outside the trained axis are still accepted (the network saw focus jitter around it)
_TOLERANCE = 0.05
# a focus set whose codes span less than this (pixels of blur) carries little depth: warn
_MIN_USEFUL_SPAN_PX = 0.5


class LensOutOfRangeError(ValueError):
    """A stack's lens and focus distances lie outside the blur range the model was trained for."""


def supported_focus_range_m(config: Any, lens: Any) -> tuple[float, float]:
    """``(nearest, farthest)`` focus distance (metres) the model accepts for ``lens``: ``K / x_hi``, ``K / x_lo``."""
    k = blur_per_dioptre_px(lens)
    return k / config.x_hi_px, k / config.x_lo_px


def check_lens_supported(config: Any, lens: Any, focus_m: Sequence[float], source: str) -> list[str]:
    """Raise :class:`LensOutOfRangeError` naming ``source``, the value and the fix if ``lens`` at ``focus_m``
    is outside the blur range of a lens-aware network ``config`` (a :class:`model.network.NetConfig`).

    Returns warnings (also logged), e.g. when the focus set spans so little blur that depth is weak.
    """
    fs = check_focus_distances(list(focus_m), lens, what=f"{source}: focus")
    k = blur_per_dioptre_px(lens)
    lo, hi = config.x_lo_px, config.x_hi_px
    near_ok, far_ok = supported_focus_range_m(config, lens)
    for d in fs:
        x = k / d
        if x > hi * (1 + _TOLERANCE):
            raise LensOutOfRangeError(
                f"{source}: focus distance {d:.3g} m gives a blur code K/d of {x:.3g} px for this lens "
                f"(K = {k:.3g} px/dioptre), beyond the model's {lo:.3g}-{hi:.3g} px: focus at {near_ok:.3g} m or "
                f"farther, or downscale the images by {x / hi:.2g}x (blur scales with resolution)"
            )
        if x < lo * (1 - _TOLERANCE):
            raise LensOutOfRangeError(
                f"{source}: focus distance {d:.3g} m gives a blur code K/d of only {x:.3g} px for this lens "
                f"(K = {k:.3g} px/dioptre), below the model's {lo:.3g}-{hi:.3g} px: this lens cannot tell depths "
                f"apart there; focus at {far_ok:.3g} m or nearer, or use a higher resolution or a wider aperture"
            )
    warnings = []
    span = k / min(fs) - k / max(fs)
    if span < _MIN_USEFUL_SPAN_PX:
        warnings.append(
            f"{source}: the focus distances differ by only {span:.2g} px of blur for this lens (K = {k:.3g} "
            "px/dioptre): depth will be poorly determined; spread the focus distances, or use a higher "
            "resolution or a wider aperture"
        )
    for w in warnings:
        log.warning("%s", w)
    return warnings
