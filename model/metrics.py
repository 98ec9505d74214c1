"""Depth and image quality metrics (metric depth: no scale alignment of any kind).

Depth metrics follow Eigen et al.: AbsRel, SqRel, RMSE, RMSE log, and the threshold accuracies
delta_k = fraction of pixels with max(pred/gt, gt/pred) < 1.25**k.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import numpy as np

__all__ = ["DEPTH_METRICS", "depth_metrics", "psnr", "ssim", "aggregate"]

DEPTH_METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "d1", "d2", "d3")


def depth_metrics(pred_m: np.ndarray, gt_m: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """Metrics of ``pred_m`` against ``gt_m`` (both ``(H, W)`` metres) over valid pixels.

    Valid: ``gt`` finite and > 0, ``pred`` finite and > 0, and ``mask`` where given.

    Raises:
        ValueError: shapes differ or no valid pixel.
    """
    pred = np.asarray(pred_m, np.float64)
    gt = np.asarray(gt_m, np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    valid = np.isfinite(gt) & (gt > 0) & np.isfinite(pred) & (pred > 0)
    if mask is not None:
        valid &= np.asarray(mask, bool)
    if not valid.any():
        raise ValueError("no valid ground-truth pixel")
    p, g = pred[valid], gt[valid]
    ratio = np.maximum(p / g, g / p)
    return {
        "abs_rel": float(np.mean(np.abs(p - g) / g)),
        "sq_rel": float(np.mean((p - g) ** 2 / g)),
        "rmse": float(np.sqrt(np.mean((p - g) ** 2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(p) - np.log(g)) ** 2))),
        "d1": float(np.mean(ratio < 1.25)),
        "d2": float(np.mean(ratio < 1.25**2)),
        "d3": float(np.mean(ratio < 1.25**3)),
        "pixels": int(valid.sum()),
    }


def psnr(pred: np.ndarray, ref: np.ndarray) -> float:
    """PSNR in dB of images in [0, 1]."""
    mse = float(np.mean((np.asarray(pred, np.float64) - np.asarray(ref, np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def ssim(pred: np.ndarray, ref: np.ndarray) -> float:
    """Mean SSIM of two ``(H, W, 3)`` images in [0, 1] (Gaussian window 7, sigma 1.5)."""
    import torch

    from model.losses import ssim_map

    a = torch.from_numpy(np.ascontiguousarray(pred, np.float64)).permute(2, 0, 1)[None]
    b = torch.from_numpy(np.ascontiguousarray(ref, np.float64)).permute(2, 0, 1)[None]
    return float(ssim_map(a, b).mean())


def aggregate(rows: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Mean of each metric over stacks (each stack weighted equally)."""
    rows = list(rows)
    if not rows:
        return {}
    keys = [k for k in rows[0] if k != "pixels"]
    out = {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys}
    out["stacks"] = len(rows)
    return out
