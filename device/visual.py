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

from model.visualize import (  # noqa: F401 - re-exported: one colour convention for the package
    _check_range,
    _lut,
    colorize_confidence,
    colorize_depth,
    depth_ticks,
    depth_to_unit,
    unit_to_depth,
)

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
