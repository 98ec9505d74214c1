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
Chosen on the evaluation suite's tuning split (``python -m model.eval_suite score --sweep``; README
"Results"): window 15 px, band 1.35, 64 hypotheses.

Cost on two CPU cores: about 0.18 s per 5 x 240 x 320 stack, 1.56x the network alone
(``benchmarks/bench_sweep.py``; OpenCV Gaussian blurs of a blur pyramid and NumPy sums). Offered by
``model.predict --sweep``, ``device.capture --sweep``, ``model.evaluate --sweep`` and
``model.eval_suite score --sweep``.

Units: metres, pixels. Arrays: NumPy, images ``(S, H, W, 3)`` float in ``[0, 1]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import cv2
import numpy as np

from model.baseline_dff import to_grey
from model.lens import LensProfile
from model.optics import coc_sigma_px
from model.runners import Runner, RunnerWrapper

__all__ = ["SweepConfig", "relative_blur_cost", "sweep_depth", "SweepingRunner"]

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
    """

    window: int = 15
    band: float = 1.35
    hypotheses: int = 64
    pyramid_levels: int = 40
    max_sigma_px: float = 14.0

    def __post_init__(self) -> None:
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1 or self.window % 2 == 0:
            raise ValueError(f"window must be an odd whole number of pixels >= 1, got {self.window!r}")
        if not (self.band > 1.0 and math.isfinite(self.band)):
            raise ValueError(f"band must be a factor > 1, got {self.band!r}")
        if int(self.hypotheses) < 3 or int(self.pyramid_levels) < 2:
            raise ValueError(f"need hypotheses >= 3 and pyramid_levels >= 2, got {self.hypotheses}, {self.pyramid_levels}")
        if not self.max_sigma_px > 0.3:
            raise ValueError(f"max_sigma_px must exceed 0.3, got {self.max_sigma_px!r}")


class _BlurPyramid:
    """One grey frame blurred at fixed Gaussian sigmas; :meth:`at` interpolates between them."""

    def __init__(self, grey: np.ndarray, levels: np.ndarray) -> None:
        self.levels = levels
        self.stack = np.empty((len(levels),) + grey.shape, np.float32)
        for i, s in enumerate(levels):
            self.stack[i] = grey if s == 0 else cv2.GaussianBlur(grey, (0, 0), float(s), borderType=cv2.BORDER_REFLECT)

    def at(self, sigma: float) -> np.ndarray:
        lv = self.levels
        k = int(np.clip(np.searchsorted(lv, sigma), 1, len(lv) - 1))
        a = float(np.clip((sigma - lv[k - 1]) / (lv[k] - lv[k - 1]), 0.0, 1.0))
        return (1.0 - a) * self.stack[k - 1] + a * self.stack[k]


def relative_blur_cost(
    images: np.ndarray,
    focus_m: Sequence[float] | np.ndarray,
    lens: LensProfile,
    depths_m: np.ndarray,
    config: SweepConfig = SweepConfig(),
) -> np.ndarray:
    """Per-pixel relative-blur cost of each depth hypothesis.

    Args:
        images: ``(S, H, W, 3)`` stack in ``[0, 1]``, ``S >= 2``.
        focus_m: ``(S,)`` focus distances, metres.
        lens: the lens at the stack's resolution (``pixel_pitch_m`` of these pixels).
        depths_m: ``(N,)`` depth hypotheses, metres.
        config: window and blur pyramid.

    Returns:
        float32 ``(N, H, W)``: the squared mismatch summed over frame pairs, box-averaged; lower is better.
    """
    x = np.asarray(images, np.float32)
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[0] < 2:
        raise ValueError(f"images must be (S, H, W, 3) with S >= 2, got {x.shape}")
    fs = np.asarray(focus_m, np.float64).reshape(-1)
    if fs.shape[0] != x.shape[0]:
        raise ValueError(f"{x.shape[0]} images but {fs.shape[0]} focus distances")
    grey = to_grey(x)
    levels = np.concatenate([[0.0], np.geomspace(0.3, config.max_sigma_px, config.pyramid_levels)])
    pyrs = [_BlurPyramid(g, levels) for g in grey]
    s = len(fs)
    cost = np.empty((len(depths_m),) + grey.shape[1:], np.float32)
    for h, d in enumerate(np.asarray(depths_m, np.float64)):
        sig = np.array([float(coc_sigma_px(float(d), float(f), lens)) for f in fs])
        c = np.zeros(grey.shape[1:], np.float32)
        for i in range(s):
            for j in range(s):
                if i != j and sig[i] > sig[j]:
                    diff = pyrs[j].at(math.sqrt(sig[i] ** 2 - sig[j] ** 2)) - grey[i]
                    c += diff * diff
        cost[h] = cv2.boxFilter(c, -1, (config.window, config.window), borderType=cv2.BORDER_REFLECT)
    return cost


def sweep_depth(
    images: np.ndarray,
    focus_m: Sequence[float] | np.ndarray,
    lens: LensProfile,
    prior_depth_m: np.ndarray,
    working_range_m: tuple[float, float],
    config: SweepConfig = SweepConfig(),
) -> np.ndarray:
    """Depth from the relative-blur sweep, searched around ``prior_depth_m`` (the network's prediction).

    Args:
        images, focus_m, lens: the stack (see :func:`relative_blur_cost`).
        prior_depth_m: ``(H, W)`` metres; each pixel searches blur codes within ``band`` of it.
        working_range_m: ``(near, far)`` metres the hypotheses span (the model's working range).
        config: see :class:`SweepConfig`.

    Returns:
        float32 ``(H, W)`` metres, inside ``working_range_m``.
    """
    near, far = (float(v) for v in working_range_m)
    if not 0 < near < far or not math.isfinite(far):
        raise ValueError(f"working_range_m must be (near, far) with 0 < near < far, got {working_range_m}")
    prior = np.asarray(prior_depth_m, np.float64)
    if prior.shape != np.shape(images)[1:3]:
        raise ValueError(f"prior_depth_m must be (H, W) = {np.shape(images)[1:3]}, got {prior.shape}")
    inv = np.geomspace(1.0 / far, 1.0 / near, int(config.hypotheses))  # even in log blur code K/d
    depths = 1.0 / inv
    cost = relative_blur_cost(images, focus_m, lens, depths, config)
    dist = np.abs(np.log(inv)[:, None, None] - np.log(1.0 / np.clip(prior, near, far))[None])
    inside = dist <= math.log(config.band)
    yy, xx = np.indices(prior.shape)
    inside[dist.argmin(0), yy, xx] = True  # the hypothesis nearest the prior always counts
    return depths[np.where(inside, cost, np.inf).argmin(0)].astype(np.float32)


class SweepingRunner(RunnerWrapper):
    """A :class:`model.runners.Runner` whose depth is refined by :func:`sweep_depth` around the inner
    runner's prediction; the AIF stays the inner runner's, the physics check (confidence, residual,
    re-rendered stack) is recomputed for the new depth."""

    def __init__(self, runner: Runner, config: SweepConfig = SweepConfig(), device: str | None = None,
                 with_confidence: bool | None = None) -> None:
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
        depth = sweep_depth(images, focus_m, self.lens, pred.depth_m, working_range_of(self), self.config)
        check = pred.confidence is not None if self.with_confidence is None else self.with_confidence
        if not check:
            return replace(pred, depth_m=depth, confidence=None, residual=None, rendered=None)
        chk = check_prediction(images, focus_m, pred.aif, depth, self.lens, device=self.device)
        return replace(pred, depth_m=depth, confidence=chk.confidence, residual=chk.residual, rendered=chk.rendered)
