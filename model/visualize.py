"""Pictures: colour-mapped depth with a scale in metres and the per-stack prediction panel.

The panel follows the paper's figures 8 and 9: input frames, AIF, depth with a metres colour bar,
defocus (blur) maps, the re-rendered stack and the residual.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from model.atomic import atomic_write_bytes

__all__ = ["colorize_depth", "depth_png_with_scale", "prediction_panel"]


def _fraction(depth_m: np.ndarray | float, near_m: float, far_m: float) -> np.ndarray:
    """Position of a depth on the colour scale: 0 at ``far_m``, 1 at ``near_m``, linear in inverse depth."""
    return (1.0 / np.asarray(depth_m, np.float64) - 1.0 / far_m) / (1.0 / near_m - 1.0 / far_m)


def colorize_depth(depth_m: np.ndarray, near_m: float, far_m: float, cmap: str = "turbo") -> np.ndarray:
    """Colour-map metric depth (``(H, W)`` metres) in inverse depth between ``near_m`` and ``far_m``.

    Near is red, far is blue (``turbo``); unknown pixels (NaN, <= 0) are black. Returns ``(H, W, 3)``
    float32 in [0, 1].
    """
    from matplotlib import colormaps

    d = np.asarray(depth_m, np.float64)
    valid = np.isfinite(d) & (d > 0)
    t = _fraction(np.where(valid, d, far_m), near_m, far_m)
    rgb = colormaps[cmap](np.clip(t, 0, 1))[..., :3].astype(np.float32)
    rgb[~valid] = 0.0
    return rgb


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
    candidates = [near_m] + [m for m in (0.3, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 10, 20, 50) if near_m < m < far_m] + [far_m]
    ticks_m: list[float] = []
    for m in candidates:  # keep ticks at least 7% of the bar apart
        if not ticks_m or abs(float(_fraction(m, near_m, far_m)) - float(_fraction(ticks_m[-1], near_m, far_m))) > 0.07:
            ticks_m.append(m)
        elif m == far_m:  # the far end always gets its label
            ticks_m[-1] = m
    cb.set_ticks([float(_fraction(m, near_m, far_m)) for m in ticks_m])
    cb.set_ticklabels([f"{m:.3g} m" for m in ticks_m])
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
