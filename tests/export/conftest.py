"""Fixtures for the export tests: one tiny checkpoint and its exports, made once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `import fakes`

from export_consts import FOCUS, RADIUS, SIZE  # noqa: E402


@pytest.fixture(scope="session")
def export_lens():
    from model.lens import LensProfile

    return LensProfile(0.05, 8.0, 1.2e-5, name="test-50mm", image_size=(320, 240))


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory, export_lens) -> Path:
    """An untrained width-4, depth-2 DAIF-Net checkpoint (random weights, deterministic)."""
    import torch

    from model.checkpoint import save_checkpoint
    from model.network import DAIFNet, NetConfig

    torch.manual_seed(0)
    net = DAIFNet(NetConfig(width=4, depth=2, near_m=0.5, far_m=12.0))
    # BatchNorm running statistics away from (0, 1), so the exported normalisation is really exercised.
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", net, export_lens, FOCUS)


@pytest.fixture(scope="session")
def loaded(tiny_ckpt):
    from model.checkpoint import load_checkpoint

    return load_checkpoint(tiny_ckpt)


@pytest.fixture(scope="session")
def physics_export(tmp_path_factory, tiny_ckpt):
    """Physics graph, both flavours, fixed 5 x 40 x 48, checked on the rendered Motorcycle scene."""
    from export.onnx_export import OnnxExportConfig, export_onnx

    out = tmp_path_factory.mktemp("physics") / "daifnet.onnx"
    return export_onnx(OnnxExportConfig(out=out, checkpoint=tiny_ckpt, image_size=SIZE, psf_radius=RADIUS, threads=1))


@pytest.fixture(scope="session")
def dynamic_export(tmp_path_factory, tiny_ckpt):
    """Physics graph, onnxruntime flavour only, dynamic image size and stack size (checked at three shapes)."""
    from export.onnx_export import OnnxExportConfig, export_onnx

    out = tmp_path_factory.mktemp("dynamic") / "dyn.onnx"
    return export_onnx(OnnxExportConfig(out=out, checkpoint=tiny_ckpt, image_size=SIZE, dynamic_size=True,
                                        dynamic_stack=True, target="onnxruntime", psf_radius=RADIUS, threads=1))


@pytest.fixture(scope="session")
def net_export(tmp_path_factory, tiny_ckpt):
    """The network alone, fixed size."""
    from export.onnx_export import OnnxExportConfig, export_onnx

    out = tmp_path_factory.mktemp("net") / "net.onnx"
    return export_onnx(OnnxExportConfig(out=out, checkpoint=tiny_ckpt, image_size=SIZE, graph="net", threads=1))


@pytest.fixture
def stack():
    """A random 5 x 40 x 48 stack and its focus distances."""
    rng = np.random.default_rng(1)
    return rng.random((5, SIZE[1], SIZE[0], 3), dtype=np.float32), np.array(FOCUS)
