"""Relative-blur plane sweep: a cheap physics step that sharpens the network's depth on the stack itself.

For a depth hypothesis ``d`` every frame ``i`` has a known blur ``sigma_i(d)`` (thin lens,
:func:`model.optics.coc_sigma_px`). If ``d`` is right, blurring the sharper frame ``j`` of any pair by the
*relative* blur ``sqrt(sigma_i^2 - sigma_j^2)`` reproduces the blurrier frame ``i`` (Gaussian PSFs compose
by adding variances; Subbarao's relative-blur principle). The squared mismatch summed over all pairs and a
``window`` x ``window`` box is the cost of ``d`` at each pixel. No all-in-focus image and no training are
needed, only the stack and the lens.

Alone the sweep is about as good as classical depth from focus (it fails where the cost is flat: weak
texture, surfaces beyond the farthest focus). It is used *around the network's prediction*: each pixel
takes the cheapest hypothesis whose blur code ``K/d`` lies within a factor ``band`` of the network's,
so the network supplies context (which surface, roughly how far) and the physics the exact blur.
Where the cost is flat (weak texture, far surfaces) its minimum is noise, so a gate keeps the network's
depth wherever the cheapest hypothesis is cheaper than the one at the network's depth by less than
``min_gain`` (10 %) of that cost. Chosen on the evaluation suite's tuning split (``python -m model.eval_suite
score --sweep``; README "Results"): window 15 px, band 1.35, 64 hypotheses; the gate (min_gain 0.1 of 0.02,
0.05, 0.1, 0.2) raised the shipped model + sweep from 0.748 / 0.195 (delta1 / AbsRel) to 0.749 / 0.186 there,
and on 54 tuning stacks never used for a choice (``--per-family 6``, the second half) from 0.706 / 0.284 to
0.725 / 0.260 (network alone 0.687 / 0.285): on weak texture and occlusion the sweep now loses at most
0.009 delta1 to the network alone (ungated: 0.050 and 0.024), on slanted planes it gains.

One implementation, :class:`SweepLayer` (PyTorch), serves every caller: the NumPy functions
:func:`relative_blur_cost` and :func:`sweep_depth`, :class:`SweepingRunner` (``model.predict --sweep``,
``device.capture --sweep``, ``model.evaluate --sweep``, ``model.eval_suite score --sweep``) and the exported
ONNX / TensorRT graph (``python -m export onnx --sweep``, :mod:`export.physics_graph`). It is built from
operators TensorRT imports (separable ``Conv``, reflect ``Pad``, ``Gather``, ``AveragePool``, ``ArgMin``,
element-wise maths); the lens, focus distances and working range are tensors, the per-hypothesis blurs are
computed in the graph by :func:`model.optics.coc_sigma_px`.

How the cost volume is computed: every frame's grey image (Rec. 601 luma, as
:func:`model.baseline_dff.to_grey`) is blurred once at fixed Gaussian sigmas (0 and ``pyramid_levels``
geometric steps from 0.3 px to ``max_sigma_px``; kernels of ``2 round(4 sigma) + 1`` taps as OpenCV's for
float images, reflect borders; the wider levels blurred from the level below, :data:`CASCADE_MIN_STEP_PX`);
a relative blur is the linear interpolation between the two levels around it
(gathered per hypothesis). For each unordered pair the sharper frame (per hypothesis) is the one blurred;
pairs of equal blur add nothing.

Cost (``benchmarks/bench_sweep.py``): on one CPU core about 0.3 s per 5 x 240 x 320 stack, 1.2-1.6x the
OpenCV/NumPy implementation this module replaced (0.18-0.19 s; same stacks, one thread; swept depth identical
at 99.5 % of pixels, the rest near-ties between neighbouring hypotheses, mostly within a kernel's reach of the
border, where OpenCV reflected the border pixel and this reflects around it). Half of it is the blur pyramid's
depthwise convolutions (levels from ``CASCADE_MIN_STEP_PX`` cascaded), the rest the hypothesis loop (in place
in ``chunk``-sized groups).

Units: metres, pixels. NumPy arrays: images ``(S, H, W, 3)`` float in ``[0, 1]``; tensors: ``(B, S, 3, H, W)``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.baseline_dff import _LUMA  # the luma weights of to_grey (one grey image for the sweep and DfF)
from model.lens import LensProfile
from model.optics import ThinLensLike, coc_sigma_px
from model.runners import Runner, RunnerWrapper

__all__ = ["SweepConfig", "SweepLayer", "lens_tensor", "relative_blur_cost", "relative_blur_cost_of", "cost_support",
           "CostGrid", "cost_grid",
           "sweep_depth", "graph_sweeps", "SweepingRunner"]

CASCADE_MIN_STEP_PX = 1.0
"""A pyramid level is blurred from the level below it (by ``sqrt(s_l^2 - s_{l-1}^2)``) when that step and the
level below are at least this many pixels: sampled Gaussians that wide compose like continuous ones (the variance
error is below 1e-8 of sigma^2), so the cascade equals blurring the grey image directly within 1e-4 of its range,
at a fraction of the taps; narrower levels are blurred from the grey image."""

FLAT_COST_SPREAD = 1e-8
"""A pixel whose relative-blur cost varies by less than this over all depths has no defocus evidence
(:func:`cost_support`): far below the cost of 8-bit quantisation or sensor noise (about 1e-5 for one frame pair
at noise 0.003), far above float rounding on a constant image."""

MASKED_COST = 6.0e4
"""Cost given to hypotheses outside a pixel's band: above any real cost (grey images in [0, 1]: at most one per
frame pair) and finite in fp16 (max 65504), so a half-precision TensorRT engine keeps it."""


@dataclass(frozen=True)
class SweepConfig:
    """Settings of the sweep (defaults chosen on the suite's tuning split).

    Attributes:
        window: side of the box the per-pixel cost is summed over, pixels (odd).
        band: each pixel searches blur codes within ``[x / band, x * band]`` of the prior's ``x = K/d``.
        hypotheses: depth hypotheses, spread evenly in log inverse depth (log blur code) over the working range.
        pyramid_levels: Gaussian blur levels (0 and geometric 0.3 px to ``max_sigma_px``) the relative
            blurs are interpolated from.
        max_sigma_px: largest relative blur represented, pixels (larger is clamped).
        min_gain: keep the prior's depth where the cheapest hypothesis in the band lowers the cost of the
            hypothesis nearest the prior by less than this fraction (a flat cost: weak texture); 0 = always
            take the cheapest.
    """

    window: int = 15
    band: float = 1.35
    hypotheses: int = 64
    pyramid_levels: int = 40
    max_sigma_px: float = 14.0
    min_gain: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1 or self.window % 2 == 0:
            raise ValueError(f"window must be an odd whole number of pixels >= 1, got {self.window!r}")
        if not (self.band > 1.0 and math.isfinite(self.band)):
            raise ValueError(f"band must be a factor > 1, got {self.band!r}")
        if int(self.hypotheses) < 3 or int(self.pyramid_levels) < 2:
            raise ValueError(f"need hypotheses >= 3 and pyramid_levels >= 2, got {self.hypotheses}, {self.pyramid_levels}")
        if not 0.0 <= self.min_gain < 1.0:
            raise ValueError(f"min_gain must be a fraction in [0, 1), got {self.min_gain!r}")
        if not self.max_sigma_px > 0.3:
            raise ValueError(f"max_sigma_px must exceed 0.3, got {self.max_sigma_px!r}")

    def levels(self) -> np.ndarray:
        """The pyramid's Gaussian sigmas, pixels: ``0`` then ``pyramid_levels`` geometric steps 0.3..max."""
        return np.concatenate([[0.0], np.geomspace(0.3, self.max_sigma_px, int(self.pyramid_levels))])

    def max_pad_px(self) -> int:
        """The widest border the sweep pads an image by (largest blur kernel's radius, or the box's), pixels.

        An image side must exceed it for one reflection to cover it (smaller images are padded in rounds)."""
        return max(max((t.size - 1) // 2 for _, t in _pyramid_plan(self.levels())), self.window // 2)


def _gauss_taps(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian of ``2 round(4 sigma) + 1`` taps (OpenCV's size for float images)."""
    r = int(round(4.0 * sigma))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def _pyramid_plan(levels: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """How each pyramid level above 0 is made: ``(source level, 1-D taps)``, the source the grey image (level 0)
    or, from ``CASCADE_MIN_STEP_PX`` up, the level below."""
    plan = []
    for i in range(1, len(levels)):
        step = math.sqrt(levels[i] ** 2 - levels[i - 1] ** 2)
        cascade = step >= CASCADE_MIN_STEP_PX and levels[i - 1] >= CASCADE_MIN_STEP_PX
        plan.append((i - 1, _gauss_taps(step)) if cascade else (0, _gauss_taps(float(levels[i]))))
    return plan


def _reflect_pad(x: Tensor, rw: int, rh: int) -> Tensor:
    """Reflect-pad ``(N, C, H, W)`` by ``rw`` columns and ``rh`` rows on each side (ONNX ``Pad`` mode ``reflect``,
    the border pixel not repeated); an axis not longer than its padding is padded in rounds, each reflecting the
    padded image."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if rw < w and rh < h:
        return F.pad(x, (rw, rw, rh, rh), mode="reflect") if rw or rh else x
    if (rw and w < 2) or (rh and h < 2):
        raise ValueError(f"images must be at least 2 pixels wide and high for the sweep, got {w}x{h}")
    while rw > 0 or rh > 0:
        pw, ph = min(rw, int(x.shape[-1]) - 1), min(rh, int(x.shape[-2]) - 1)
        x = F.pad(x, (pw, pw, ph, ph), mode="reflect")
        rw, rh = rw - pw, rh - ph
    return x


class _ThinLensTensors:
    """A :class:`model.optics.ThinLensLike` whose numbers are ``(B, 1, 1)`` tensors (from a ``(B, 3)`` lens)."""

    def __init__(self, lens: Tensor) -> None:
        self.focal_length_m = lens[:, 0, None, None]
        self.f_number = lens[:, 1, None, None]
        self.pixel_pitch_m = lens[:, 2, None, None]


def lens_tensor(lens: ThinLensLike, dtype: torch.dtype = torch.float32, device: Any = None) -> Tensor:
    """``(1, 3)`` tensor ``[focal_length_m, f_number, pixel_pitch_m]`` of a lens, as :class:`SweepLayer` takes it."""
    return torch.tensor([[float(lens.focal_length_m), float(lens.f_number), float(lens.pixel_pitch_m)]],
                        dtype=dtype, device=device)


class SweepLayer(nn.Module):
    """The relative-blur sweep as a PyTorch module (traceable into ONNX; see the module docstring).

    Args:
        config: window, band, hypotheses and blur pyramid.
        chunk: hypotheses scored at a time (smaller: less memory, better CPU cache use; ``None``: all at once,
            one set of operators in an exported graph). The result does not depend on it.
    """

    def __init__(self, config: SweepConfig = SweepConfig(), chunk: int | None = 16) -> None:
        super().__init__()
        if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
            raise ValueError(f"chunk must be a whole number of hypotheses >= 1 or None, got {chunk!r}")
        self.config = config
        self.chunk = chunk
        levels = config.levels()
        self.register_buffer("levels", torch.tensor(levels, dtype=torch.float32), persistent=False)
        self.register_buffer("luma", torch.from_numpy(np.array(_LUMA, np.float32)), persistent=False)
        self._box = np.full(config.window, 1.0 / config.window, np.float32)
        self._plan = _pyramid_plan(levels)
        self._weights: dict[tuple[Any, ...], Tensor] = {}

    def _weight(self, key: str, taps: np.ndarray, groups: int, like: Tensor) -> Tensor:
        """Depthwise convolution weights ``(groups, 1, 1, k)`` (``key`` ending in ``"h"``) or ``(groups, 1, k, 1)``,
        made from NumPy so that a trace records them as constants (ONNX initializers, as TensorRT wants)."""
        cache = (key, groups, like.dtype, like.device)
        w = self._weights.get(cache)
        if w is None:
            shape = (groups, 1, 1, taps.size) if key.endswith("h") else (groups, 1, taps.size, 1)
            w = torch.from_numpy(np.array(np.broadcast_to(taps.reshape(shape[1:]), shape)))  # a writable copy
            w = w.to(device=like.device, dtype=like.dtype)
            if not torch.jit.is_tracing():
                self._weights[cache] = w
        return w

    # ------------------------------------------------------------------ pieces

    def grey(self, images: Tensor) -> Tensor:
        """``(B, S, 3, H, W)`` RGB -> ``(B, S, H, W)`` luma."""
        return (images * self.luma.to(images.dtype)[:, None, None]).sum(dim=2)

    def pyramid(self, grey: Tensor) -> Tensor:
        """``(N, H, W)`` grey images -> ``(N, L, H, W)``: each blurred at every level's sigma (level 0: itself).

        Separable depthwise convolutions (one group per image) after reflect padding; levels from
        ``CASCADE_MIN_STEP_PX`` up are blurred from the level below (see there)."""
        n = grey.shape[0]
        out = [grey[None]]  # (1, N, H, W): images as channels, depthwise
        for i, (src, taps) in enumerate(self._plan, 1):
            r = (taps.size - 1) // 2
            y = F.conv2d(_reflect_pad(out[src], r, 0), self._weight(f"{i}h", taps, n, grey), groups=n)
            out.append(F.conv2d(_reflect_pad(y, 0, r), self._weight(f"{i}v", taps, n, grey), groups=n))
        return torch.stack(out, dim=2)[0]

    def box(self, cost: Tensor) -> Tensor:
        """``(B, N, H, W)`` -> the same, averaged over the ``window`` box (reflect borders; separable depthwise
        convolutions)."""
        w = self.config.window
        if w == 1:
            return cost
        b, n, h, wd = cost.shape
        y = F.conv2d(_reflect_pad(cost.reshape(1, b * n, h, wd), w // 2, 0), self._weight("box h", self._box, b * n, cost),
                     groups=b * n)
        y = F.conv2d(_reflect_pad(y, 0, w // 2), self._weight("box v", self._box, b * n, cost), groups=b * n)
        return y.reshape(b, n, h, wd)

    def _cost_chunk(self, flat: Tensor, sigma: Tensor, b: int, s: int, hw: tuple[int, int]) -> Tensor:
        """Box-averaged cost ``(B, n, H, W)`` of ``n`` hypotheses with frame blurs ``sigma (B, n, S)`` pixels, from
        the flattened pyramid ``flat (B * S * L, H * W)``."""
        lv = self.levels.to(sigma.dtype)
        nl = lv.numel()
        n = sigma.shape[1]
        base = (torch.arange(b, device=sigma.device, dtype=sigma.dtype) * float(s))[:, None]  # (B, 1) first frame
        cost = torch.zeros((), dtype=sigma.dtype, device=sigma.device)
        tracing = torch.jit.is_tracing()
        for i in range(s):
            for j in range(i + 1, s):
                si, sj = sigma[..., i], sigma[..., j]
                j_sharper = (sj < si).to(sigma.dtype)
                valid = (sj != si).to(sigma.dtype)
                dst = i + (j - i) * (1.0 - j_sharper)  # the blurrier frame
                src = dst + valid * (i + j - 2.0 * dst)  # the sharper one; itself when the blurs are equal
                rel = torch.sqrt((si * si - sj * sj).abs())
                k = (lv < rel[..., None]).to(sigma.dtype).sum(-1).clamp(1.0, nl - 1.0)  # searchsorted, clipped
                lo, hi = lv[(k - 1.0).long()], lv[k.long()]
                a = ((rel - lo) / (hi - lo)).clamp(0.0, 1.0)
                lo_row, dst_row = (base + src) * nl + k - 1.0, (base + dst) * nl  # rows of the flat pyramid
                lo_img = flat.index_select(0, lo_row.reshape(-1).long()).view(b, n, -1)  # sharper frame, level k-1
                hi_img = flat.index_select(0, (lo_row + 1.0).reshape(-1).long()).view(b, n, -1)  # ... level k
                target = flat.index_select(0, dst_row.reshape(-1).long()).view(b, n, -1)  # blurrier frame, unblurred
                if tracing:
                    diff = torch.lerp(lo_img, hi_img, a[..., None]) - target
                    cost = cost + diff * diff
                else:  # the same arithmetic in place (3x faster on a CPU: fewer passes over memory)
                    diff = lo_img.lerp_(hi_img, a[..., None]).sub_(target)
                    cost = diff * diff if i == 0 and j == 1 else cost.addcmul_(diff, diff)
        return self.box(cost.reshape(b, n, *hw))

    def _prepare(self, images: Tensor, focus_m: Tensor, lens: Tensor) -> tuple[Tensor, _ThinLensTensors, Tensor]:
        if images.dim() != 5 or images.shape[2] != 3 or images.shape[1] < 2:
            raise ValueError(f"images must be (B, S, 3, H, W) with S >= 2, got {tuple(images.shape)}")
        b, s = images.shape[:2]
        if focus_m.dim() != 2 or focus_m.shape[1] != s or focus_m.shape[0] not in (1, b):
            raise ValueError(f"focus_m must be (B, S) = ({b}, {s}), got {tuple(focus_m.shape)}")
        if lens.dim() != 2 or lens.shape[1] != 3 or lens.shape[0] not in (1, b):
            raise ValueError(f"lens must be (B, 3) [focal_length_m, f_number, pixel_pitch_m], got {tuple(lens.shape)}")
        h, w = images.shape[-2:]
        flat = self.pyramid(self.grey(images).reshape(b * s, h, w)).reshape(b * s * self.levels.numel(), h * w)
        return flat, _ThinLensTensors(lens.to(images.dtype)), focus_m.to(images.dtype)

    def _sigma(self, depths: Tensor, focus: Tensor, lens: _ThinLensTensors) -> Tensor:
        """``(B, n)`` hypotheses, ``(B, S)`` focus -> ``(B, n, S)`` Gaussian sigma of every frame, pixels."""
        return coc_sigma_px(depths[:, :, None], focus[:, None, :], lens)

    # ------------------------------------------------------------------ public

    def cost_volume(self, images: Tensor, focus_m: Tensor, lens: Tensor, depths_m: Tensor) -> Tensor:
        """Per-pixel relative-blur cost of each depth hypothesis.

        Args:
            images: ``(B, S, 3, H, W)`` stack in ``[0, 1]``, ``S >= 2``.
            focus_m: ``(B, S)`` (or ``(1, S)``) focus distances, metres.
            lens: ``(B, 3)`` (or ``(1, 3)``) ``[focal_length_m, f_number, pixel_pitch_m]`` (:func:`lens_tensor`),
                pixel pitch of these pixels.
            depths_m: ``(B, N)`` (or ``(1, N)``) hypotheses, metres.

        Returns:
            ``(B, N, H, W)``: the squared mismatch summed over frame pairs, box-averaged; lower is better.
        """
        flat, thin, focus = self._prepare(images, focus_m, lens)
        b, s, _, h, w = images.shape
        if depths_m.dim() != 2 or depths_m.shape[0] not in (1, b):
            raise ValueError(f"depths_m must be (B, N), got {tuple(depths_m.shape)}")
        sigma = self._sigma(depths_m.to(images.dtype), focus, thin).expand(b, -1, -1)
        step = self.chunk or sigma.shape[1]
        return torch.cat([self._cost_chunk(flat, sigma[:, h0:h0 + step], b, s, (h, w))
                          for h0 in range(0, sigma.shape[1], step)], dim=1)

    def forward(self, images: Tensor, focus_m: Tensor, lens: Tensor, prior_depth_m: Tensor,
                working_range_m: Tensor) -> Tensor:
        """Depth from the sweep, searched around ``prior_depth_m`` (the network's prediction).

        Args:
            images, focus_m, lens: the stack (see :meth:`cost_volume`).
            prior_depth_m: ``(B, 1, H, W)`` metres; each pixel searches blur codes within ``band`` of it.
            working_range_m: ``(B, 2)`` (or ``(1, 2)``) ``[near, far]`` metres the hypotheses span.

        Returns:
            ``(B, 1, H, W)`` metres, inside the working range: the cheapest of the hypotheses (even in log
            inverse depth from ``far`` to ``near``) within the band, the one nearest the prior always included;
            with ``min_gain`` > 0, the prior itself (clamped to the range) where that hypothesis is cheaper
            than the nearest one by less than ``min_gain`` of its cost.
        """
        flat, thin, focus = self._prepare(images, focus_m, lens)
        b, s, _, h, w = images.shape
        if prior_depth_m.dim() != 4 or tuple(prior_depth_m.shape) != (b, 1, h, w):
            raise ValueError(f"prior_depth_m must be (B, 1, H, W) = ({b}, 1, {h}, {w}), got {tuple(prior_depth_m.shape)}")
        if working_range_m.dim() != 2 or working_range_m.shape[1] != 2 or working_range_m.shape[0] not in (1, b):
            raise ValueError(f"working_range_m must be (B, 2) [near, far], got {tuple(working_range_m.shape)}")
        dt = images.dtype
        cfg = self.config
        n = int(cfg.hypotheses)
        rng = working_range_m.to(dt)
        near, far = rng[:, :1], rng[:, 1:]  # (B', 1)
        lo = -torch.log(far)  # log inverse depth of hypothesis 0
        step = (torch.log(far) - torch.log(near)) / float(n - 1)
        t = torch.arange(n, device=images.device, dtype=dt)[None]
        depths = torch.exp(-(lo + t * step))  # (B', N): far ... near
        sigma = self._sigma(depths, focus, thin).expand(b, -1, -1)
        # band around the prior's log inverse depth, plus the hypothesis nearest to it
        log_inv = -torch.log(torch.minimum(torch.maximum(prior_depth_m.to(dt), near[..., None, None]),
                                           far[..., None, None]))  # (B, 1, H, W)
        u = (log_inv - lo[..., None, None]) / step[..., None, None]  # fractional hypothesis index of the prior
        nearest = torch.round(u)
        half = math.log(cfg.band) / step[..., None, None]  # band half-width in hypothesis steps
        chunk = self.chunk or n
        best = best_idx = prior_cost = torch.zeros((), dtype=dt, device=images.device)
        for h0 in range(0, n, chunk):
            hs = t[:, h0:h0 + chunk][..., None, None]  # (1, n, 1, 1)
            cost = self._cost_chunk(flat, sigma[:, h0:h0 + chunk], b, s, (h, w))
            at_prior = hs == nearest
            inside = ((hs - u).abs() <= half) | at_prior
            if cfg.min_gain > 0:
                prior_cost = prior_cost + torch.where(at_prior, cost, 0.0).sum(dim=1, keepdim=True)
            m, i = torch.where(inside, cost, MASKED_COST).min(dim=1, keepdim=True)
            i = i.to(dt) + float(h0)
            if h0 == 0:
                best, best_idx = m, i
            else:  # strictly better only: ties keep the earlier hypothesis, as one argmin over all would
                better = m < best
                best, best_idx = torch.where(better, m, best), torch.where(better, i, best_idx)
        swept = torch.exp(-(lo[..., None, None] + best_idx * step[..., None, None]))
        if cfg.min_gain <= 0:
            return swept
        keep = best > prior_cost * (1.0 - cfg.min_gain)  # the cheapest is not clearly cheaper than the prior's
        return torch.where(keep, torch.exp(-log_inv), swept)


@functools.lru_cache(maxsize=8)
def _layer(config: SweepConfig) -> SweepLayer:
    return SweepLayer(config).eval()


def _stack_tensors(images: np.ndarray, focus_m: Sequence[float] | np.ndarray) -> tuple[Tensor, Tensor]:
    x = np.asarray(images, np.float32)
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[0] < 2:
        raise ValueError(f"images must be (S, H, W, 3) with S >= 2, got {x.shape}")
    fs = np.asarray(focus_m, np.float64).reshape(-1)
    if fs.shape[0] != x.shape[0]:
        raise ValueError(f"{x.shape[0]} images but {fs.shape[0]} focus distances")
    return (torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))[None],
            torch.from_numpy(fs.astype(np.float32))[None])


def relative_blur_cost(
    images: np.ndarray,
    focus_m: Sequence[float] | np.ndarray,
    lens: LensProfile,
    depths_m: np.ndarray,
    config: SweepConfig = SweepConfig(),
) -> np.ndarray:
    """Per-pixel relative-blur cost of each depth hypothesis (:meth:`SweepLayer.cost_volume` on NumPy arrays).

    Args:
        images: ``(S, H, W, 3)`` stack in ``[0, 1]``, ``S >= 2``.
        focus_m: ``(S,)`` focus distances, metres.
        lens: the lens at the stack's resolution (``pixel_pitch_m`` of these pixels).
        depths_m: ``(N,)`` depth hypotheses, metres.
        config: window and blur pyramid.

    Returns:
        float32 ``(N, H, W)``: the squared mismatch summed over frame pairs, box-averaged; lower is better.
    """
    x, f = _stack_tensors(images, focus_m)
    d = torch.from_numpy(np.asarray(depths_m, np.float32).reshape(1, -1))
    with torch.inference_mode():
        return _layer(config).cost_volume(x, f, lens_tensor(lens), d)[0].numpy()


def _check_working_range(working_range_m: tuple[float, float]) -> tuple[float, float]:
    """``(near, far)`` metres as floats; ``ValueError`` unless ``0 < near < far`` and both finite."""
    near, far = (float(v) for v in working_range_m)
    if not 0 < near < far or not math.isfinite(far):
        raise ValueError(f"working_range_m must be (near, far) with 0 < near < far, got {working_range_m}")
    return near, far


@dataclass(frozen=True, eq=False)
class CostGrid:
    """A stack's relative-blur cost sampled on depths log-spaced over a working range (:func:`cost_grid`).

    It depends only on the stack, the lens, the range and the sweep's settings, so one grid serves every depth
    map scored against that stack (:mod:`model.refine` builds one per refinement and reuses it).

    Attributes:
        log_depths: ``(N,)`` natural log of the hypotheses' depths in metres, evenly spaced, near to far.
        cost: float32 ``(N, H, W)``, the cost at each hypothesis (:func:`relative_blur_cost`); lower is better.
    """

    log_depths: np.ndarray
    cost: np.ndarray

    def at(self, depth_maps_m: np.ndarray) -> np.ndarray:
        """The cost of whole depth maps ``(K, H, W)`` metres: each pixel's cost at its own depth, linear in
        log-depth between samples (clamped to the range); float32 ``(K, H, W)``.

        Raises:
            ValueError: maps not ``(K, H, W)`` of the grid's size, not finite or not positive.
        """
        maps = _depth_maps(depth_maps_m, self.cost.shape[1:], "depth_maps_m")
        return _cost_at(self.cost, self.log_depths, maps)

    @functools.cached_property
    def _mean_and_low(self) -> tuple[np.ndarray, np.ndarray]:
        """Each pixel's mean and lowest cost over the hypotheses, float64 ``(H, W)`` each: computed on the first
        :meth:`support` call and reused (a refinement asks for support once per propagation)."""
        return self.cost.mean(0).astype(np.float64), self.cost.min(0).astype(np.float64)

    def support(self, depth_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(agreement, distinctness)`` of a ``(H, W)`` depth map in metres, float32 ``(H, W)`` each in ``[0, 1]``
        (see :func:`cost_support`)."""
        if np.ndim(depth_m) != 2:
            raise ValueError(f"depth_m must be (H, W), got shape {np.shape(depth_m)}")
        at = self.at(np.asarray(depth_m)[None])[0]
        mean, low = self._mean_and_low
        spread = mean - low
        flat = spread < FLAT_COST_SPREAD
        agreement = np.where(flat, 0.0, np.clip((mean - at) / np.where(flat, 1.0, spread), 0.0, 1.0))
        distinctness = np.where(flat, 0.0, np.clip(spread / np.maximum(mean, FLAT_COST_SPREAD), 0.0, 1.0))
        return agreement.astype(np.float32), distinctness.astype(np.float32)


def cost_grid(
    images: np.ndarray,
    focus_m: Sequence[float] | np.ndarray,
    lens: LensProfile,
    working_range_m: tuple[float, float],
    hypotheses: int = 96,
    config: SweepConfig = SweepConfig(),
) -> CostGrid:
    """The stack's relative-blur cost at ``hypotheses`` depths log-spaced over ``working_range_m``.

    Args:
        images, focus_m, lens: the stack (see :func:`relative_blur_cost`).
        working_range_m: ``(near, far)`` metres.
        hypotheses: depths the cost is sampled at (>= 2).
        config: window and blur pyramid.

    Raises:
        ValueError: a bad range or hypothesis count (or stack, see :func:`relative_blur_cost`).
    """
    log_hyp = _log_depth_grid(working_range_m, hypotheses)
    return CostGrid(log_hyp, relative_blur_cost(images, focus_m, lens, np.exp(log_hyp).astype(np.float32), config))


def relative_blur_cost_of(
    images: np.ndarray,
    focus_m: Sequence[float] | np.ndarray,
    lens: LensProfile,
    depth_maps_m: np.ndarray,
    working_range_m: tuple[float, float],
    hypotheses: int = 96,
    config: SweepConfig = SweepConfig(),
) -> np.ndarray:
    """The relative-blur cost of whole depth maps: each pixel's cost at its own depth in each map.

    Evaluated on ``hypotheses`` depths log-spaced over ``working_range_m`` (:func:`relative_blur_cost`) and
    interpolated linearly in log-depth at each pixel's depth (clamped to the range). Needs no all-in-focus
    image, so it can arbitrate between depth maps whose AIFs differ (:mod:`model.refine`'s far start).
    Scoring several maps against one stack at different times: build :func:`cost_grid` once and call its
    :meth:`CostGrid.at`.

    Args:
        images, focus_m, lens: the stack (see :func:`relative_blur_cost`).
        depth_maps_m: ``(K, H, W)`` metres.
        working_range_m: ``(near, far)`` metres.
        hypotheses: depths the cost is sampled at (>= 2).
        config: window and blur pyramid.

    Returns:
        float32 ``(K, H, W)``; lower is better.

    Raises:
        ValueError: maps not ``(K, H, W)`` of the stack's size, a bad range or hypothesis count.
    """
    maps = _depth_maps(depth_maps_m, np.shape(images)[1:3], "depth_maps_m")
    return cost_grid(images, focus_m, lens, working_range_m, hypotheses, config).at(maps)


def cost_support(
    images: np.ndarray,
    focus_m: Sequence[float] | np.ndarray,
    lens: LensProfile,
    depth_m: np.ndarray,
    working_range_m: tuple[float, float],
    hypotheses: int = 96,
    config: SweepConfig = SweepConfig(),
) -> tuple[np.ndarray, np.ndarray]:
    """How well the stack itself, without an AIF, supports each pixel's depth: the shape of its relative-blur cost.

    With the cost ``C(d)`` of every pixel sampled at ``hypotheses`` depths log-spaced over ``working_range_m``
    (:func:`relative_blur_cost`), its mean ``m`` and minimum ``C_min`` over them:

    - agreement ``(m - C(depth)) / (m - C_min)``, clipped to ``[0, 1]``: 1 where ``depth`` is the cheapest
      hypothesis, 0 where it is no better than average;
    - distinctness ``1 - C_min / m``: near 0 where the cost is flat (no texture, no defocus evidence), larger the
      deeper its minimum.

    Both are 0 where the cost varies by less than :data:`FLAT_COST_SPREAD` over the depths (a flat region).

    :mod:`model.refine` weighs the propagation's trust with them (``docs/refine.md``, "Trust from the sweep"),
    through one :func:`cost_grid` per refinement (:meth:`CostGrid.support`).

    Args:
        images, focus_m, lens: the stack (see :func:`relative_blur_cost`).
        depth_m: ``(H, W)`` metres.
        working_range_m: ``(near, far)`` metres.
        hypotheses: depths the cost is sampled at (>= 2).
        config: window and blur pyramid.

    Returns:
        ``(agreement, distinctness)``, float32 ``(H, W)`` each, in ``[0, 1]``.
    """
    if np.ndim(depth_m) != 2:
        raise ValueError(f"depth_m must be (H, W), got shape {np.shape(depth_m)}")
    _depth_maps(np.asarray(depth_m)[None], np.shape(images)[1:3], "depth_m")
    return cost_grid(images, focus_m, lens, working_range_m, hypotheses, config).support(depth_m)


def _depth_maps(depth_maps_m: np.ndarray, shape_hw: Sequence[int], name: str) -> np.ndarray:
    """``(K, H, W)`` float32 metres, checked against the image size ``shape_hw`` (errors name the argument ``name``)."""
    maps = np.asarray(depth_maps_m, np.float32)
    if maps.ndim != 3 or maps.shape[1:] != tuple(shape_hw):
        raise ValueError(f"{name} must be (K, H, W) with (H, W) = {tuple(shape_hw)}, got {maps.shape}")
    if not (np.all(np.isfinite(maps)) and np.all(maps > 0)):
        raise ValueError(f"{name} must be finite and positive")
    return maps


def _log_depth_grid(working_range_m: tuple[float, float], hypotheses: int) -> np.ndarray:
    """``(N,)`` log-depths (natural log of metres), ``N = hypotheses`` evenly over the working range (checked)."""
    near, far = _check_working_range(working_range_m)
    if int(hypotheses) < 2:
        raise ValueError(f"hypotheses must be >= 2, got {hypotheses}")
    return np.linspace(math.log(near), math.log(far), int(hypotheses))


def _cost_at(cost: np.ndarray, log_hyp: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """``(K, H, W)``: the cost at each map's depth, linear in log-depth between samples (clamped to the range)."""
    n = log_hyp.size
    pos = (np.log(np.clip(maps, math.exp(log_hyp[0]), math.exp(log_hyp[-1]))) - log_hyp[0]) / (log_hyp[1] - log_hyp[0])
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, n - 2)
    t = np.clip(pos - i0, 0.0, 1.0).astype(np.float32)
    lo = np.take_along_axis(cost, i0, 0)  # (K, H, W): each map's pixel at the hypothesis below its depth
    hi = np.take_along_axis(cost, i0 + 1, 0)
    return (lo + t * (hi - lo)).astype(np.float32)


def sweep_depth(
    images: np.ndarray,
    focus_m: Sequence[float] | np.ndarray,
    lens: LensProfile,
    prior_depth_m: np.ndarray,
    working_range_m: tuple[float, float],
    config: SweepConfig = SweepConfig(),
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Depth from the relative-blur sweep, searched around ``prior_depth_m`` (the network's prediction).

    :class:`SweepLayer` on NumPy arrays.

    Args:
        images, focus_m, lens: the stack (see :func:`relative_blur_cost`).
        prior_depth_m: ``(H, W)`` metres; each pixel searches blur codes within ``band`` of it.
        working_range_m: ``(near, far)`` metres the hypotheses span (the model's working range).
        config: see :class:`SweepConfig`.
        device: torch device to compute on (default: the CPU).

    Returns:
        float32 ``(H, W)`` metres, inside ``working_range_m``.
    """
    near, far = _check_working_range(working_range_m)
    prior = np.asarray(prior_depth_m, np.float32)
    if prior.shape != np.shape(images)[1:3]:
        raise ValueError(f"prior_depth_m must be (H, W) = {np.shape(images)[1:3]}, got {prior.shape}")
    x, f = _stack_tensors(images, focus_m)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    layer = _layer(config).to(dev)
    with torch.inference_mode():
        out = layer(x.to(dev), f.to(dev), lens_tensor(lens, device=dev), torch.from_numpy(prior)[None, None].to(dev),
                    torch.tensor([[near, far]], dtype=torch.float32, device=dev))
    return out[0, 0].float().cpu().numpy()


def graph_sweeps(runner: object) -> bool:
    """Whether ``runner`` runs an exported graph that already ends in the sweep (``python -m export onnx --sweep``:
    its metadata's ``sweep`` entry; an engine keeps its ONNX file's metadata)."""
    info = getattr(runner, "info", None)
    info = getattr(info, "onnx", info)
    return bool(getattr(info, "sweep", None))


class SweepingRunner(RunnerWrapper):
    """A :class:`model.runners.Runner` whose depth is refined by :func:`sweep_depth` around the inner
    runner's prediction; the AIF stays the inner runner's, the physics check (confidence, residual,
    re-rendered stack) is recomputed for the new depth.

    Raises ``ValueError`` for an inner runner whose exported graph already sweeps (:func:`graph_sweeps`)."""

    def __init__(self, runner: Runner, config: SweepConfig = SweepConfig(), device: str | None = None,
                 with_confidence: bool | None = None) -> None:
        if graph_sweeps(runner):
            where = getattr(runner, "path", None) or "the model"
            raise ValueError(f"{where} was exported with --sweep: its depth is already swept inside the graph; "
                             "run it without --sweep")
        super().__init__(runner, "sweep")
        self.config = config
        self.device = device
        # None: a physics check when the inner runner gives one; True/False: always/never (build the inner
        # runner without its own check then, so the stack is not re-rendered twice)
        self.with_confidence = with_confidence

    def predict(self, images: np.ndarray, focus_m: Sequence[float]):
        """Predict with the inner runner, then sweep around its depth (``(S, H, W, 3)`` stack, metres)."""
        from model.confidence import check_prediction
        from model.runners import working_range_of

        pred = self.inner.predict(images, focus_m)
        depth = sweep_depth(images, focus_m, self.lens, pred.depth_m, working_range_of(self), self.config,
                            device=self.device)
        check = pred.confidence is not None if self.with_confidence is None else self.with_confidence
        if not check:
            return replace(pred, depth_m=depth, confidence=None, residual=None, rendered=None)
        chk = check_prediction(images, focus_m, pred.aif, depth, self.lens, device=self.device)
        return replace(pred, depth_m=depth, confidence=chk.confidence, residual=chk.residual, rendered=chk.rendered)
