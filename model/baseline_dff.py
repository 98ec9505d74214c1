"""Classical depth-from-focus baseline (no learning): the reference point a trained model must beat.

For every pixel and every frame a focus measure is computed — the sum-modified-Laplacian (Nayar &
Nakagawa 1994): ``|2I - I(x-1) - I(x+1)| + |2I - I(y-1) - I(y+1)|`` on the grey image, squared and
summed over a ``window`` x ``window`` box. The frame with the largest measure is the in-focus one; the
peak is refined to sub-frame precision by fitting a Gaussian (a parabola in log focus measure) to the
peak and its two neighbours **in dioptres** (defocus blur is linear in ``|1/d - 1/d_f|``), and the
vertex, clamped between the neighbouring focus distances, is the depth. At the first or last frame the
depth is that frame's focus distance. Untextured pixels have no focus peak: their depth is a guess.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from model.optics import check_focus_distances

__all__ = ["to_grey", "focus_measure", "depth_from_focus"]


_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def to_grey(images: np.ndarray) -> np.ndarray:
    """Luma (Rec. 601 weights) of float ``(..., 3)`` RGB, float32 ``(...)``; other shapes are returned as float32."""
    x = np.asarray(images, dtype=np.float32)
    return x @ _LUMA if x.shape[-1:] == (3,) else x


def focus_measure(images: np.ndarray, window: int = 9) -> np.ndarray:
    """Sum-modified-Laplacian focus measure.

    Args:
        images: float ``(S, H, W, 3)`` (or ``(S, H, W)`` grey) in ``[0, 1]``.
        window: side of the square summing window, pixels (odd, >= 1).

    Returns:
        float32 ``(S, H, W)``, >= 0.
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 4:
        x = to_grey(x)
    if x.ndim != 3:
        raise ValueError(f"images must be (S, H, W, 3) or (S, H, W), got {np.shape(images)}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1 or window % 2 == 0:
        raise ValueError(f"window must be an odd int >= 1, got {window!r}")
    kx = np.array([[-1.0, 2.0, -1.0]], np.float32)
    out = np.empty(x.shape, np.float32)
    for s in range(x.shape[0]):
        ml = np.abs(cv2.filter2D(x[s], -1, kx, borderType=cv2.BORDER_REFLECT)) + np.abs(
            cv2.filter2D(x[s], -1, kx.T, borderType=cv2.BORDER_REFLECT)
        )
        out[s] = cv2.boxFilter(ml * ml, -1, (window, window), normalize=True, borderType=cv2.BORDER_REFLECT)
    return out


def depth_from_focus(
    images: np.ndarray, focus_m: Sequence[float] | np.ndarray, window: int = 9, return_peak: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Depth from focus.

    Args:
        images: float ``(S, H, W, 3)`` in ``[0, 1]``, any frame order, ``S >= 2``.
        focus_m: ``(S,)`` focus distances in metres (positive, distinct).
        window: focus-measure window (odd pixels).
        return_peak: also return the peak focus measure ``(H, W)`` (a crude confidence: ~0 on
            untextured pixels).

    Returns:
        float32 ``(H, W)`` depth in metres, between the nearest and farthest focus distance
        (and the peak focus measure if ``return_peak``).

    Raises:
        ValueError: bad shapes, fewer than 2 frames, repeated or invalid focus distances.
    """
    imgs = np.asarray(images, dtype=np.float32)
    if imgs.ndim != 4 or imgs.shape[-1] != 3:
        raise ValueError(f"images must be (S, H, W, 3), got {imgs.shape}")
    fs = np.array(check_focus_distances(list(np.asarray(focus_m, dtype=np.float64).reshape(-1))), np.float64)
    if fs.shape[0] != imgs.shape[0]:
        raise ValueError(f"{fs.shape[0]} focus distances for {imgs.shape[0]} frames")
    if fs.shape[0] < 2:
        raise ValueError("depth from focus needs at least 2 frames")
    if len(np.unique(fs)) != len(fs):
        raise ValueError(f"focus distances must be distinct, got {fs.tolist()}")
    order = np.argsort(1.0 / fs)  # increasing dioptres = farthest first
    dpt = (1.0 / fs[order]).astype(np.float64)
    fm = focus_measure(imgs[order], window).astype(np.float64)
    s, h, w = fm.shape
    k = np.argmax(fm, axis=0)
    km = np.clip(k - 1, 0, s - 1)
    kp = np.clip(k + 1, 0, s - 1)
    eps = 1e-12
    take = lambda a, i: np.take_along_axis(a, i[None], 0)[0]  # noqa: E731
    y0, y1, y2 = (np.log(take(fm, i) + eps) for i in (km, k, kp))
    x0, x1, x2 = dpt[km], dpt[k], dpt[kp]
    # vertex of the parabola through (x0, y0), (x1, y1), (x2, y2), non-uniform spacing
    d01, d12 = x1 - x0, x2 - x1
    with np.errstate(divide="ignore", invalid="ignore"):
        s01 = (y1 - y0) / d01
        s12 = (y2 - y1) / d12
        curv = (s12 - s01) / (x2 - x0)  # second-order divided difference (< 0 at a peak)
        # Newton form p(x) = y0 + s01 (x - x0) + curv (x - x0)(x - x1); p'(x*) = 0:
        vertex = 0.5 * (x0 + x1) - s01 / (2.0 * curv)
    interior = (k > 0) & (k < s - 1) & np.isfinite(vertex) & (curv < 0)
    est = np.where(interior, np.clip(vertex, x0, x2), x1)
    depth = (1.0 / est).astype(np.float32)
    if return_peak:
        return depth, take(fm, k).astype(np.float32)
    return depth
