"""Fixtures for device tests: a tiny checkpoint and runner, fast simulated cameras."""

from __future__ import annotations

import numpy as np
import pytest

from sim_helpers import FOCUS


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A tiny untrained DAIF-Net checkpoint (width 4, depth 2) for the shipped lens."""
    import torch

    from model.checkpoint import save_checkpoint
    from model.lens import LensProfile
    from model.network import DAIFNet, NetConfig
    from device.cameras.simulated import default_lens

    torch.manual_seed(0)
    lens: LensProfile = default_lens()
    net = DAIFNet(NetConfig(width=4, depth=2, near_m=0.5, far_m=12.0))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, net, lens, FOCUS)
    return path


@pytest.fixture(scope="session")
def tiny_runner(tiny_checkpoint):
    from model.runners import TorchRunner

    return TorchRunner(tiny_checkpoint, device="cpu", with_confidence=True, max_psf_radius=8)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
