"""The graphs that are traced into ONNX: DAIF-Net alone, or DAIF-Net plus the physics check.

:class:`ExportModule` wraps a :class:`model.network.DAIFNet` so that the traced graph works for any image
size: the padding to the network's size multiple is computed from the input shape inside the graph (the
network's own padding is a Python branch that tracing would freeze), with the same reflect padding the
network uses, and the outputs are cropped back.

With ``psf_radius`` set, the module also runs the physics check of :mod:`model.confidence`:

    sigma    = thin-lens blur of every frame from the predicted depth        (model.optics.defocus_sigma_map)
    rendered = GaussPSF(aif repeated per frame, sigma)                       (one node, op type GaussPSF)
    residual, confidence = model.confidence.confidence_from_residual(images, rendered)

With ``sweep`` set, the network's depth is first refined by the relative-blur plane sweep
(:class:`model.defocus_sweep.SweepLayer`, the same module ``model.predict --sweep`` runs), so ``depth_m`` (and
the physics check, when present) is the swept depth.

The lens numbers (and for the sweep the working range) are baked in as constants. ``GaussPSF`` is emitted as one ONNX node in domain
``ai.onnx.contrib`` with the integer attribute ``radius`` (fixed at export: ONNX attributes are static);
:func:`export.targets.to_tensorrt_flavour` turns it into the TensorRT plugin node. While tracing, the node's
values come from :func:`model.render.gauss_psf`, the same math.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.confidence import ConfidenceConfig, confidence_from_residual
from model.defocus_sweep import SweepConfig, SweepLayer, lens_tensor
from model.lens import LensProfile
from model.network import DAIFNet, pad_to_multiple
from model.optics import max_sigma_px
from model.render import DEFAULT_MAX_RADIUS_PX, MAX_RADIUS_PX, capped_window_radius, gauss_psf, rerender_stack

from export.targets import ORT_DOMAIN, PSF_OP_TYPE

__all__ = ["DEFAULT_MAX_PSF_RADIUS", "GaussPsfNode", "ExportModule", "default_psf_radius"]

DEFAULT_MAX_PSF_RADIUS = DEFAULT_MAX_RADIUS_PX
"""Cap on the exported PSF window radius, pixels (:data:`model.render.DEFAULT_MAX_RADIUS_PX`, the runners' cap)."""


class GaussPsfNode(torch.autograd.Function):
    """``gauss_psf(image (N,C,H,W), sigma (N,1,H,W), radius)`` that exports as one ``GaussPSF`` node.

    While the ONNX exporter traces, the forward returns a copy of the image instead of rendering: the node
    is replaced by :meth:`symbolic` anyway, the values after it steer no Python branch, and tracing the
    renderer's thousands of small operations would cost minutes at the default 32 px window. Outside
    tracing it is :func:`model.render.gauss_psf`.
    """

    @staticmethod
    def forward(ctx: Any, image: Tensor, sigma: Tensor, radius: int) -> Tensor:  # type: ignore[override]
        if torch.jit.is_tracing():
            return image.clone()
        return gauss_psf(image, sigma, radius)

    @staticmethod
    def symbolic(g: Any, image: Any, sigma: Any, radius: int) -> Any:
        out = g.op(f"{ORT_DOMAIN}::{PSF_OP_TYPE}", image, sigma, radius_i=int(radius))
        out.setType(image.type())
        return out


def default_psf_radius(lens: LensProfile, focus_m: list[float], near_m: float, far_m: float,
                       cap: int = DEFAULT_MAX_PSF_RADIUS) -> int:
    """Window radius for the largest blur over the working range, ``ceil(3 s_eff)``, capped at ``cap`` pixels."""
    if not 0 <= cap <= MAX_RADIUS_PX:
        raise ValueError(f"the PSF radius cap must be in [0, {MAX_RADIUS_PX}], got {cap}")
    return capped_window_radius(max_sigma_px(focus_m, lens, near_m, far_m), int(cap))


class ExportModule(nn.Module):
    """The traced graph. ``forward(images (1, S, 3, H, W), focus_m (1, S))``.

    Returns ``(aif (1,3,H,W), depth_m (1,1,H,W))``, or with ``psf_radius`` set
    ``(aif, depth_m, confidence (1,1,H,W), residual (1,1,H,W), rendered (1,S,3,H,W))``.

    Args:
        net: the network (eval mode).
        lens: thin-lens numbers for the physics check and the sweep (required with ``psf_radius`` or ``sweep``).
        psf_radius: GaussPSF window radius in pixels; ``None`` exports the network alone.
        confidence: the confidence scales.
        sweep: refine the network's depth in the graph by the relative-blur sweep with these settings
            (:mod:`model.defocus_sweep`); ``None``: no sweep.
        working_range_m: ``(near, far)`` metres the sweep's hypotheses span (default: the network's
            :meth:`~model.network.DAIFNet.working_range_m`, as :func:`model.runners.working_range_of`).
    """

    def __init__(self, net: DAIFNet, lens: LensProfile | None = None, psf_radius: int | None = None,
                 confidence: ConfidenceConfig = ConfidenceConfig(), sweep: SweepConfig | None = None,
                 working_range_m: tuple[float, float] | None = None) -> None:
        super().__init__()
        if (psf_radius is not None or sweep is not None) and lens is None:
            raise ValueError("the physics graph and the sweep need the lens profile")
        if psf_radius is not None:
            if isinstance(psf_radius, bool) or not isinstance(psf_radius, int) or not 0 <= psf_radius <= MAX_RADIUS_PX:
                raise ValueError(f"psf_radius must be an int in [0, {MAX_RADIUS_PX}], got {psf_radius!r}")
        self.net = net
        self.lens = lens
        self.psf_radius = psf_radius
        self.confidence = confidence
        self.sweep: SweepLayer | None = None
        if sweep is not None and lens is not None:
            near, far = working_range_m if working_range_m is not None else net.working_range_m()
            # all hypotheses at once: one set of operators in the graph (the result does not depend on the chunk)
            self.sweep = SweepLayer(sweep, chunk=None)
            self.register_buffer("sweep_lens", lens_tensor(lens), persistent=False)
            self.register_buffer("sweep_range", torch.tensor([[float(near), float(far)]]), persistent=False)

    @property
    def physics(self) -> bool:
        return self.psf_radius is not None

    def forward(self, images: Tensor, focus_m: Tensor) -> tuple[Tensor, ...]:
        b, s, c, h, w = images.shape
        m = self.net.multiple
        # Padding computed in the graph (sizes are traced values): same reflect padding as DAIFNet.forward.
        ph, pw = pad_to_multiple(h, m), pad_to_multiple(w, m)
        x = F.pad(images.reshape(b * s, c, h, w), (0, pw, 0, ph), mode="reflect")
        x = x.reshape(b, s, c, h + ph, w + pw)
        out = self.net(x, focus_m)
        aif = out.aif[:, :, :h, :w]
        depth = out.depth_m[:, :, :h, :w]
        if self.sweep is not None:
            depth = self.sweep(images, focus_m, self.sweep_lens, depth, self.sweep_range)
        if self.psf_radius is None:
            return aif, depth
        # the runners' re-rendering, with the window fixed at export time and the renderer as one node
        rendered, _ = rerender_stack(aif, depth, focus_m, self.lens, radius=self.psf_radius, psf=GaussPsfNode.apply)
        residual, confidence = confidence_from_residual(images, rendered, self.confidence)
        return aif, depth, confidence, residual, rendered
