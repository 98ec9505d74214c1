"""Edge-aware depth propagation: carry depth from confident pixels into textureless ones (part of
:mod:`model.refine`, which re-exports it; the settings and the measurements behind them: ``docs/refine.md``)."""

from __future__ import annotations

import numpy as np

__all__ = ["PROPAGATE_SPACES", "propagate_depth"]

PROPAGATE_SPACES: tuple[str, ...] = ("log", "inverse")
"""What :func:`propagate_depth` interpolates: log-depth or inverse depth (dioptres)."""

def propagate_depth(
    depth_m: np.ndarray,
    aif: np.ndarray,
    confidence: np.ndarray,
    strength: float = 1000.0,
    colour_sigma: float = 0.025,
    confidence_power: float = 2.0,
    iterations: int = 1000,
    tol: float = 1e-6,
    device: str | None = None,
    space: str = "log",
) -> np.ndarray:
    """Carry depth from confident pixels into textureless ones, along the AIF's colour edges.

    Defocus says nothing where the scene has no texture; there the depth is taken from the confident
    pixels around, as the solution ``z`` of

        sum_i c_i (z_i - z0_i)^2 + strength * sum_(i,j neighbours) w_ij (z_i - z_j)^2,
        c = confidence ** confidence_power,  w_ij = exp(-|AIF_i - AIF_j|^2 / (2 colour_sigma^2))

    (confidence-weighted, edge-aware harmonic interpolation, as in image colorisation), solved by
    Jacobi-preconditioned conjugate gradients. ``z`` is log-depth (``space="log"``, the default) or
    inverse depth in dioptres (``space="inverse"``). Log-depth weighs near and far neighbours alike (a
    mix of depths in inverse depth is pulled towards the nearest), and it is what delta1 measures.

    Args:
        depth_m: ``(H, W)`` depth, metres (positive).
        aif: ``(H, W, 3)`` all-in-focus image in [0, 1] (the edge guide).
        confidence: ``(H, W)`` in [0, 1] (the physics check's).
        strength, colour_sigma, confidence_power: see above.
        iterations, tol: conjugate-gradient limits (relative residual).
        device: torch device (default: CUDA when available).
        space: ``"log"`` or ``"inverse"``, the quantity that is interpolated.

    Returns:
        ``(H, W)`` float32 depth, metres.
    """
    import torch

    if space not in PROPAGATE_SPACES:
        raise ValueError(f"propagate_depth: space must be one of {PROPAGATE_SPACES}, got {space!r}")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    d = torch.as_tensor(np.asarray(depth_m, np.float64), device=dev)
    if d.ndim != 2 or not bool(torch.all(torch.isfinite(d) & (d > 0))):
        raise ValueError("propagate_depth: depth must be a finite, positive (H, W) map")
    img = torch.as_tensor(np.asarray(aif, np.float64), device=dev)
    conf = torch.as_tensor(np.asarray(confidence, np.float64), device=dev)
    if img.shape[:2] != d.shape or conf.shape != d.shape:
        raise ValueError(f"propagate_depth: AIF {tuple(img.shape)} / confidence {tuple(conf.shape)} do not match depth {tuple(d.shape)}")
    z0 = torch.log(d) if space == "log" else 1.0 / d
    # the solution moves with a constant shift of z0; solving for z0 - min + 1 (>= 1) keeps the relative
    # stopping test meaningful when log-depths straddle 0 (depths around 1 m)
    shift = float(z0.min()) - 1.0 if space == "log" else 0.0
    z0 = z0 - shift
    c = conf.clamp(0.0, 1.0) ** confidence_power + 1e-4  # a little data weight everywhere keeps it well posed
    wx = strength * torch.exp(-((img[:, 1:] - img[:, :-1]) ** 2).sum(-1) / (2 * colour_sigma**2))  # (H, W-1)
    wy = strength * torch.exp(-((img[1:] - img[:-1]) ** 2).sum(-1) / (2 * colour_sigma**2))  # (H-1, W)
    diag = c.clone()
    diag[:, 1:] += wx
    diag[:, :-1] += wx
    diag[1:] += wy
    diag[:-1] += wy

    def apply(z: "torch.Tensor") -> "torch.Tensor":
        out = diag * z
        out[:, 1:] -= wx * z[:, :-1]
        out[:, :-1] -= wx * z[:, 1:]
        out[1:] -= wy * z[:-1]
        out[:-1] -= wy * z[1:]
        return out

    b = c * z0
    z = z0.clone()
    r = b - apply(z)
    p = r / diag
    rz = (r * p).sum()
    bnorm = float(b.norm()) or 1.0
    for _ in range(int(iterations)):
        if float(r.norm()) / bnorm < tol:
            break
        ap = apply(p)
        alpha = rz / (p * ap).sum()
        z = z + alpha * p
        r = r - alpha * ap
        zr = r / diag
        rz_new = (r * zr).sum()
        p = zr + (rz_new / rz) * p
        rz = rz_new
    z = z.clamp(float(z0.min()), float(z0.max())) + shift
    out = torch.exp(z) if space == "log" else 1.0 / z
    return out.float().cpu().numpy()
