"""Self-supervised losses of DAIF-Net (published terms and weights as defaults).

- reconstruction: the input stack re-rendered from the predicted AIF and depth, compared with the input by
  ``alpha * (1 - SSIM) / 2 + (1 - alpha) * L1``;
- coarse AIF: for each pixel, the input pixel whose predicted defocus is smallest (soft-argmin over the
  stack, so that it is differentiable in depth); the AIF is pulled towards it;
- sharpness ("blur") of the AIF and of the coarse AIF: minus the mean absolute Laplacian of Gaussian;
- edge-aware smoothness of the mean-normalised inverse depth, weighted by ``exp(-beta |grad I|)``;
- relative blur (not in the paper; weight 0 unless a config sets it): for neighbouring frames ``i, j`` the
  sharper one, blurred by the relative blur ``sqrt(|sigma_i^2 - sigma_j^2|)`` the predicted depth gives,
  must match the blurrier one (Gaussian blurs add variances). It needs no AIF: the same physics as the
  sweep of :mod:`model.defocus_sweep`, as a differentiable loss on the network's depth.
- distillation (weight 0 unless a config sets it; ``data: distill``): the mean absolute difference of log depth
  from a teacher's depth, the fast refinement's on the same stack (:mod:`model.distill`) — itself made from the
  stack alone, so still no ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "LossWeights",
    "ssim_map",
    "recon_loss",
    "soft_coarse_aif",
    "log_sharpness",
    "edge_aware_smoothness",
    "relative_blur_loss",
    "distill_loss",
]


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (published defaults: recon 1e3, AIF blur 10, coarse-AIF blur 10,
    smoothness 10 with beta 2.5). ``coarse`` (AIF to coarse-AIF L1) and ``relblur``
    (:func:`relative_blur_loss`, off by default) and ``distill`` (:func:`distill_loss`, off by default; only with
    teacher groups, ``data: distill``) are not in the published list."""

    recon: float = 1e3
    aif_blur: float = 10.0
    coarse_blur: float = 10.0
    smooth: float = 10.0
    smooth_beta: float = 2.5
    coarse: float = 1.0
    ssim_alpha: float = 0.85
    coarse_temperature_px: float = 0.5
    relblur: float = 0.0
    distill: float = 0.0


def _gauss_window(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_map(x: Tensor, y: Tensor, window: int = 7, sigma: float = 1.5) -> Tensor:
    """Per-pixel SSIM of ``x`` and ``y`` (``(N, C, H, W)`` in [0, 1]); returns ``(N, C, H, W)``."""
    c = x.shape[1]
    w = _gauss_window(window, sigma, x.device, x.dtype).expand(c, 1, window, window)
    pad = window // 2

    def filt(t: Tensor) -> Tensor:
        return F.conv2d(F.pad(t, (pad, pad, pad, pad), mode="reflect"), w, groups=c)

    mx, my = filt(x), filt(y)
    sxx = filt(x * x) - mx * mx
    syy = filt(y * y) - my * my
    sxy = filt(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))


def recon_loss(rendered: Tensor, target: Tensor, alpha: float = 0.85) -> Tensor:
    """``alpha (1 - SSIM)/2 + (1 - alpha) L1`` between stacks ``(B, S, C, H, W)``; a scalar."""
    b, s, c, h, w = target.shape
    r = rendered.reshape(b * s, c, h, w)
    t = target.reshape(b * s, c, h, w)
    dssim = ((1 - ssim_map(r, t)) / 2).clamp(0, 1)
    return (alpha * dssim + (1 - alpha) * (r - t).abs()).mean()


def soft_coarse_aif(images: Tensor, sigma: Tensor, temperature_px: float = 0.5) -> Tensor:
    """Coarse AIF: per pixel, the input image with the smallest predicted blur (soft-argmin).

    Args:
        images: ``(B, S, C, H, W)`` input stack.
        sigma: ``(B, S, H, W)`` predicted blur of each slice, pixels.
        temperature_px: softness of the argmin, pixels (0 gives the hard argmin).

    Returns:
        ``(B, C, H, W)``.
    """
    if temperature_px <= 0:
        idx = sigma.argmin(dim=1, keepdim=True)  # (B,1,H,W)
        return torch.gather(images, 1, idx.unsqueeze(2).expand(-1, -1, images.shape[2], -1, -1)).squeeze(1)
    w = torch.softmax(-sigma / temperature_px, dim=1).unsqueeze(2)
    return (w * images).sum(dim=1)


_LOG_KERNEL_CACHE: dict[tuple[torch.device, torch.dtype], Tensor] = {}


def _log_kernel(device: torch.device, dtype: torch.dtype, size: int = 5, sigma: float = 1.0) -> Tensor:
    key = (device, dtype)
    if key not in _LOG_KERNEL_CACHE:
        x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
        xx, yy = torch.meshgrid(x, x, indexing="ij")
        r2 = xx**2 + yy**2
        k = (r2 - 2 * sigma**2) / sigma**4 * torch.exp(-r2 / (2 * sigma**2))
        k = k - k.mean()  # zero response to a constant image
        _LOG_KERNEL_CACHE[key] = k.to(device=device, dtype=dtype)[None, None]
    return _LOG_KERNEL_CACHE[key]


def log_sharpness(image: Tensor) -> Tensor:
    """Sharpness loss: minus the mean absolute Laplacian of Gaussian of the grey image (``(B,C,H,W)``)."""
    grey = image.mean(dim=1, keepdim=True)
    k = _log_kernel(image.device, image.dtype)
    return -F.conv2d(F.pad(grey, (2, 2, 2, 2), mode="reflect"), k).abs().mean()


def edge_aware_smoothness(depth_m: Tensor, image: Tensor, beta: float = 2.5) -> Tensor:
    """Edge-aware smoothness of the mean-normalised inverse depth.

    Args:
        depth_m: ``(B, 1, H, W)`` metres.
        image: ``(B, C, H, W)`` guide (the predicted AIF).
        beta: edge sensitivity.
    """
    disp = 1.0 / depth_m
    disp = disp / (disp.mean(dim=(2, 3), keepdim=True) + 1e-7)
    dx = (disp[..., :, 1:] - disp[..., :, :-1]).abs()
    dy = (disp[..., 1:, :] - disp[..., :-1, :]).abs()
    ix = (image[..., :, 1:] - image[..., :, :-1]).abs().mean(1, keepdim=True)
    iy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(1, keepdim=True)
    return (dx * torch.exp(-beta * ix)).mean() + (dy * torch.exp(-beta * iy)).mean()


def relative_blur_loss(images: Tensor, sigma: Tensor, alpha: float = 0.85, max_radius: int = 16) -> Tensor:
    """Relative-blur consistency of neighbouring frames under the predicted blur; a scalar.

    For frames ``i`` and ``i + 1`` the predicted blurs give per pixel the relative blur
    ``r = sqrt(|sigma_i^2 - sigma_{i+1}^2|)``; the sharper frame is blurred by ``r`` (the other by 0) and the
    two grey images are compared by ``alpha (1 - SSIM)/2 + (1 - alpha) L1``. At the true depth both equal
    the AIF blurred by the larger blur, so the loss is smallest there; a wrong depth over- or under-blurs.
    Differentiable in ``sigma`` through :func:`model.render.gauss_psf`.

    Args:
        images: ``(B, S, C, H, W)`` input stack in ``[0, 1]``, ``S >= 2``.
        sigma: ``(B, S, H, W)`` predicted blur of each frame, pixels (e.g. from ``rerender_stack``).
        alpha: SSIM share of the photometric error.
        max_radius: cap on the PSF window radius, pixels.
    """
    from model.render import gauss_psf
    from model.psf_window import capped_window_radius

    b, s, c, h, w = images.shape
    if s < 2:
        raise ValueError(f"relative_blur_loss needs at least 2 frames, got {s}")
    grey = images.mean(dim=2)  # (B, S, H, W)
    var = sigma.float() ** 2
    diff = var[:, 1:] - var[:, :-1]  # (B, S-1, H, W): > 0 where frame i is the sharper
    eps = 1e-6
    r_a = torch.sqrt(diff.clamp(min=0) + eps)  # blur for frame i
    r_b = torch.sqrt((-diff).clamp(min=0) + eps)  # blur for frame i + 1
    frames = torch.stack([grey[:, :-1], grey[:, 1:]], dim=2).reshape(-1, 1, h, w)
    rel = torch.stack([r_a, r_b], dim=2).reshape(-1, 1, h, w)
    radius = capped_window_radius(float(rel.detach().max()), max_radius)
    blurred = gauss_psf(frames, rel, radius).reshape(b * (s - 1), 2, h, w)
    x, y = blurred[:, :1], blurred[:, 1:]
    dssim = ((1 - ssim_map(x, y)) / 2).clamp(0, 1)
    return (alpha * dssim + (1 - alpha) * (x - y).abs()).mean()


def distill_loss(depth_m: Tensor, teacher_depth_m: Tensor) -> Tensor:
    """Mean ``|log d - log d_teacher|`` over the pixels (a scalar; 0.1 is about 10 % depth error).

    Args:
        depth_m: ``(B, 1, H, W)`` predicted depth, metres (> 0).
        teacher_depth_m: ``(B, 1, H, W)`` the teacher's depth of the same stacks, metres (> 0; not differentiated).
    """
    if depth_m.shape != teacher_depth_m.shape:
        raise ValueError(f"depth {tuple(depth_m.shape)} and teacher depth {tuple(teacher_depth_m.shape)} differ in shape")
    return (depth_m.float().clamp(min=1e-6).log() - teacher_depth_m.detach().float().clamp(min=1e-6).log()).abs().mean()
