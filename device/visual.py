"""Colour-mapped depth with a scale bar in metres (pure NumPy + matplotlib; no GUI, thread-safe).

Depth is coloured in *inverse* depth between ``near_m`` and ``far_m`` (the way the model predicts and
the way defocus resolves it: equal steps of blur are equal steps of ``1/d``), near red, far blue
(matplotlib's ``turbo``); unknown pixels are black. The scale bar is a vertical strip with tick labels
in metres, drawn once per (height, range, colour map) with matplotlib's Agg canvas and cached, so
per-frame use costs only a table look-up.

    rgb = colorize_depth(depth_m, 0.5, 12.0)                 # (H, W, 3) uint8
    panel = depth_with_scale_bar(depth_m, 0.5, 12.0)         # (H', W + bar, 3) uint8
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = [
    "depth_to_unit",
    "unit_to_depth",
    "colorize_depth",
    "colorize_confidence",
    "depth_ticks",
    "scale_bar",
    "depth_with_scale_bar",
    "depth_at",
]

_MIN_BAR_HEIGHT = 160


def _check_range(near_m: float, far_m: float) -> tuple[float, float]:
    n, f = float(near_m), float(far_m)
    if not (math.isfinite(n) and math.isfinite(f) and 0 < n < f):
        raise ValueError(f"need 0 < near_m < far_m (finite metres), got near_m={near_m}, far_m={far_m}")
    return n, f


def depth_to_unit(depth_m: np.ndarray, near_m: float, far_m: float) -> np.ndarray:
    """Map depth (metres) to ``t`` in [0, 1] linear in inverse depth: ``far -> 0``, ``near -> 1``; NaN stays NaN."""
    n, f = _check_range(near_m, far_m)
    d = np.asarray(depth_m, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(np.isfinite(d) & (d > 0), 1.0 / d, np.nan)
    return np.clip((inv - 1.0 / f) / (1.0 / n - 1.0 / f), 0.0, 1.0)


def unit_to_depth(t: np.ndarray | float, near_m: float, far_m: float) -> np.ndarray:
    """Inverse of :func:`depth_to_unit`: metres for ``t`` in [0, 1]."""
    n, f = _check_range(near_m, far_m)
    return 1.0 / (1.0 / f + np.asarray(t, np.float64) * (1.0 / n - 1.0 / f))


@functools.lru_cache(maxsize=8)
def _lut(cmap: str) -> np.ndarray:
    from matplotlib import colormaps

    lut = (colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3] * 255.0 + 0.5).astype(np.uint8)
    lut.setflags(write=False)
    return lut


def colorize_depth(depth_m: np.ndarray, near_m: float, far_m: float, cmap: str = "turbo") -> np.ndarray:
    """Colour-map ``depth_m`` ``(H, W)`` metres: ``(H, W, 3)`` uint8 RGB, near red, far blue, unknown black.

    Raises ``ValueError`` for a bad range or a non-2-D map.
    """
    d = np.asarray(depth_m)
    if d.ndim != 2:
        raise ValueError(f"depth must be (H, W), got {d.shape}")
    t = depth_to_unit(d, near_m, far_m)
    valid = np.isfinite(t)
    idx = np.where(valid, np.rint(np.nan_to_num(t) * 255.0), 0).astype(np.uint8)
    rgb = _lut(cmap)[idx]
    rgb[~valid] = 0
    return rgb


def colorize_confidence(confidence: np.ndarray, cmap: str = "magma") -> np.ndarray:
    """Colour-map a confidence map ``(H, W)`` in [0, 1]: ``(H, W, 3)`` uint8 (dark = low, bright = high)."""
    c = np.asarray(confidence, np.float64)
    if c.ndim != 2:
        raise ValueError(f"confidence must be (H, W), got {c.shape}")
    idx = np.rint(np.clip(np.nan_to_num(c), 0.0, 1.0) * 255.0).astype(np.uint8)
    return _lut(cmap)[idx]


def depth_ticks(near_m: float, far_m: float, max_ticks: int = 7, min_gap: float = 0.09) -> list[float]:
    """Tick values in metres for a depth scale: both ends, then round 1-2-5 values inside ``[near_m, far_m]``,
    keeping ticks at least ``min_gap`` apart on the inverse-depth scale (so labels never overlap)."""
    n, f = _check_range(near_m, far_m)
    round_vals = [float(f"{m * 10.0**e:.6g}") for e in range(-3, 5) for m in (1.0, 2.0, 5.0)]
    cands = [float(f"{n:.3g}"), float(f"{f:.3g}")] + [v for v in round_vals if n < v < f]
    chosen: list[float] = []
    pos: list[float] = []
    for v in cands:
        t = float(depth_to_unit(np.array(v), n, f))
        if all(abs(t - p) >= min_gap for p in pos) and len(chosen) < max_ticks:
            chosen.append(v)
            pos.append(t)
    return sorted(chosen)


@functools.lru_cache(maxsize=16)
def _scale_bar_cached(height: int, near_m: float, far_m: float, cmap: str, width: int, dark: bool) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100.0
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="black" if dark else "white")
    FigureCanvasAgg(fig)
    fg = "white" if dark else "black"
    margin = min(0.08, 10.0 / height)
    ax = fig.add_axes((0.08, margin, 0.22, 1.0 - 2 * margin))
    grad = _lut(cmap)[np.arange(256)][:, None, :]  # row 0 = far (t = 0)
    ax.imshow(grad, aspect="auto", origin="lower", extent=(0.0, 1.0, 0.0, 1.0))
    ticks = depth_ticks(near_m, far_m, max_ticks=max(2, min(7, height // 28)))
    ax.set_xticks([])
    ax.set_ylim(0.0, 1.0)
    ax.set_yticks([float(t) for t in depth_to_unit(np.array(ticks), near_m, far_m)])
    ax.set_yticklabels([f"{t:g} m" for t in ticks], color=fg, fontsize=max(6.0, min(10.0, height / 24.0)))
    ax.yaxis.tick_right()
    ax.tick_params(colors=fg, length=3)
    for s in ax.spines.values():
        s.set_color(fg)
    fig.canvas.draw()
    buf = np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy()  # type: ignore[attr-defined]
    buf.setflags(write=False)
    return buf


def scale_bar(height: int, near_m: float, far_m: float, cmap: str = "turbo", width: int | None = None, dark: bool = False) -> np.ndarray:
    """A vertical colour bar with tick labels in metres: ``(height, width, 3)`` uint8 (near at the top, far at the bottom).

    ``height`` below 160 pixels is drawn at 160 and resized (labels stay legible in
    :func:`depth_with_scale_bar`, which enlarges small maps instead).
    """
    n, f = _check_range(near_m, far_m)
    h = int(height)
    if h < 8:
        raise ValueError(f"scale bar height must be >= 8 pixels, got {height}")
    w = int(width) if width is not None else 78
    img = _scale_bar_cached(max(h, _MIN_BAR_HEIGHT), round(n, 6), round(f, 6), cmap, w, bool(dark))
    if img.shape[0] != h:
        import cv2

        img = cv2.resize(np.ascontiguousarray(img), (w, h), interpolation=cv2.INTER_AREA)
    return img.copy()


def depth_with_scale_bar(depth_m: np.ndarray, near_m: float, far_m: float, cmap: str = "turbo", dark: bool = False) -> np.ndarray:
    """The colour-mapped depth with a metres scale bar on its right: ``(H', W' + bar, 3)`` uint8.

    Maps less than 160 pixels tall are enlarged by an integer factor (nearest neighbour) first.
    """
    rgb = colorize_depth(depth_m, near_m, far_m, cmap)
    h = rgb.shape[0]
    if h < _MIN_BAR_HEIGHT:
        k = int(math.ceil(_MIN_BAR_HEIGHT / h))
        rgb = np.repeat(np.repeat(rgb, k, axis=0), k, axis=1)
    bar = scale_bar(rgb.shape[0], near_m, far_m, cmap, dark=dark)
    return np.concatenate([rgb, bar], axis=1)


def depth_at(depth_m: np.ndarray, x: int, y: int) -> float | None:
    """Depth (metres) at pixel column ``x``, row ``y``, or ``None`` outside the map or where unknown."""
    d = np.asarray(depth_m)
    if not (0 <= int(y) < d.shape[0] and 0 <= int(x) < d.shape[1]):
        return None
    v = float(d[int(y), int(x)])
    return v if math.isfinite(v) and v > 0 else None
