import pytest
import torch

from model.losses import edge_aware_smoothness, log_sharpness, recon_loss, soft_coarse_aif, ssim_map


def test_ssim_identity_and_range():
    x = torch.rand(2, 3, 20, 20)
    torch.testing.assert_close(ssim_map(x, x), torch.ones_like(x), atol=1e-4, rtol=0)
    s = ssim_map(x, torch.rand(2, 3, 20, 20))
    assert s.max() <= 1 and s.mean() < 0.5


def test_recon_zero_for_identical_stacks():
    st = torch.rand(1, 4, 3, 16, 16)
    assert recon_loss(st, st).item() == pytest.approx(0.0, abs=1e-5)
    assert recon_loss(st, torch.rand_like(st)).item() > 0.1


def test_soft_coarse_aif_picks_sharpest_slice():
    images = torch.stack([torch.full((3, 4, 4), float(i)) for i in range(3)])[None]
    sigma = torch.tensor([3.0, 0.0, 5.0])[None, :, None, None].expand(1, 3, 4, 4)
    hard = soft_coarse_aif(images, sigma, temperature_px=0)
    assert torch.all(hard == 1.0)
    soft = soft_coarse_aif(images, sigma, temperature_px=0.5)
    assert torch.allclose(soft, torch.ones_like(soft), atol=0.01)
    sig = sigma.clone().requires_grad_(True)
    soft_coarse_aif(images, sig, 0.5).sum().backward()
    assert sig.grad is not None and sig.grad.abs().sum() > 0


def test_sharpness_prefers_sharp_images():
    sharp = (torch.rand(1, 3, 32, 32) > 0.5).float()
    blurred = torch.nn.functional.avg_pool2d(sharp, 5, 1, 2)
    assert log_sharpness(sharp) < log_sharpness(blurred) < 0
    assert log_sharpness(torch.full((1, 3, 16, 16), 0.3)).abs() < 1e-6


def test_smoothness_zero_for_constant_and_edge_aware():
    img = torch.zeros(1, 3, 16, 16)
    img[..., 8:] = 1.0
    const = torch.full((1, 1, 16, 16), 2.0)
    assert edge_aware_smoothness(const, img).item() == pytest.approx(0.0, abs=1e-7)
    step = const.clone()
    step[..., 8:] = 4.0
    # a depth edge on an image edge costs less than the same edge in a flat region
    assert edge_aware_smoothness(step, img) < edge_aware_smoothness(step, torch.zeros_like(img))
