"""Random lenses and focus sets for training one network that serves every calibrated lens.

The lens-aware network (:mod:`model.network`, ``focus_code="blur"``) works on the blur axis
``x = K / d`` pixels, ``K = f^2 / (4 N p)`` (:func:`model.optics.blur_per_dioptre_px`). A training
batch therefore needs a lens ``K`` and focus codes ``x_f = K / d_f`` spread over the axis the network
covers, ``[x_lo, x_hi]``, and scenes whose codes reach beyond the focus codes on both sides
(backgrounds beyond the farthest focus, objects nearer than the nearest). :func:`draw_lens_and_focus`
draws all of that for one batch; the stack is then rendered with the exact thin lens it returns, so the
small per-frame gain ``d_f / (d_f - f)`` that separates real lenses of equal ``K`` is in the data too.

Units: metres, pixels, dioptres (1/m). Pure NumPy; no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from model.lens import LensProfile

__all__ = ["LensSampling", "LensDraw", "draw_lens_and_focus"]


@dataclass(frozen=True)
class LensSampling:
    """What :func:`draw_lens_and_focus` draws from.

    Attributes:
        k_range: ``(min, max)`` blur gain ``K`` in pixels per dioptre, drawn log-uniform.
        x_range: ``(x_lo, x_hi)`` blur-code axis of the network, pixels (``NetConfig.x_lo_px/x_hi_px``).
        stack_size: inclusive ``(S_min, S_max)`` frames per stack.
        min_focus_span_px: smallest spread ``x_f,max - x_f,min`` of a focus set, pixels.
        f_number_range: ``(min, max)`` f-number, drawn uniform (sets the focal length with ``K``).
        far_focus_px: ``(min, max)`` pixels the farthest focus code ``K / d_f,max`` is drawn in
            (log-uniform), or ``None``: anywhere on the axis that leaves room for the span.
        focus_span_px: ``(min, max)`` pixels the focus set's spread ``x_f,max - x_f,min`` is drawn in
            (uniform), or ``None``: ``min_focus_span_px`` to 10 pixels.
        far_scene_prob: probability that the whole scene lies beyond the farthest focus (codes
            ``0.4-0.6`` to ``0.8-0.95`` times the farthest focus code: a background a few metres behind the
            last focus distance, where blur differences are sub-pixel).
        near_scene_prob: probability that the whole scene lies around and before the nearest focus (codes
            ``0.7-0.9`` to ``1.3-1.8`` times the nearest focus code).
    """

    k_range: tuple[float, float] = (1.0, 12.0)
    x_range: tuple[float, float] = (0.5425, 13.02)
    stack_size: tuple[int, int] = (2, 8)
    min_focus_span_px: float = 1.0
    f_number_range: tuple[float, float] = (1.4, 8.0)
    far_focus_px: tuple[float, float] | None = None
    focus_span_px: tuple[float, float] | None = None
    far_scene_prob: float = 0.0
    near_scene_prob: float = 0.0

    def __post_init__(self) -> None:
        k0, k1 = (float(v) for v in self.k_range)
        x0, x1 = (float(v) for v in self.x_range)
        s0, s1 = (int(v) for v in self.stack_size)
        n0, n1 = (float(v) for v in self.f_number_range)
        if not 0 < k0 <= k1 or not math.isfinite(k1):
            raise ValueError(f"k_range must be (min, max) pixels per dioptre with 0 < min <= max, got {self.k_range}")
        if not 0 < x0 < x1 or not math.isfinite(x1):
            raise ValueError(f"x_range must be (lo, hi) pixels with 0 < lo < hi, got {self.x_range}")
        if not 2 <= s0 <= s1:
            raise ValueError(f"stack_size must be (S_min, S_max) with 2 <= S_min <= S_max, got {self.stack_size}")
        if not 0 < self.min_focus_span_px < x1 - x0:
            raise ValueError(f"min_focus_span_px must be in (0, {x1 - x0:g}), got {self.min_focus_span_px}")
        if not 0 < n0 <= n1:
            raise ValueError(f"f_number_range must be (min, max) with 0 < min <= max, got {self.f_number_range}")
        if not (0 <= self.far_scene_prob <= 1 and 0 <= self.near_scene_prob <= 1 and self.far_scene_prob + self.near_scene_prob <= 1):
            raise ValueError(f"far_scene_prob and near_scene_prob must be probabilities summing to at most 1, "
                             f"got {self.far_scene_prob}, {self.near_scene_prob}")
        for name in ("far_focus_px", "focus_span_px"):
            v = getattr(self, name)
            if v is not None and (len(v) != 2 or not 0 < float(v[0]) <= float(v[1]) < x1):
                raise ValueError(f"{name} must be (min, max) pixels with 0 < min <= max < {x1:g}, got {v}")


@dataclass(frozen=True)
class LensDraw:
    """One batch's lens, focus set and scene depth range.

    Attributes:
        lens: the thin lens (focal length, f-number, pixel pitch) the batch is rendered with.
        k: its blur gain ``f^2 / (4 N p)``, pixels per dioptre.
        focus_m: ``(S,)`` float64 focus distances, metres, nearest first.
        scene_range_m: ``(near, far)`` metres the scene's depths are drawn in.
        working_range_m: ``(near, far)`` metres of the network's axis for this lens (``K / x_hi``,
            ``K / x_lo``); rendered depths are clipped into it.
    """

    lens: LensProfile
    k: float
    focus_m: np.ndarray
    scene_range_m: tuple[float, float]
    working_range_m: tuple[float, float]


def _focus_codes(rng: np.random.Generator, s: int, lo: float, hi: float) -> np.ndarray:
    """``s`` focus codes in ``[lo, hi]`` pixels, spaced evenly in dioptres, evenly in metres or one per bin."""
    mode = rng.random()
    if mode < 0.45:  # even in dioptres (= even blur steps), jittered
        xs = np.linspace(lo, hi, s)
        step = (hi - lo) / max(s - 1, 1)
        xs[1:-1] += rng.uniform(-0.15, 0.15, s - 2) * step
    elif mode < 0.65:  # even in metres (the paper's bins' centres)
        xs = 1.0 / np.linspace(1.0 / hi, 1.0 / lo, s)
    else:  # one uniform draw per bin, bins equal in dioptres (appendix A.2 style)
        edges = np.linspace(lo, hi, s + 1)
        xs = rng.uniform(edges[:-1], edges[1:])
    return np.sort(np.clip(xs, lo, hi))


def draw_lens_and_focus(rng: np.random.Generator, sampling: LensSampling, s: int | None = None) -> LensDraw:
    """Draw one batch's lens, focus set (``s`` frames, or drawn in ``stack_size``) and scene range.

    The focus codes are drawn over a range of at least ``min_focus_span_px`` inside the axis (with one
    draw per bin they may land closer); the scene reaches up to a few
    pixels of blur beyond the farthest and the nearest focus code (clipped to the axis), so far
    backgrounds and near objects are both trained. The focal length is drawn so that the nearest focus
    distance is 10-100 focal lengths away; the pixel pitch then follows from ``K``.
    """
    x_lo, x_hi = (float(v) for v in sampling.x_range)
    if s is None:
        s = int(rng.integers(sampling.stack_size[0], sampling.stack_size[1] + 1))
    k = float(math.exp(rng.uniform(math.log(sampling.k_range[0]), math.log(sampling.k_range[1]))))
    span_min = sampling.min_focus_span_px
    if sampling.far_focus_px is not None:
        a, b = (max(x_lo, float(v)) for v in sampling.far_focus_px)
        xf_min = float(math.exp(rng.uniform(math.log(a), math.log(max(a, b)))))
    else:
        xf_min = float(math.exp(rng.uniform(math.log(x_lo), math.log(max(x_lo * 1.01, 0.6 * (x_hi - span_min))))))
    xf_min = min(xf_min, x_hi - span_min)
    if sampling.focus_span_px is not None:
        span = float(rng.uniform(*sampling.focus_span_px))
    else:
        span = float(rng.uniform(span_min, max(span_min, min(10.0, x_hi - xf_min))))
    xf_max = min(xf_min + span, x_hi)
    codes = _focus_codes(rng, int(s), xf_min, xf_max)
    focus_m = np.sort(k / codes)
    # the scene: a margin of blur beyond the focus codes on either side (far backgrounds, near objects)
    xs_lo = max(x_lo, xf_min - rng.uniform(0.3, 4.0))
    xs_hi = min(x_hi, xf_max + rng.uniform(0.3, 4.0))
    if sampling.far_scene_prob > 0 or sampling.near_scene_prob > 0:
        mode = rng.random()
        lo_code, hi_code = float(codes.min()), float(codes.max())
        if mode < sampling.far_scene_prob:
            xs_lo = max(x_lo, lo_code * rng.uniform(0.4, 0.6))
            xs_hi = max(xs_lo * 1.05, lo_code * rng.uniform(0.8, 0.95))
        elif mode < sampling.far_scene_prob + sampling.near_scene_prob:
            xs_hi = min(x_hi, hi_code * rng.uniform(1.3, 1.8))
            xs_lo = min(xs_hi / 1.05, hi_code * rng.uniform(0.7, 0.9))
    scene = (k / xs_hi, k / xs_lo)
    working = (k / x_hi, k / x_lo)
    f = float(focus_m[0]) * rng.uniform(0.01, 0.1)
    n = float(rng.uniform(*sampling.f_number_range))
    p = f * f / (4.0 * n * k)
    lens = LensProfile(focal_length_m=f, f_number=n, pixel_pitch_m=p, name="training-draw")
    return LensDraw(lens=lens, k=k, focus_m=focus_m, scene_range_m=scene, working_range_m=working)
