"""The physics check: re-render the input stack from the predicted depth and AIF, per-pixel confidence.

The thin-lens model turns the predicted depth into a blur map for every slice; the Gaussian PSF renders
the predicted AIF with it. Where the prediction is right, the rendered stack matches the input:

    residual(p)   = mean over slices and channels of |rendered - input|            (intensity units)
    evidence(p)   = box-filtered std across the stack of the grey image            (how much defocus
                    changes the pixel: textureless regions carry no depth information)
    confidence(p) = exp(-residual / tau_residual) * (1 - exp(-evidence / tau_evidence))   in [0, 1]

Everything is plain torch (no custom autograd) except the renderer, so that the ONNX export can trace the
same graph with a ``GaussPSF`` node in place of :func:`model.render.render_stack`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from model.optics import ThinLensLike

__all__ = ["ConfidenceConfig", "PhysicsCheck", "physics_check", "confidence_from_residual", "check_prediction",
           "CheckedMaps"]


@dataclass(frozen=True)
class ConfidenceConfig:
    """Scales of the confidence map (intensities in [0, 1] units)."""

    tau_residual: float = 0.03
    tau_evidence: float = 0.01
    evidence_window: int = 7


class PhysicsCheck(NamedTuple):
    """``rendered (B,S,3,H,W)``, ``residual (B,1,H,W)``, ``confidence (B,1,H,W)``, ``sigma (B,S,H,W)`` px."""

    rendered: Tensor
    residual: Tensor
    confidence: Tensor
    sigma: Tensor


def confidence_from_residual(images: Tensor, rendered: Tensor, config: ConfidenceConfig = ConfidenceConfig()) -> tuple[Tensor, Tensor]:
    """Residual and confidence from the input stack and its re-rendering (both ``(B,S,3,H,W)``).

    Returns ``(residual (B,1,H,W), confidence (B,1,H,W))``.
    """
    residual = (rendered - images).abs().mean(dim=(1, 2)).unsqueeze(1)
    grey = images.mean(dim=2)  # (B,S,H,W)
    spread = grey.std(dim=1, keepdim=True, unbiased=False)  # (B,1,H,W)
    k = config.evidence_window
    evidence = F.avg_pool2d(spread, k, stride=1, padding=k // 2, count_include_pad=False)
    conf = torch.exp(-residual / config.tau_residual) * (1.0 - torch.exp(-evidence / config.tau_evidence))
    return residual, conf.clamp(0.0, 1.0)


def physics_check(
    images: Tensor,
    focus_m: Tensor,
    aif: Tensor,
    depth_m: Tensor,
    lens: ThinLensLike,
    config: ConfidenceConfig = ConfidenceConfig(),
    max_radius: int | None = None,
    blur_scale: float = 1.0,
) -> PhysicsCheck:
    """Re-render ``images (B,S,3,H,W)`` taken at ``focus_m (B,S)`` from ``aif (B,3,H,W)`` and
    ``depth_m (B,1,H,W)`` through ``lens``; residual and confidence per pixel.

    The re-rendering is :func:`model.render.rerender_stack`. ``max_radius`` caps the PSF window (pixels)
    for speed; ``None`` sizes it from the largest blur (up to the renderer's largest window, where larger
    blur is truncated and its weights renormalised). ``blur_scale`` multiplies the moment-matched blur
    ``c / (4 p)`` (``model.refine``'s disc-matched fit; the runners and the exported check use 1).
    """
    from model.render import rerender_stack

    rendered, sigma = rerender_stack(aif, depth_m, focus_m, lens, blur_scale, max_radius=max_radius)
    residual, conf = confidence_from_residual(images, rendered, config)
    return PhysicsCheck(rendered=rendered, residual=residual, confidence=conf, sigma=sigma)


class CheckedMaps(NamedTuple):
    """:func:`check_prediction`'s result as NumPy: ``confidence (H, W)``, ``residual (H, W)``,
    ``rendered (S, H, W, 3)``."""

    confidence: "np.ndarray"
    residual: "np.ndarray"
    rendered: "np.ndarray"


def check_prediction(images, focus_m, aif, depth_m, lens: ThinLensLike, device: str | None = None,
                     blur_scale: float = 1.0) -> CheckedMaps:
    """:func:`physics_check` of one prediction given as NumPy arrays: ``images (S, H, W, 3)``, ``focus_m (S,)``
    metres, ``aif (H, W, 3)``, ``depth_m (H, W)`` metres (the runners' layout); renderer window as the runners
    use it (:data:`model.render.DEFAULT_MAX_RADIUS_PX`)."""
    import numpy as np

    from model.render import DEFAULT_MAX_RADIUS_PX
    from model.runners import check_stack_input

    arr, fm = check_stack_input(images, focus_m)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    with torch.inference_mode():
        x = torch.from_numpy(arr).permute(0, 3, 1, 2)[None].to(dev)
        a = torch.from_numpy(np.ascontiguousarray(aif, np.float32)).permute(2, 0, 1)[None].to(dev)
        d = torch.from_numpy(np.ascontiguousarray(depth_m, np.float32))[None, None].to(dev)
        chk = physics_check(x, torch.from_numpy(fm)[None].to(dev), a, d, lens, max_radius=DEFAULT_MAX_RADIUS_PX,
                            blur_scale=blur_scale)
    return CheckedMaps(confidence=chk.confidence[0, 0].float().cpu().numpy(), residual=chk.residual[0, 0].float().cpu().numpy(),
                       rendered=chk.rendered[0].permute(0, 2, 3, 1).float().cpu().numpy())
