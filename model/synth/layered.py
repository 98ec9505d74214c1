"""The evaluation renderer: layered, occlusion-aware defocus with a uniform-disc PSF.

Deliberately *not* the training renderer (``model.render``, a gather-form Gaussian): evaluating on
stacks made by the model's own forward model would flatter it. This is the standard layered
depth-of-field model (as in Hasinoff & Kutulakos, "A layer-based restoration framework for
variable-aperture photography", ICCV 2007):

1. Inverse depth is quantised into thin fronto-parallel layers, thin enough that the blur diameter
   changes by at most ``layer_step_px`` pixels from one layer to the next (for every focus distance).
   Each layer is rendered at the mean inverse depth of its pixels, so a fronto-parallel plane is
   rendered at exactly its own depth.
2. For each focus distance, every layer's premultiplied colour ``alpha * aif`` and its alpha mask are
   convolved with an anti-aliased uniform disc of diameter ``c / p`` pixels (thin-lens circle of
   confusion ``model.optics.coc_diameter_m`` over the pixel pitch; zero outside the image). Optionally
   (training data) a generalised Gaussian of the same second moment instead of the disc, and a minimum
   blur of one pixel's footprint (:func:`psf_kernel`, the one home of this PSF).
3. The blurred layers are composited back to front with the *over* operator,
   ``C = C_l + (1 - A_l) C``, ``A = A_l + (1 - A_l) A``, and the result is divided by the accumulated
   alpha ``A`` (which is below one only where occluded background is missing or near the border).
   A near object's blurred edge thus spreads over what lies behind it, while a far object's blur is
   cut off by nearer occluders — the occlusion effects a single gather or scatter pass misses.
4. Sensor noise (:class:`model.synth.noise.SensorNoise`: shot + read, optional quantisation).
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Sequence

import cv2
import numpy as np

from model.lens import LensProfile
from model.optics import check_focus_distances, coc_diameter_m, coc_px_per_dioptre
from model.synth.noise import NO_NOISE, SensorNoise

__all__ = ["PIXEL_BOX_SIGMA_PX", "psf_kernel", "disc_kernel", "disc_blur", "render_stack_layered", "fill_unknown_depth"]

log = logging.getLogger(__name__)


#: Per-axis standard deviation of one pixel's box footprint, pixels (``1 / sqrt(12)``): the smallest blur a
#: pixel integrating the irradiance over its square can have (:func:`psf_kernel`'s ``min_sigma_px``).
PIXEL_BOX_SIGMA_PX: float = 1.0 / math.sqrt(12.0)

#: Generalised-Gaussian kernels extend to where ``(r / alpha)^beta`` reaches this (weight ``e^-9``).
_GG_TAIL = 9.0


@functools.lru_cache(maxsize=1024)
def _psf_kernel_cached(diameter_centi_px: int, supersample: int, beta_centi: int) -> np.ndarray:
    r = diameter_centi_px / 200.0
    if r * supersample < 0.5:  # PSF smaller than one sub-sample: a delta
        k = np.ones((1, 1), np.float32)
        k.setflags(write=False)
        return k
    if beta_centi <= 0:  # uniform disc of radius r
        half = max(0, int(math.ceil(r + 0.5)) - 1)  # pixel k covers [k - 0.5, k + 0.5]
    else:  # generalised Gaussian exp(-(rho / alpha)^beta) with the disc's per-axis variance (r / 2)^2
        beta = beta_centi / 100.0
        alpha = 0.5 * r * math.sqrt(2.0 * math.gamma(2.0 / beta) / math.gamma(4.0 / beta))
        reach = alpha * _GG_TAIL ** (1.0 / beta)
        half = max(0, int(math.ceil(reach + 0.5)) - 1)
    n = 2 * half + 1
    sub = (np.arange(n * supersample, dtype=np.float64) + 0.5) / supersample - 0.5 - half
    rho2 = sub[:, None] ** 2 + sub[None, :] ** 2
    if beta_centi <= 0:
        weight = rho2 <= r * r
    else:
        weight = np.exp(-((rho2 / (alpha * alpha)) ** (beta / 2.0)))
    k = weight.reshape(n, supersample, n, supersample).mean(axis=(1, 3))
    total = k.sum()
    if total <= 0:
        k = np.zeros((n, n))
        k[half, half] = 1.0
        total = 1.0
    k = (k / total).astype(np.float32)
    k.setflags(write=False)
    return k


def psf_kernel(diameter_px: float, beta: float = math.inf, min_sigma_px: float = 0.0, supersample: int = 8) -> np.ndarray:
    """The layered renderer's PSF for a circle of confusion of ``diameter_px``: float32 ``(2R+1, 2R+1)``
    summing to 1 (read-only, cached).

    The shape is a generalised Gaussian ``exp(-(rho / alpha)^beta)`` (``rho`` the distance from the centre,
    pixels) whose per-axis variance is the uniform disc's, ``(diameter_px / 4)^2`` — the moment-matched
    sigma of :func:`model.optics.coc_sigma_px` — for every ``beta``: ``beta = 2`` is that Gaussian,
    ``beta = inf`` (the default) the uniform disc of ``diameter_px`` itself, ``beta`` of 4-8 a disc with
    soft edges (as real lenses give). Each entry is the mean of the PSF over that pixel's square (estimated
    on a ``supersample`` x ``supersample`` grid), so the kernel varies smoothly with the diameter; PSFs
    smaller than ``1 / supersample`` pixel give the 1x1 identity kernel. The diameter is quantised to 0.01
    pixel and ``beta`` to 0.01.

    Args:
        diameter_px: circle-of-confusion diameter, pixels (finite, >= 0).
        beta: shape, ``>= 1`` (``math.inf``: uniform disc; 100 or more is treated as the disc).
        min_sigma_px: smallest per-axis blur, pixels, added in quadrature
            (``sigma^2 = (diameter_px / 4)^2 + min_sigma_px^2``); :data:`PIXEL_BOX_SIGMA_PX` makes the
            kernel never narrower than one pixel's box footprint. 0 (default) adds nothing.
        supersample: sub-samples per pixel side.

    Raises:
        ValueError: a negative or non-finite diameter, ``beta < 1`` or NaN, a negative ``min_sigma_px``.
    """
    if not math.isfinite(diameter_px) or diameter_px < 0:
        raise ValueError(f"PSF diameter must be a finite number >= 0, got {diameter_px}")
    if not (beta >= 1):  # also NaN
        raise ValueError(f"PSF shape beta must be >= 1 (inf for the uniform disc), got {beta}")
    if not (math.isfinite(min_sigma_px) and min_sigma_px >= 0):
        raise ValueError(f"min_sigma_px must be a finite number >= 0, got {min_sigma_px}")
    if min_sigma_px > 0:
        diameter_px = 4.0 * math.hypot(diameter_px / 4.0, min_sigma_px)
    beta_centi = 0 if beta >= 100 else int(round(beta * 100))
    return _psf_kernel_cached(int(round(diameter_px * 100)), int(supersample), beta_centi)


def disc_kernel(diameter_px: float, supersample: int = 8) -> np.ndarray:
    """Anti-aliased uniform disc of diameter ``diameter_px``: float32 ``(2R+1, 2R+1)`` summing to 1.

    Each entry is the fraction of that pixel's square covered by the disc (estimated on a
    ``supersample`` x ``supersample`` grid per pixel), so the kernel varies smoothly with the
    diameter. Diameters below ``1 / supersample`` pixel give the 1x1 identity kernel.
    (:func:`psf_kernel` with its default shape.)
    """
    if not math.isfinite(diameter_px) or diameter_px < 0:
        raise ValueError(f"disc diameter must be a finite number >= 0, got {diameter_px}")
    return psf_kernel(diameter_px, math.inf, 0.0, supersample)


def disc_blur(image: np.ndarray, diameter_px: float) -> np.ndarray:
    """Convolve ``image`` (``(H, W)`` or ``(H, W, C)``, C <= 4) with :func:`disc_kernel`; zero outside."""
    k = disc_kernel(diameter_px)
    if k.shape == (1, 1):
        return np.array(image, dtype=np.float32, copy=True)
    return cv2.filter2D(np.asarray(image, np.float32), -1, k, borderType=cv2.BORDER_CONSTANT)


def fill_unknown_depth(depth: np.ndarray) -> np.ndarray:
    """Copy of ``depth`` (``(H, W)``) with unknown pixels (NaN, inf, <= 0) set to the nearest known depth.

    Use it to render a scene whose ground truth has holes; keep the original (with holes) as the
    evaluation target. Raises ``ValueError`` if no pixel is known.
    """
    from scipy import ndimage

    d = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(d) & (d > 0)
    if valid.all():
        return d.copy()
    if not valid.any():
        raise ValueError("depth map has no known pixel")
    idx = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
    return d[tuple(idx)].astype(np.float32)


def _check_inputs(aif: np.ndarray, depth: np.ndarray, lens: LensProfile) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(aif)
    d = np.asarray(depth)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"aif must be (H, W, 3), got {a.shape}")
    if d.shape != a.shape[:2]:
        raise ValueError(f"depth must be (H, W) = {a.shape[:2]}, got {d.shape}")
    a = a.astype(np.float32)
    d = d.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError("aif has non-finite values")
    if not np.all(np.isfinite(d)):
        raise ValueError("depth has non-finite (unknown) pixels: fill them first (fill_unknown_depth)")
    if np.any(d <= lens.focal_length_m):
        raise ValueError(f"depth must be beyond the focal length ({lens.focal_length_m} m), min is {d.min()}")
    return np.clip(a, 0.0, 1.0), d


def render_stack_layered(
    aif: np.ndarray,
    depth: np.ndarray,
    focus_m: Sequence[float] | np.ndarray,
    lens: LensProfile,
    noise: SensorNoise | None = None,
    rng: np.random.Generator | None = None,
    layer_step_px: float = 0.5,
    max_layers: int = 512,
    beta: float = math.inf,
    min_sigma_px: float = 0.0,
) -> np.ndarray:
    """Render a focal stack with the layered disc-PSF model.

    Args:
        aif: float ``(H, W, 3)`` all-in-focus image in ``[0, 1]``.
        depth: float ``(H, W)`` metres, finite and beyond the focal length (see
            :func:`fill_unknown_depth` for maps with holes).
        focus_m: ``(S,)`` focus distances in metres (rendered in the order given).
        lens: the lens; ``pixel_pitch_m`` must be the pitch of pixels of ``aif``.
        noise: sensor noise; ``None`` renders noise-free (and unquantised).
        rng: random generator for the noise (required when ``noise`` adds noise).
        layer_step_px: largest change of blur diameter between adjacent depth layers, pixels.
        max_layers: upper bound on the number of depth layers.
        beta: PSF shape (:func:`psf_kernel`): ``inf`` (default) the uniform disc, 2 a Gaussian, 4-8 between.
        min_sigma_px: smallest per-axis PSF blur, pixels, in quadrature (:func:`psf_kernel`;
            :data:`PIXEL_BOX_SIGMA_PX` for one pixel's footprint); 0 (default) none.

    Returns:
        float32 ``(S, H, W, 3)`` in ``[0, 1]``.

    Raises:
        ValueError: bad shapes, non-finite depth, focus distances not beyond the focal length.
    """
    a, d = _check_inputs(aif, depth, lens)
    fs = check_focus_distances(list(np.asarray(focus_m, dtype=np.float64).reshape(-1)), lens)
    if not fs:
        raise ValueError("need at least one focus distance")
    if not layer_step_px > 0 or int(max_layers) < 1:
        raise ValueError(f"layer_step_px must be > 0 and max_layers >= 1, got {layer_step_px}, {max_layers}")
    psf_kernel(0.0, beta, min_sigma_px)  # bad shape arguments fail here, before any work
    noise = noise or NO_NOISE
    if not noise.is_zero and rng is None:
        raise ValueError("rng is required when noise is applied")
    h, w = d.shape

    # --- depth layers, uniform in inverse depth
    inv = 1.0 / d
    u_lo, u_hi = float(inv.min()), float(inv.max())
    # blur diameter (px) per dioptre of |1/d - 1/d_f|; largest at the nearest focus
    px_per_dpt = max(coc_px_per_dioptre(df, lens) for df in fs)
    du = layer_step_px / px_per_dpt
    n_layers = int(min(max_layers, max(1, math.ceil((u_hi - u_lo) / du + 1e-9))))
    if u_hi > u_lo:
        idx = np.minimum(((inv - u_lo) / (u_hi - u_lo) * n_layers).astype(np.int64), n_layers - 1)
    else:
        idx = np.zeros(d.shape, np.int64)
    counts = np.bincount(idx.ravel(), minlength=n_layers)
    sums = np.bincount(idx.ravel(), weights=inv.ravel(), minlength=n_layers)
    layers = [int(i) for i in np.nonzero(counts)[0]]  # increasing inverse depth = far to near
    log.debug("layered render: %d occupied layers of %d, %.3f dpt each", len(layers), n_layers, (u_hi - u_lo) / n_layers)

    # per layer: its bounding box and the premultiplied RGBA patch
    order = np.argsort(idx.ravel(), kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    patches: list[tuple[float, int, int, int, int, np.ndarray]] = []
    ys_all, xs_all = np.divmod(order, w)
    for li in layers:
        ys = ys_all[bounds[li] : bounds[li + 1]]
        xs = xs_all[bounds[li] : bounds[li + 1]]
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        rgba = np.zeros((y1 - y0, x1 - x0, 4), np.float32)
        rgba[ys - y0, xs - x0, :3] = a[ys, xs]
        rgba[ys - y0, xs - x0, 3] = 1.0
        patches.append((sums[li] / counts[li], y0, y1, x0, x1, rgba))

    out = np.empty((len(fs), h, w, 3), np.float32)
    for s, df in enumerate(fs):
        acc = np.zeros((h, w, 4), np.float32)
        for u, y0, y1, x0, x1, rgba in patches:
            diam = float(coc_diameter_m(1.0 / u, df, lens)) / lens.pixel_pitch_m
            k = psf_kernel(diam, beta, min_sigma_px)
            r = k.shape[0] // 2
            ya, yb, xa, xb = max(0, y0 - r), min(h, y1 + r), max(0, x0 - r), min(w, x1 + r)
            if k.shape == (1, 1):
                blurred = np.zeros((yb - ya, xb - xa, 4), np.float32)
                blurred[y0 - ya : y1 - ya, x0 - xa : x1 - xa] = rgba
            else:
                src = np.zeros((yb - ya, xb - xa, 4), np.float32)
                src[y0 - ya : y1 - ya, x0 - xa : x1 - xa] = rgba
                blurred = cv2.filter2D(src, -1, k, borderType=cv2.BORDER_CONSTANT)
            win = acc[ya:yb, xa:xb]
            win *= 1.0 - blurred[:, :, 3:4]
            win += blurred
        alpha = acc[:, :, 3:4]
        out[s] = acc[:, :, :3] / np.maximum(alpha, 1e-6)
    np.clip(out, 0.0, 1.0, out=out)
    if not noise.is_zero:
        out = noise.apply(out, rng)  # type: ignore[arg-type]
    return out
