"""The spatially varying Gaussian PSF of DAIF-Net, gather form (``docs/ARCHITECTURE.md``, ``model.render``).

Every output pixel ``p`` gathers its ``(2R+1)^2`` neighbours ``q``, each weighted with its *own* blur::

    s_eff(q) = sqrt(sigma(q)^2 + MIN_SIGMA_PX^2)                                  pixels
    w(p, q)  = exp(-|p - q|^2 / (2 s_eff(q)^2)) / s_eff(q)^2
    out(p)   = sum_q w(p, q) image(q) / sum_q w(p, q)       neighbours outside the image excluded

Implementation (pure PyTorch, CPU and CUDA, no compile step). The weight factorises per neighbour,
``w = b(q) * G_|dy|(q) * G_|dx|(q)`` with ``b = 1 / s_eff^2`` and ``G_k = exp(-k^2 / (2 s_eff^2))``, so
the renderer keeps one table of the ``R + 1`` distinct ``G_k`` planes (``O(N H W R)`` memory, ``R + 1``
exponentials per pixel instead of ``(2R+1)^2``) and accumulates the window by offset magnitude
``(|dy|, |dx|)``: the four offsets ``(+-dy, +-dx)`` share their table planes, so each magnitude costs a
few whole-chunk elementwise ops (``mul``/``addcmul_``/``add_``) on one row band, never a Python loop
over pixels. Planes are stored zero-padded and flattened with the padded row stride, so that a window
offset is a plain offset into a contiguous buffer (the extra columns this computes are discarded).
No ``(2R+1)^2`` copies of the image are ever held; the custom backward recomputes the table rather
than saving it, and autograd keeps only the inputs, the output and the per-pixel normaliser. Work is
chunked over images so that the temporaries stay within a fixed budget.

Backward, with ``den(p) = sum_q w(p, q)``, ``g = dL/dout``, ``gn = g / den`` and ``gd = -sum_c gn_c out_c``::

    dL/dimage_c(q) = b(q) sum_d e_d(q) gn_c(q + d)                  e_d = G_|dy| G_|dx|
    dL/dsigma(q)   = sigma b^2 (b T2 - 2 T0)
    T0(q) = sum_d e_d(q) m(q, d),  T2(q) = sum_d |d|^2 e_d(q) m(q, d),  m = sum_c image_c(q) gn_c(q + d) + gd(q + d)

``gauss_psf_reference_numpy`` (a per-pixel loop in float64) and ``gauss_psf_unfold`` (the naive
``F.unfold`` form that holds ``(2R+1)^2`` copies, differentiated by autograd) are the references the tests
and ``benchmarks/bench_render.py`` compare against.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Final, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

# the window's constants and radius rule live in a torch-free module (the export side reads them too)
from model.psf_window import (
    DEFAULT_MAX_RADIUS_PX,
    DEFAULT_TRUNCATE,
    MAX_RADIUS_PX,
    MIN_SIGMA_PX,
    capped_window_radius,
    psf_window_radius,
)

__all__ = [
    "MIN_SIGMA_PX",
    "MAX_RADIUS_PX",
    "DEFAULT_MAX_RADIUS_PX",
    "psf_window_radius",
    "capped_window_radius",
    "gauss_psf",
    "render_stack",
    "rerender_stack",
    "GaussPSF",
    "gauss_psf_reference_numpy",
    "gauss_psf_unfold",
]

logger = logging.getLogger(__name__)

# Working-set budget per chunk of images (tables + accumulators). Small on CPU so that a chunk stays
# cache-friendly; large on accelerators, where each window offset is a kernel launch.
_CHUNK_BYTES_CPU: Final[int] = 16 << 20
_CHUNK_BYTES_ACCEL: Final[int] = 1 << 30

# float16/bfloat16 inputs (e.g. from autocast) are computed in float32 and returned in their own dtype.
_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


# ----------------------------------------------------------------------------------------------- checks


def _check_radius(radius: Any) -> int:
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)):
        raise TypeError(f"radius must be an int (pixels) or None, got {type(radius).__name__}")
    r = int(radius)
    if r < 0 or r > MAX_RADIUS_PX:
        raise ValueError(
            f"radius {r} px is outside [0, {MAX_RADIUS_PX}]: a ({2 * r + 1})^2 window is not supported; "
            "downscale the images (blur scales with resolution) or pass a smaller radius to truncate the PSF"
        )
    return r


def _check_inputs(image: Any, sigma: Any, *, stack: bool) -> float:
    """Shape/dtype/device/value checks shared by :func:`gauss_psf` (``stack=False``) and :func:`render_stack`.

    Returns the largest blur in ``sigma`` (pixels), read in the same pass as the value checks.
    """
    img_name, sig_name = ("aif", "sigma") if stack else ("image", "sigma")
    for name, t in ((img_name, image), (sig_name, sigma)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if image.dim() != 4:
        raise ValueError(f"{img_name} must be (N, C, H, W), got shape {tuple(image.shape)}")
    n, _, h, w = image.shape
    want = f"(N, S, H, W) = ({n}, S, {h}, {w})" if stack else f"(N, 1, H, W) = ({n}, 1, {h}, {w})"
    if sigma.dim() != 4 or sigma.shape[0] != n or sigma.shape[2:] != image.shape[2:] or (not stack and sigma.shape[1] != 1):
        raise ValueError(f"{sig_name} must be {want} to match {img_name} {tuple(image.shape)}, got {tuple(sigma.shape)}")
    if image.numel() == 0 or sigma.numel() == 0:
        raise ValueError(f"empty input: {img_name} {tuple(image.shape)}, {sig_name} {tuple(sigma.shape)}")
    if image.device != sigma.device:
        raise ValueError(f"{img_name} is on {image.device} but {sig_name} is on {sigma.device}; move both to one device")
    for name, t in ((img_name, image), (sig_name, sigma)):
        if t.dtype not in _DTYPES:
            names = ", ".join(str(d).replace("torch.", "") for d in _DTYPES)
            raise ValueError(f"{name} dtype {str(t.dtype).replace('torch.', '')} is not supported (use {names})")
    lo, hi = torch.stack(torch.aminmax(sigma.detach())).tolist()  # NaN propagates; one device sync
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{sig_name} has non-finite values (NaN or inf); blur must be finite pixels")
    if lo < 0:
        raise ValueError(f"{sig_name} has negative values (min {lo:g} px); blur must be >= 0 pixels")
    return hi


def _resolve_radius(max_sigma: float, radius: Optional[int]) -> int:
    if radius is not None:
        return _check_radius(radius)
    r = psf_window_radius(max_sigma)
    if r > MAX_RADIUS_PX:
        raise ValueError(
            f"the largest blur ({max_sigma:.3g} px) needs a radius-{r} window, above the supported "
            f"{MAX_RADIUS_PX}; downscale the images or pass radius=<= {MAX_RADIUS_PX} to truncate the PSF"
        )
    return r


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


# ----------------------------------------------------------------------------------------------- core


class _Plan:
    """Geometry of the flattened, zero-padded planes for one call.

    A plane is padded by ``R`` on every side plus one extra bottom row and flattened with row stride
    ``Wp = W + 2R``; ``L = (H + 2R + 1) * Wp``. The window offset ``(jy, jx)`` (``0..2R`` each) of the
    output pixel at flat index ``i = y * Wp + x`` is at padded flat index ``i + jy * Wp + jx``; outputs are
    computed for ``H * Wp`` flat positions and the last ``2R`` columns of each row are discarded.
    """

    def __init__(self, h: int, w: int, radius: int) -> None:
        self.h, self.w, self.r = h, w, radius
        self.wp = w + 2 * radius
        self.length = (h + 2 * radius + 1) * self.wp
        self.span = h * self.wp

    def pad(self, t: Tensor) -> Tensor:
        """``(n, c, H, W)`` -> ``(n, c, L)`` zero-padded, flattened."""
        r = self.r
        return F.pad(t, (r, r, r, r + 1)).reshape(t.shape[0], t.shape[1], self.length)

    def crop(self, t: Tensor) -> Tensor:
        """``(n, c, H * Wp)`` -> ``(n, c, H, W)`` (a view)."""
        return t.view(t.shape[0], t.shape[1], self.h, self.wp)[..., : self.w]

    def chunk_size(self, n_total: int, channels: int, itemsize: int, device: torch.device) -> int:
        per_item = itemsize * self.length * ((self.r + 1) + 5 * (channels + 1))  # table + buffers
        budget = _CHUNK_BYTES_CPU if device.type == "cpu" else _CHUNK_BYTES_ACCEL
        return max(1, min(n_total, budget // max(per_item, 1)))


def _weights(sigma: Tensor, plan: _Plan) -> tuple[Tensor, Tensor]:
    """``b = 1 / s_eff^2`` ``(n, 1, H, W)`` and the table ``G_k = exp(-k^2 b / 2)``, ``(n, R+1, L)``.

    The table is padded with ones (its padding is never used with a non-zero factor: the padded
    image and normaliser terms are zero there). Exponents are floored at the log of the smallest
    normal number of the dtype (``G_k >= ~1e-38`` in float32): below it ``exp`` would return subnormals,
    which is several times slower on common CPUs, and the weights differ from the exact ones by less than
    that number.
    """
    b = (sigma * sigma + MIN_SIGMA_PX * MIN_SIGMA_PX).reciprocal_()
    k2 = torch.arange(plan.r + 1, device=sigma.device, dtype=sigma.dtype).square_().neg_().mul_(0.5)
    floor = math.ceil(math.log(torch.finfo(sigma.dtype).tiny))
    g = (plan.pad(b) * k2.view(1, -1, 1)).clamp_(min=floor).exp_()
    return b, g


def _gather(u: Tensor, g: Tensor, plan: _Plan) -> Tensor:
    """Forward accumulation ``acc(p) = sum_d e_d(p + d) u(p + d)``: ``u (n, c, L)`` -> ``(n, c, H * Wp)``.

    The four offsets ``(+-ky, +-kx)`` share the table planes ``G_ky``, ``G_kx``: per ``(ky, kx)`` the two
    source bands (rows ``+ky`` and ``-ky``) are weighted and summed once, then added at ``+kx`` and ``-kx``.
    """
    r, wp, span = plan.r, plan.wp, plan.span
    blen = span + 2 * r  # a band of H rows, plus the 2R columns that the x offsets reach
    n, c = u.shape[0], u.shape[1]
    acc = u.new_zeros(n, c, span)
    up_buf, um_buf, q_buf = (u.new_empty(n, c, blen) for _ in range(3))
    for ky in range(r + 1):
        op, om = (r + ky) * wp, (r - ky) * wp
        if ky:  # G_0 == 1: no weighting for the centre row
            up = torch.mul(u[:, :, op : op + blen], g[:, ky : ky + 1, op : op + blen], out=up_buf)
            um = torch.mul(u[:, :, om : om + blen], g[:, ky : ky + 1, om : om + blen], out=um_buf)
        else:
            up = um = u[:, :, op : op + blen]
        for kx in range(r + 1):
            if kx:
                q = torch.mul(up, g[:, kx : kx + 1, op : op + blen], out=q_buf)
                if ky:
                    q.addcmul_(um, g[:, kx : kx + 1, om : om + blen])
            else:
                q = torch.add(up, um, out=q_buf) if ky else up
            acc.add_(q[:, :, r + kx : r + kx + span])
            if kx:
                acc.add_(q[:, :, r - kx : r - kx + span])
    return acc


def _scatter(h: Tensor, g: Tensor, plan: _Plan, with_r2: bool) -> tuple[Tensor, Optional[Tensor]]:
    """Backward accumulation at ``q``: ``A = sum_d e_d(q) h(q + d)`` and ``B = sum_d |d|^2 e_d(q) h(q + d)``.

    ``h (n, c, L)`` padded; returns ``(n, c, H * Wp)`` tensors (``B`` only when ``with_r2``). The table is
    taken at ``q``, so the four offsets ``(+-ky, +-kx)`` share one weight: ``h`` is summed over them
    first (rows, then columns) and weighted once.
    """
    r, wp, span = plan.r, plan.wp, plan.span
    blen = span + 2 * r
    gq = g[:, :, r * wp + r : r * wp + r + span]  # the table at the output pixel q
    n, c = h.shape[0], h.shape[1]
    a_acc, row0, pair = (h.new_zeros(n, c, span), h.new_empty(n, c, span), h.new_empty(n, c, span))
    b_acc, row2 = (h.new_zeros(n, c, span), h.new_empty(n, c, span)) if with_r2 else (None, None)
    band_buf = h.new_empty(n, c, blen)
    for ky in range(r + 1):
        op, om = (r + ky) * wp, (r - ky) * wp
        if ky:
            band = torch.add(h[:, :, op : op + blen], h[:, :, om : om + blen], out=band_buf)
        else:
            band = h[:, :, op : op + blen]
        row0.copy_(band[:, :, r : r + span])  # kx = 0, G_0 == 1
        if row2 is not None:
            row2.zero_()
        for kx in range(1, r + 1):
            torch.add(band[:, :, r + kx : r + kx + span], band[:, :, r - kx : r - kx + span], out=pair)
            gk = gq[:, kx : kx + 1]
            row0.addcmul_(pair, gk)
            if row2 is not None:
                row2.addcmul_(pair, gk, value=kx * kx)
        gy = gq[:, ky : ky + 1]
        if ky:
            a_acc.addcmul_(row0, gy)
        else:
            a_acc.add_(row0)
        if b_acc is not None and row2 is not None:
            if ky:
                row2.add_(row0, alpha=ky * ky)
                b_acc.addcmul_(row2, gy)
            else:
                b_acc.add_(row2)
    return a_acc, b_acc


class _GaussPSFFunction(torch.autograd.Function):
    """``image (Ni, C, H, W)``, ``sigma (Ni, S, H, W)`` -> ``(Ni, S, C, H, W)``: slice ``s`` of image ``i``
    rendered with ``sigma[i, s]``. Inputs are already checked; ``radius`` resolved."""

    @staticmethod
    def forward(ctx: Any, image: Tensor, sigma: Tensor, radius: int) -> Tensor:  # type: ignore[override]
        ni, c, h, w = image.shape
        s = sigma.shape[1]
        cd = _compute_dtype(image, sigma)
        plan = _Plan(h, w, radius)
        with torch.autocast(device_type=image.device.type, enabled=False):
            x_all = image.to(cd)
            sig_all = sigma.to(cd).reshape(ni * s, 1, h, w)
            out = x_all.new_empty(ni * s, c, h, w)
            den = x_all.new_empty(ni * s, 1, h, w)
            step = plan.chunk_size(ni * s, c, x_all.element_size(), image.device)
            logger.debug("gauss_psf forward: %d x %d slices of %dx%dx%d, R=%d, %d per chunk", ni, s, c, h, w, radius, step)
            for j0 in range(0, ni * s, step):
                j1 = min(ni * s, j0 + step)
                x = _images_for(x_all, j0, j1, s)
                b, g = _weights(sig_all[j0:j1], plan)
                u = plan.pad(torch.cat([x * b, b], dim=1))
                acc = plan.crop(_gather(u, g, plan))
                den[j0:j1] = acc[:, c:]
                torch.div(acc[:, :c], acc[:, c:], out=out[j0:j1])
        ctx.radius = radius
        ctx.save_for_backward(image, sigma, out, den)
        return out.view(ni, s, c, h, w).to(image.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Optional[Tensor], Optional[Tensor], None]:  # type: ignore[override]
        image, sigma, out, den = ctx.saved_tensors
        need_image, need_sigma = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (need_image or need_sigma):
            return None, None, None
        ni, c, h, w = image.shape
        s = sigma.shape[1]
        cd = out.dtype
        plan = _Plan(h, w, ctx.radius)
        with torch.autocast(device_type=image.device.type, enabled=False):
            x_all = image.to(cd)
            sig_all = sigma.to(cd).reshape(ni * s, 1, h, w)
            g_all = grad_out.to(cd).reshape(ni * s, c, h, w)
            grad_image = torch.zeros_like(x_all) if need_image else None
            grad_sigma = torch.empty_like(sig_all) if need_sigma else None
            step = plan.chunk_size(ni * s, c, x_all.element_size(), image.device)
            for j0 in range(0, ni * s, step):
                j1 = min(ni * s, j0 + step)
                sig = sig_all[j0:j1]
                gn = g_all[j0:j1] / den[j0:j1]
                if need_sigma:
                    gd = (gn * out[j0:j1]).sum(dim=1, keepdim=True).neg_()
                    hpad = plan.pad(torch.cat([gn, gd], dim=1))
                else:
                    hpad = plan.pad(gn)
                b, g = _weights(sig, plan)
                a_flat, b_flat = _scatter(hpad, g, plan, with_r2=need_sigma)
                a_acc = plan.crop(a_flat)
                if grad_image is not None:
                    gx = a_acc[:, :c] * b
                    if s == 1:
                        grad_image[j0:j1] = gx
                    else:
                        grad_image.index_add_(0, _owners(j0, j1, s, image.device), gx)
                if grad_sigma is not None and b_flat is not None:
                    b_acc = plan.crop(b_flat)
                    x = _images_for(x_all, j0, j1, s)
                    t0 = (x * a_acc[:, :c]).sum(dim=1, keepdim=True) + a_acc[:, c:]
                    t2 = (x * b_acc[:, :c]).sum(dim=1, keepdim=True) + b_acc[:, c:]
                    grad_sigma[j0:j1] = sig * b * b * (t2 * b - 2.0 * t0)
        gi = grad_image.to(image.dtype) if grad_image is not None else None
        gs = grad_sigma.view(ni, s, h, w).to(sigma.dtype) if grad_sigma is not None else None
        return gi, gs, None


def _owners(j0: int, j1: int, s: int, device: torch.device) -> Tensor:
    """Index of the image each flattened slice ``j0..j1`` belongs to (slice ``j`` -> image ``j // s``)."""
    return torch.arange(j0, j1, device=device) // s


def _images_for(x_all: Tensor, j0: int, j1: int, s: int) -> Tensor:
    """Images of the flattened slices ``j0..j1``: a view when ``s == 1``, else a gathered copy."""
    return x_all[j0:j1] if s == 1 else x_all.index_select(0, _owners(j0, j1, s, x_all.device))


# ----------------------------------------------------------------------------------------------- public


def gauss_psf(image: Tensor, sigma: Tensor, radius: Optional[int] = None) -> Tensor:
    """Blur every image with its own spatially varying Gaussian PSF (gather form).

    Args:
        image: ``(N, C, H, W)`` float32 or float64; float16/bfloat16 (e.g. under autocast) are computed in
            float32 and returned in their own dtype.
        sigma: ``(N, 1, H, W)`` PSF standard deviation in pixels, finite and ``>= 0``, same device.
        radius: window radius in pixels (``0..MAX_RADIUS_PX``); ``None`` picks
            ``psf_window_radius(sigma.max())``.

    Returns:
        ``(N, C, H, W)`` in ``image.dtype``, differentiable w.r.t. ``image`` and ``sigma`` (once).

    Raises:
        TypeError: an input is not a tensor, or ``radius`` is not an int.
        ValueError: shapes, devices or dtypes do not match, ``sigma`` is negative or not finite, or the
            window would exceed :data:`MAX_RADIUS_PX`.
    """
    r = _resolve_radius(_check_inputs(image, sigma, stack=False), radius)
    return _GaussPSFFunction.apply(image, sigma, r).squeeze(1)


def render_stack(aif: Tensor, sigma: Tensor, radius: Optional[int] = None) -> Tensor:
    """Render a focal stack from an all-in-focus image and one blur map per slice.

    The image is not copied per slice; work is chunked over the ``B * S`` slices to bound memory.

    Args:
        aif: ``(B, C, H, W)`` all-in-focus image (dtypes as :func:`gauss_psf`).
        sigma: ``(B, S, H, W)`` blur of every slice, pixels (e.g. ``model.optics.defocus_sigma_map``).
        radius: window radius in pixels; ``None`` sizes it from the largest blur of the whole stack.

    Returns:
        ``(B, S, C, H, W)``; slice ``s`` equals ``gauss_psf(aif, sigma[:, s:s+1], radius)``.

    Raises:
        TypeError, ValueError: as :func:`gauss_psf`.
    """
    r = _resolve_radius(_check_inputs(aif, sigma, stack=True), radius)
    return _GaussPSFFunction.apply(aif, sigma, r)


def rerender_stack(
    aif: Tensor,
    depth_m: Tensor,
    focus_m: Tensor,
    lens: Any,
    blur_scale: float = 1.0,
    max_radius: Optional[int] = DEFAULT_MAX_RADIUS_PX,
    *,
    pixel_scale: float = 1.0,
    per_frame_radius: bool = False,
    radius: Optional[int] = None,
    psf: Optional[Callable[[Tensor, Tensor, int], Tensor]] = None,
) -> tuple[Tensor, Tensor]:
    """Re-render a focal stack from a depth map and an all-in-focus image through the thin lens.

    The one implementation of "blur from depth, then render" that the physics check
    (:func:`model.confidence.physics_check`), training (:mod:`model.trainer`, :func:`model.data.render_batch`),
    refinement (:mod:`model.refine`) and the exported graph (:mod:`export.physics_graph`) call:

        sigma    = pixel_scale * model.optics.defocus_sigma_map(depth_m, focus_m, lens, blur_scale)
        R        = capped_window_radius(max sigma, max_radius)        (or ``radius`` when given)
        rendered = render_stack(aif, sigma, R)

    Args:
        aif: ``(B, C, H, W)`` all-in-focus image.
        depth_m: ``(B, 1, H, W)`` depth, metres.
        focus_m: ``(B, S)`` focus distances, metres.
        lens: the thin lens (``model.optics.ThinLensLike``; its pixel pitch is that of the lens's pixels).
        blur_scale: factor on the moment-matched blur ``c / (4 p)`` (``model.optics.coc_sigma_px``).
        max_radius: cap on the window radius, pixels (``None``: only the renderer's :data:`MAX_RADIUS_PX`).
        pixel_scale: size of these images relative to the lens's pixels (a stack resized by 0.5 has half the
            blur in pixels).
        per_frame_radius: size the window of every frame from its own largest blur instead of the whole
            stack's (same result within the window; frames focused near most of the scene render faster).
        radius: a fixed window radius (pixels), used instead of the rule (the exported graph fixes it at
            export time).
        psf: a renderer ``psf(image (N, C, H, W), sigma (N, 1, H, W), radius) -> (N, C, H, W)`` used on
            the ``B * S`` frames instead of :func:`render_stack` (the exported graph's ``GaussPSF`` node).

    Returns:
        ``(rendered (B, S, C, H, W), sigma (B, S, H, W) pixels)``; differentiable as :func:`render_stack`.

    Raises:
        TypeError, ValueError: as :func:`render_stack` and ``model.optics.defocus_sigma_map``.
    """
    from model.optics import defocus_sigma_map

    sigma = defocus_sigma_map(depth_m, focus_m, lens, blur_scale)
    if pixel_scale != 1.0:
        sigma = sigma * pixel_scale
    if psf is not None:
        if radius is None:
            radius = capped_window_radius(float(sigma.detach().max()), max_radius)
        b, s = sigma.shape[:2]
        c, h, w = aif.shape[1:]
        frames = aif.unsqueeze(1).expand(b, s, c, h, w).reshape(b * s, c, h, w)
        rendered = psf(frames, sigma.reshape(b * s, 1, h, w), radius)
        return rendered.reshape(b, s, c, h, w), sigma
    if per_frame_radius and radius is None:
        return _render_per_frame_radius(aif, sigma, max_radius), sigma
    if radius is None:
        radius = capped_window_radius(float(sigma.detach().max()), max_radius)
    return render_stack(aif, sigma, radius=radius), sigma


def _render_per_frame_radius(aif: Tensor, sigma: Tensor, max_radius: Optional[int]) -> Tensor:
    """:func:`render_stack` with every frame's window sized from its own largest blur (frames grouped by radius)."""
    b, c, h, w = aif.shape
    s = sigma.shape[1]
    sig = sigma.reshape(b * s, 1, h, w)
    img = aif.repeat_interleave(s, dim=0)
    radii = [capped_window_radius(float(m), max_radius) for m in sig.detach().amax(dim=(1, 2, 3))]
    out = aif.new_empty(b * s, c, h, w)
    for r in sorted(set(radii)):
        idx = torch.tensor([i for i, x in enumerate(radii) if x == r], device=aif.device)
        out[idx] = gauss_psf(img[idx], sig[idx], radius=r)
    return out.reshape(b, s, c, h, w)


class GaussPSF(nn.Module):
    """Module form of :func:`gauss_psf`: ``GaussPSF(radius=None)(image (N,C,H,W), sigma (N,1,H,W))``.

    Args:
        radius: fixed window radius in pixels, or ``None`` to size it from each call's largest blur.
    """

    def __init__(self, radius: Optional[int] = None) -> None:
        super().__init__()
        self.radius = None if radius is None else _check_radius(radius)

    def forward(self, image: Tensor, sigma: Tensor) -> Tensor:
        return gauss_psf(image, sigma, self.radius)

    def extra_repr(self) -> str:
        return f"radius={self.radius}"


# ----------------------------------------------------------------------------------------------- references


def gauss_psf_reference_numpy(image: Any, sigma: Any, radius: int) -> np.ndarray:
    """Direct per-pixel evaluation of the definition in NumPy float64 (slow: small images only).

    Args:
        image: ``(N, C, H, W)`` array or tensor.
        sigma: ``(N, 1, H, W)`` blur in pixels.
        radius: window radius in pixels.

    Returns:
        ``(N, C, H, W)`` float64 array.
    """
    x = _as_float64(image)
    sg = _as_float64(sigma)
    if x.ndim != 4 or sg.shape != (x.shape[0], 1) + x.shape[2:]:
        raise ValueError(f"image must be (N, C, H, W) and sigma (N, 1, H, W); got {x.shape} and {sg.shape}")
    r = _check_radius(radius)
    n, c, h, w = x.shape
    s2 = sg[:, 0] ** 2 + MIN_SIGMA_PX**2
    out = np.empty_like(x)
    for k in range(n):
        for y in range(h):
            y0, y1 = max(0, y - r), min(h, y + r + 1)
            dy2 = (np.arange(y0, y1) - y)[:, None] ** 2
            for xx in range(w):
                x0, x1 = max(0, xx - r), min(w, xx + r + 1)
                r2 = dy2 + (np.arange(x0, x1) - xx)[None, :] ** 2
                sq = s2[k, y0:y1, x0:x1]
                wgt = np.exp(-r2 / (2.0 * sq)) / sq
                out[k, :, y, xx] = (x[k, :, y0:y1, x0:x1] * wgt).sum(axis=(1, 2)) / wgt.sum()
    return out


def _as_float64(a: Any) -> np.ndarray:
    if isinstance(a, Tensor):
        a = a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64)


def gauss_psf_unfold(image: Tensor, sigma: Tensor, radius: int) -> Tensor:
    """The naive ``F.unfold`` form: holds ``(2R+1)^2`` shifted copies of the image, weights and blur;
    autograd differentiates through it. Same contract as :func:`gauss_psf` (``radius`` required).

    Memory grows as ``N (C + ~6) H W (2R+1)^2`` elements; this is the benchmark baseline, not for use.
    """
    _check_inputs(image, sigma, stack=False)
    r = _check_radius(radius)
    n, c, h, w = image.shape
    k = 2 * r + 1
    cd = _compute_dtype(image, sigma)
    with torch.autocast(device_type=image.device.type, enabled=False):
        x = image.to(cd)
        b = (sigma.to(cd) ** 2 + MIN_SIGMA_PX**2).reciprocal()
        xu = F.unfold(x, k, padding=r).view(n, c, k * k, h * w)
        bu = F.unfold(b, k, padding=r).view(n, 1, k * k, h * w)  # zero padding: outside pixels excluded
        off = torch.arange(k, device=image.device, dtype=cd) - r
        r2 = (off.view(k, 1) ** 2 + off.view(1, k) ** 2).view(1, 1, k * k, 1)
        wgt = bu * torch.exp(-0.5 * r2 * bu)
        out = (wgt * xu).sum(dim=2) / wgt.sum(dim=2)
    return out.view(n, c, h, w).to(image.dtype)
