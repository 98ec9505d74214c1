"""Validation during training (:meth:`model.trainer.Trainer.validate`) and TensorBoard image logging.

Depth metrics on a fixed set, a diagnostic (or model selection with ``val_suite``), never a training signal:
the ``val_suite`` folder's stacks with depth (:func:`suite_stacks`, :func:`suite_metrics`), else fixed
synthetic batches (:func:`synthetic_val_batches`) or the stacks held back when fine-tuning
(:func:`model.train_holdout.holdout_batches`), scored by :func:`batch_metrics`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from model.metrics import aggregate, depth_metrics

if TYPE_CHECKING:
    from model.network import DAIFNet
    from model.train_config import TrainConfig

__all__ = ["suite_stacks", "suite_metrics", "synthetic_val_batches", "batch_metrics", "log_images"]

#: the seed of the fixed validation batches (the same in every run and on resume)
VAL_SEED = 987654321

SuiteStack = tuple[torch.Tensor, torch.Tensor, float, np.ndarray]


def suite_stacks(folder: Path) -> list[SuiteStack]:
    """The stacks with depth under ``folder`` as ``(images (1,S,3,H,W), focus_m (1,S), K, depth_m (H,W))``,
    ``K`` the lens's blur per dioptre in pixels. ``ValueError`` when there are none."""
    from model.formats import find_stacks, read_stack
    from model.optics import blur_per_dioptre_px

    out = []
    for path in find_stacks(folder):
        st = read_stack(path)
        if st.depth is None:
            continue
        images = torch.from_numpy(np.ascontiguousarray(st.images, np.float32)).permute(0, 3, 1, 2)[None]
        focus = torch.from_numpy(np.asarray(st.focus_m, np.float32))[None]
        out.append((images, focus, float(blur_per_dioptre_px(st.lens)), np.asarray(st.depth)))
    if not out:
        raise ValueError(f"val_suite {folder}: no focal stacks with depth found")
    return out


@torch.no_grad()
def suite_metrics(net: DAIFNet, stacks: list[SuiteStack], device: torch.device) -> dict[str, float]:
    """Aggregated depth metrics of ``net`` (put in eval mode; the caller restores training mode) on
    :func:`suite_stacks`; empty when no stack could be scored."""
    net.eval()
    rows = []
    for images, focus, k, depth in stacks:
        kk = torch.tensor([k], dtype=torch.float32, device=device) if net.lens_aware else None
        out = net(images.to(device), focus.to(device), kk)
        try:
            rows.append(depth_metrics(out.depth_m[0, 0].float().cpu().numpy(), depth))
        except ValueError:
            pass
    return aggregate(rows) if rows else {}


def synthetic_val_batches(cfg: TrainConfig, make_dataset: Callable[[int], Any]) -> list[dict[str, torch.Tensor]]:
    """The fixed synthetic validation batches (``cfg.val_stacks`` stacks, rounded up to whole batches) for
    ``data: synthetic`` / ``gpu_synthetic``; ``make_dataset(seed)`` builds the run's training data."""
    n_batches = max(1, math.ceil(cfg.val_stacks / cfg.batch_size))
    if cfg.data == "gpu_synthetic":
        gen = make_dataset(VAL_SEED)
        return [gen.make(i) for i in range(n_batches)]
    it = iter(make_dataset(VAL_SEED))
    return [next(it) for _ in range(n_batches)]


@torch.no_grad()
def batch_metrics(net: DAIFNet, batches: list[dict[str, torch.Tensor]],
                  process_batch: Callable[..., tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]) -> dict[str, float]:
    """``net`` (put in eval mode; the caller restores training mode) on ``batches``: aggregated depth metrics
    where a batch carries ``depth``, plus ``recon``, the mean re-rendering loss. ``process_batch(batch, model=net)``
    is :meth:`model.trainer.Trainer.process_batch`."""
    net.eval()
    rows, recon = [], []
    for batch in batches:
        outputs, losses = process_batch(batch, model=net)
        recon.append(losses["recon"].item())
        if "depth" in batch:
            gt = batch["depth"].cpu().numpy()
            pred = outputs["depth_m"].cpu().numpy()
            for i in range(pred.shape[0]):
                try:
                    rows.append(depth_metrics(pred[i, 0], gt[i, 0]))
                except ValueError:
                    pass
    res = aggregate(rows) if rows else {}
    res["recon"] = float(np.mean(recon))
    return res


def log_images(writer: Any, outputs: dict[str, torch.Tensor], step: int, net: DAIFNet) -> None:
    """The first stack of a training step to TensorBoard ``writer``: input, re-rendered stack, AIF, colourised
    depth (over ``net``'s working range, or the map's own range when lens-aware) and the residual x10."""
    from model.visualize import colorize_depth

    img = outputs["images"][0]
    writer.add_images("input", img.clamp(0, 1), step)
    writer.add_images("rendered", outputs["rendered"][0].detach().clamp(0, 1), step)
    writer.add_image("aif", outputs["aif"][0].detach().clamp(0, 1), step)
    depth = outputs["depth_m"][0, 0].detach().cpu().numpy()
    near, far = net.working_range_m()
    rgb = colorize_depth(depth, float(np.nanmin(depth)) if net.lens_aware else near, float(np.nanmax(depth)) if net.lens_aware else far)
    writer.add_image("depth", rgb, step, dataformats="HWC")
    resid = (outputs["rendered"][0] - img).abs().mean(dim=(0, 1), keepdim=True)[0].detach()
    writer.add_image("residual", (resid * 10).clamp(0, 1), step)
