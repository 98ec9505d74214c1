"""Shared fixtures: one CPU thread (CI has 2 cores), deterministic seeds, small synthetic stacks."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

torch.set_num_threads(max(1, min(2, int(os.environ.get("OMP_NUM_THREADS", "2")))))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def lens():
    from model.lens import LensProfile

    return LensProfile(0.05, 8.0, 1.2e-5, name="test-50mm", image_size=(320, 240))


@pytest.fixture
def small_stack(lens):
    """A 5-frame 40x48 stack with depth and AIF (random texture, not physically rendered)."""
    from model.formats import FocalStack

    rng = np.random.default_rng(0)
    images = rng.random((5, 40, 48, 3), dtype=np.float32)
    depth = rng.uniform(1.0, 5.0, (40, 48)).astype(np.float32)
    depth[0, 0] = np.nan
    return FocalStack(images=images, focus_m=np.array([1.0, 1.5, 2.5, 4.0, 6.0]), lens=lens, depth=depth,
                      aif=images[2])


@pytest.fixture
def tiny_checkpoint(tmp_path, lens):
    """An untrained, tiny DAIF-Net checkpoint for the test lens (fast to run)."""
    from model.checkpoint import save_checkpoint
    from model.network import DAIFNet, NetConfig

    net = DAIFNet(NetConfig(width=4, depth=2, near_m=0.5, far_m=12.0))
    return save_checkpoint(tmp_path / "tiny.pt", net, lens, [1.0, 1.5, 2.5, 4.0, 6.0], config={"note": "test"})
