"""Pictures: colour-mapped depth with a scale in metres and the per-stack prediction panel.

The panel follows the paper's figures 8 and 9: input frames, AIF, depth with a metres colour bar,
defocus (blur) maps, the re-rendered stack and the residual.
"""

from __future__ import annotations

import functools
import io
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from model.atomic import atomic_write_bytes

__all__ = [
    "depth_to_unit",
    "unit_to_depth",
    "colorize_depth",
    "colorize_confidence",
    "depth_ticks",
    "depth_png_with_scale",
    "prediction_panel",
]


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


def _depth_axes(ax, fig, depth_m: np.ndarray, near_m: float, far_m: float, title: str) -> None:
    from matplotlib.colors import Normalize
    from matplotlib.cm import ScalarMappable
    from matplotlib import colormaps

    ax.imshow(colorize_depth(depth_m, near_m, far_m))
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    # colour bar in metres: ticks placed in inverse depth, labelled in metres
    sm = ScalarMappable(norm=Normalize(0, 1), cmap=colormaps["turbo"])
    cb = fig.colorbar(sm, ax=ax, fraction=0.046, pad=0.02)
    ticks_m = depth_ticks(near_m, far_m)
    cb.set_ticks([float(t) for t in depth_to_unit(np.array(ticks_m), near_m, far_m)])
    cb.set_ticklabels([f"{m:g} m" for m in ticks_m])
    cb.ax.tick_params(labelsize=6)


def depth_png_with_scale(
    path: str | os.PathLike[str], depth_m: np.ndarray, near_m: float, far_m: float, title: str = "depth"
) -> Path:
    """Write a colour-mapped depth PNG with a metres colour bar, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w = depth_m.shape
    fig, ax = plt.subplots(figsize=(4.0 * w / max(h, w) + 1.2, 4.0 * h / max(h, w)), dpi=100)
    _depth_axes(ax, fig, depth_m, near_m, far_m, title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def prediction_panel(
    path: str | os.PathLike[str],
    images: np.ndarray,
    focus_m: Sequence[float],
    depth_m: np.ndarray,
    aif: np.ndarray,
    near_m: float,
    far_m: float,
    sigma_px: np.ndarray | None = None,
    rendered: np.ndarray | None = None,
    confidence: np.ndarray | None = None,
    gt_depth_m: np.ndarray | None = None,
    title: str = "",
) -> Path:
    """Write the per-stack figure (PNG, atomic).

    Args:
        images: ``(S, H, W, 3)`` input stack.
        focus_m: ``(S,)`` focus distances, metres.
        depth_m: ``(H, W)`` predicted depth, metres.
        aif: ``(H, W, 3)`` predicted AIF.
        near_m, far_m: colour scale range, metres.
        sigma_px: ``(S, H, W)`` defocus maps (PSF sigma, pixels), optional.
        rendered: ``(S, H, W, 3)`` re-rendered stack, optional (with its residual row).
        confidence: ``(H, W)`` optional.
        gt_depth_m: ``(H, W)`` ground-truth depth, optional.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = images.shape[0]
    rows = 2 + (sigma_px is not None) + 2 * (rendered is not None)
    cols = max(s, 4)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 1.9 * rows), dpi=100, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(s):
        axes[0, i].imshow(np.clip(images[i], 0, 1))
        axes[0, i].set_title(f"input, focus {focus_m[i]:g} m", fontsize=8)
    axes[1, 0].imshow(np.clip(aif, 0, 1))
    axes[1, 0].set_title("AIF (predicted)", fontsize=8)
    _depth_axes(axes[1, 1], fig, depth_m, near_m, far_m, "depth (predicted)")
    col = 2
    if gt_depth_m is not None:
        _depth_axes(axes[1, col], fig, gt_depth_m, near_m, far_m, "depth (ground truth)")
        col += 1
    if confidence is not None and col < cols:
        im = axes[1, col].imshow(confidence, vmin=0, vmax=1, cmap="viridis")
        axes[1, col].set_title("confidence", fontsize=8)
        fig.colorbar(im, ax=axes[1, col], fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
    r = 2
    if sigma_px is not None:
        vmax = float(np.nanmax(sigma_px)) if np.isfinite(sigma_px).any() else 1.0
        for i in range(s):
            im = axes[r, i].imshow(sigma_px[i], vmin=0, vmax=max(vmax, 1e-3), cmap="magma")
            axes[r, i].set_title(f"defocus sigma (px), {focus_m[i]:g} m", fontsize=7)
        fig.colorbar(im, ax=axes[r, s - 1], fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
        r += 1
    if rendered is not None:
        for i in range(s):
            axes[r, i].imshow(np.clip(rendered[i], 0, 1))
            axes[r, i].set_title(f"re-rendered, {focus_m[i]:g} m", fontsize=8)
            res = np.abs(rendered[i] - images[i]).mean(-1)
            im = axes[r + 1, i].imshow(res, vmin=0, vmax=0.1, cmap="inferno")
            axes[r + 1, i].set_title(f"residual (mean {res.mean():.3f})", fontsize=8)
        fig.colorbar(im, ax=axes[r + 1, s - 1], fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
