import pytest
import torch

from model.losses import edge_aware_smoothness, log_sharpness, recon_loss, relative_blur_loss, soft_coarse_aif, ssim_map


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


def _stack_and_sigma(depth_scale: float):
    """A textured two-depth scene rendered through the reference lens; the blur the scaled depth gives."""
    from model.lens import LensProfile
    from model.optics import defocus_sigma_map
    from model.render import rerender_stack

    lens = LensProfile(focal_length_m=0.05, f_number=8.0, pixel_pitch_m=1.2e-5)
    g = torch.Generator().manual_seed(0)
    aif = torch.nn.functional.interpolate(torch.rand(2, 3, 12, 12, generator=g), size=(48, 48), mode="bilinear")
    aif = (aif + 0.3 * torch.rand(2, 3, 48, 48, generator=g)).clamp(0, 1)
    depth = torch.full((2, 1, 48, 48), 2.0)
    depth[:, :, 12:36, 12:36] = 1.2
    depth[1] *= 2.5
    focus = torch.tensor([[1.0, 1.5, 2.5, 4.0, 6.0]] * 2)
    with torch.no_grad():
        images, _ = rerender_stack(aif, depth, focus, lens, max_radius=16)
    return images, defocus_sigma_map(depth * depth_scale, focus, lens)


def test_relative_blur_loss_smallest_at_the_true_depth():
    losses = {}
    for scale in (0.6, 0.85, 1.0, 1.2, 1.6):
        images, sigma = _stack_and_sigma(scale)
        losses[scale] = relative_blur_loss(images, sigma).item()
    assert losses[1.0] < 0.5 * min(v for k, v in losses.items() if k != 1.0)
    assert losses[0.6] > losses[0.85] > losses[1.0] < losses[1.2] < losses[1.6]


def test_relative_blur_loss_gradient_points_to_the_true_depth():
    images, sigma = _stack_and_sigma(1.3)
    _, sigma_true = _stack_and_sigma(1.0)
    sig = sigma.clone().requires_grad_(True)
    relative_blur_loss(images, sig).backward()
    assert torch.isfinite(sig.grad).all()
    step = sig.detach() - 2e4 * sig.grad  # a small step down the gradient moves the blur towards the truth
    assert (step - sigma_true).abs().mean() < (sigma - sigma_true).abs().mean()


def test_relative_blur_loss_needs_two_frames():
    with pytest.raises(ValueError, match="at least 2 frames"):
        relative_blur_loss(torch.rand(1, 1, 3, 8, 8), torch.zeros(1, 1, 8, 8))
