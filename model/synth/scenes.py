"""Random procedural scenes: an all-in-focus image and its metric depth map.

A scene is a textured background plane (fronto-parallel or slanted) with several textured objects
(ellipses, rotated rectangles, star-shaped polygons; some slanted) in front of or cutting through it.
Every surface is a plane, so its *inverse* depth is an affine function of the pixel coordinates, as it
is under a perspective camera. Depths are drawn uniform in inverse depth in ``[near_m, far_m]`` and
surfaces occlude each other by depth (z-buffer: the nearest surface wins at each pixel).

This is the API the simulated camera (device/calibration tests) and the training data use::

    aif, depth = random_scene(np.random.default_rng(0), 128, 128, near_m=0.7, far_m=10.0)
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from model.synth.textures import Split, random_texture

__all__ = ["random_scene", "inverse_depth_plane", "default_scene_range_m"]


def default_scene_range_m(focus_span_m: tuple[float, float], working: tuple[float, float]) -> tuple[float, float]:
    """Default depth range of training scenes: ``[max(near, 0.7 f_min), min(far, 1.7 f_max)]``.

    Most of the signal is between the focus distances; a margin either side teaches the model that
    the blur grows again beyond the nearest and farthest focus.
    """
    lo = max(working[0], 0.7 * focus_span_m[0])
    hi = min(working[1], 1.7 * focus_span_m[1])
    if not lo < hi:
        lo, hi = working
    return lo, hi


def inverse_depth_plane(
    h: int, w: int, centre_inv: float, grad_x: float = 0.0, grad_y: float = 0.0, x0: float = 0.0, y0: float = 0.0
) -> np.ndarray:
    """Inverse depth (1/m) of a plane over an ``(h, w)`` window, float32.

    ``1/d(x, y) = centre_inv + grad_x * (x + x0 - cx) + grad_y * (y + y0 - cy)`` with ``(cx, cy)`` the
    window centre, gradients in dioptres per pixel and ``(x0, y0)`` an offset of the window.
    """
    xs = (np.arange(w, dtype=np.float32) + x0 - (w - 1) / 2.0) * np.float32(grad_x)
    ys = (np.arange(h, dtype=np.float32) + y0 - (h - 1) / 2.0) * np.float32(grad_y)
    return (np.float32(centre_inv) + ys[:, None] + xs[None, :]).astype(np.float32)


def _slant(rng: np.random.Generator, h: int, w: int, centre: float, lo: float, hi: float, max_frac: float) -> tuple[float, float]:
    """Random inverse-depth gradient (dioptres/px) keeping the window's corners inside ``[lo, hi]``."""
    theta = rng.uniform(0, 2 * np.pi)
    gx, gy = math.cos(theta), math.sin(theta)
    reach = abs(gx) * (w - 1) / 2.0 + abs(gy) * (h - 1) / 2.0  # |grad . corner| per unit gradient
    room = min(centre - lo, hi - centre)
    span = rng.uniform(0.2, 1.0) * max_frac * (hi - lo)
    mag = min(span / 2.0, max(room, 0.0)) / max(reach, 1e-6)
    return gx * mag, gy * mag


def _shape_mask(rng: np.random.Generator, bh: int, bw: int) -> np.ndarray:
    """A random filled shape (ellipse, rotated rectangle or star-shaped polygon) in a ``(bh, bw)`` box."""
    mask = np.zeros((bh, bw), np.uint8)
    cx, cy = (bw - 1) / 2.0, (bh - 1) / 2.0
    kind = int(rng.integers(3))
    if kind == 0:  # ellipse
        axes = (max(1, int(bw / 2 * rng.uniform(0.6, 1.0))), max(1, int(bh / 2 * rng.uniform(0.6, 1.0))))
        cv2.ellipse(mask, (int(round(cx)), int(round(cy))), axes, 0.0, 0.0, 360.0, 1, -1)
    elif kind == 1:  # rotated rectangle, fitted into the box
        ang = rng.uniform(0, 180)
        rw, rh = bw * rng.uniform(0.5, 1.0), bh * rng.uniform(0.5, 1.0)
        pts = cv2.boxPoints(((cx, cy), (rw, rh), ang))
        pts -= pts.min(0)
        pts *= min((bw - 1) / max(np.ptp(pts[:, 0]), 1e-6), (bh - 1) / max(np.ptp(pts[:, 1]), 1e-6), 1.0)
        pts += [(bw - 1 - np.ptp(pts[:, 0])) / 2, (bh - 1 - np.ptp(pts[:, 1])) / 2]
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    else:  # star-shaped polygon
        n = int(rng.integers(3, 10))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = rng.uniform(0.4, 1.0, n)
        pts = np.stack([cx + rad * np.cos(ang) * bw / 2, cy + rad * np.sin(ang) * bh / 2], -1)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    return mask.astype(bool)


def _maybe_weaken(rng: np.random.Generator, tex: np.ndarray, prob: float) -> np.ndarray:
    """With probability ``prob``, cut a texture's contrast about its mean to 3-30 %."""
    if prob <= 0 or rng.random() >= prob:
        return tex
    mean = tex.reshape(-1, tex.shape[-1]).mean(0)
    return np.clip(mean + (tex - mean) * np.float32(rng.uniform(0.03, 0.3)), 0.0, 1.0).astype(np.float32)


def random_scene(
    rng: np.random.Generator,
    height: int,
    width: int,
    near_m: float,
    far_m: float,
    split: Split = "train",
    n_objects: tuple[int, int] = (1, 6),
    slant_prob: float = 0.5,
    weak_texture_prob: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one random piecewise-planar scene.

    Args:
        rng: random generator; the scene is a deterministic function of its state.
        height, width: image size in pixels.
        near_m, far_m: depth range in metres (``0 < near_m < far_m``); every depth lies inside it.
        split: texture split, ``"train"`` or ``"held_out"`` (see :mod:`model.synth.textures`).
        n_objects: inclusive range of the number of foreground objects.
        slant_prob: probability that a surface (background or object) is slanted.
        weak_texture_prob: probability that a surface's texture keeps only 3-30 % of its contrast
            (about its mean colour): walls and skies where defocus carries little depth. At 0 no extra
            random numbers are drawn, so scenes are as before.

    Returns:
        ``(aif, depth)``: float32 ``(height, width, 3)`` in ``[0, 1]`` and float32 ``(height, width)``
        metres in ``[near_m, far_m]``.

    Raises:
        ValueError: bad size or depth range.
    """
    h, w = int(height), int(width)
    if h < 1 or w < 1:
        raise ValueError(f"scene size must be positive, got {width}x{height}")
    if not (math.isfinite(near_m) and math.isfinite(far_m)) or not 0 < near_m < far_m:
        raise ValueError(f"need 0 < near_m < far_m (finite), got near_m={near_m}, far_m={far_m}")
    lo_n, hi_n = int(n_objects[0]), int(n_objects[1])
    if lo_n < 0 or hi_n < lo_n:
        raise ValueError(f"n_objects must be (min, max) with 0 <= min <= max, got {n_objects}")
    lo, hi = 1.0 / far_m, 1.0 / near_m  # inverse-depth range

    # background: usually in the far half of the inverse range
    c = rng.uniform(lo, lo + 0.5 * (hi - lo)) if rng.random() < 0.7 else rng.uniform(lo, hi)
    gx = gy = 0.0
    if rng.random() < slant_prob:
        gx, gy = _slant(rng, h, w, c, lo, hi, max_frac=0.6)
    inv = np.clip(inverse_depth_plane(h, w, c, gx, gy), lo, hi)
    aif = _maybe_weaken(rng, random_texture(rng, h, w, split), weak_texture_prob)

    for _ in range(int(rng.integers(lo_n, hi_n + 1))):
        bh = max(2, int(h * rng.uniform(0.12, 0.6)))
        bw = max(2, int(w * rng.uniform(0.12, 0.6)))
        y0 = int(rng.integers(-bh // 3, h - 2 * bh // 3 + 1))
        x0 = int(rng.integers(-bw // 3, w - 2 * bw // 3 + 1))
        mask = _shape_mask(rng, bh, bw)
        # clip the box to the image
        ya, yb, xa, xb = max(y0, 0), min(y0 + bh, h), max(x0, 0), min(x0 + bw, w)
        if ya >= yb or xa >= xb:
            continue
        m = mask[ya - y0 : yb - y0, xa - x0 : xb - x0]
        oc = rng.uniform(lo, hi)
        ogx = ogy = 0.0
        if rng.random() < slant_prob:
            ogx, ogy = _slant(rng, bh, bw, oc, lo, hi, max_frac=0.25)
        # recentre the plane on the object's box, not on the clipped window
        oinv = np.clip(
            inverse_depth_plane(yb - ya, xb - xa, oc, ogx, ogy, x0=(xa - x0) - (bw - (xb - xa)) / 2.0, y0=(ya - y0) - (bh - (yb - ya)) / 2.0),
            lo,
            hi,
        )
        win = inv[ya:yb, xa:xb]
        vis = m & (oinv > win)  # nearer than what is there
        if not vis.any():
            continue
        tex = _maybe_weaken(rng, random_texture(rng, yb - ya, xb - xa, split), weak_texture_prob)
        win[vis] = oinv[vis]
        aif[ya:yb, xa:xb][vis] = tex[vis]

    depth = (1.0 / inv).astype(np.float32)
    np.clip(depth, near_m, far_m, out=depth)
    return np.ascontiguousarray(aif, dtype=np.float32), depth
