"""Tests of model.render: the gather-form spatially varying Gaussian PSF and its hand-written backward."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

import model.render as render
from model.render import (
    MAX_RADIUS_PX,
    MIN_SIGMA_PX,
    GaussPSF,
    gauss_psf,
    gauss_psf_reference_numpy,
    gauss_psf_unfold,
    psf_window_radius,
    render_stack,
)


def _inputs(n=2, c=3, h=9, w=11, lo=0.0, hi=3.0, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(n, c, h, w, generator=g, dtype=dtype)
    sigma = lo + (hi - lo) * torch.rand(n, 1, h, w, generator=g, dtype=dtype)
    return image, sigma


# ------------------------------------------------------------------------------------------ forward


@pytest.mark.parametrize("radius", [0, 1, 3, 7, 14])  # 14: window larger than the image
def test_matches_numpy_reference_float64(radius):
    image, sigma = _inputs(h=9, w=11)
    sigma[0, 0, 4, 5] = 0.0  # exact zero blur is allowed
    got = gauss_psf(image, sigma, radius).numpy()
    want = gauss_psf_reference_numpy(image, sigma, radius)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_numpy_reference_is_a_normalised_gaussian_for_constant_blur():
    # Independent check of the reference: with one blur everywhere, interior pixels are a correlation
    # with the normalised, truncated Gaussian kernel.
    rng = np.random.default_rng(1)
    image = rng.random((1, 1, 15, 16))
    s, r = 1.3, 4
    sigma = np.full((1, 1, 15, 16), s)
    d = np.arange(-r, r + 1)
    ker = np.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2 * (s * s + MIN_SIGMA_PX**2)))
    want = ndimage.correlate(image[0, 0], ker / ker.sum(), mode="constant")
    got = gauss_psf_reference_numpy(image, sigma, r)[0, 0]
    np.testing.assert_allclose(got[r:-r, r:-r], want[r:-r, r:-r], atol=1e-13)
    np.testing.assert_allclose(gauss_psf(torch.from_numpy(image), torch.from_numpy(sigma), r)[0, 0].numpy()[r:-r, r:-r],
                               want[r:-r, r:-r], atol=1e-13)


def test_each_neighbour_uses_its_own_blur():
    # Gather form: a bright pixel with a wide blur spreads into sharp neighbours; a sharp bright pixel
    # next to blurred neighbours stays put (its neighbours' outputs barely see it).
    image = torch.zeros(1, 1, 1, 9, dtype=torch.float64)
    image[..., 4] = 1.0
    wide = torch.zeros(1, 1, 1, 9, dtype=torch.float64)
    wide[..., 4] = 2.0
    out = gauss_psf(image, wide, 4)[0, 0, 0]
    s2 = 4.0 + MIN_SIGMA_PX**2
    w_q = math.exp(-1 / (2 * s2)) / s2  # weight of the bright pixel seen from its neighbour
    w_self = 1 / MIN_SIGMA_PX**2  # the neighbour's own weight
    w_far = math.exp(-1 / (2 * MIN_SIGMA_PX**2)) / MIN_SIGMA_PX**2  # its other sharp neighbour
    assert out[3].item() == pytest.approx(w_q / (w_self + w_q + w_far), rel=1e-9)
    sharp_centre = gauss_psf(image, torch.full_like(wide, 2.0) - wide, 4)[0, 0, 0]
    assert sharp_centre[3].item() < 0.01 < out[3].item()


@pytest.mark.parametrize("dtype,atol", [(torch.float32, 2e-6), (torch.float64, 1e-12)])
def test_matches_unfold(dtype, atol):
    image, sigma = _inputs(n=3, c=2, h=17, w=13, hi=4.0, dtype=dtype, seed=3)
    for radius in (2, 6):
        torch.testing.assert_close(gauss_psf(image, sigma, radius), gauss_psf_unfold(image, sigma, radius), rtol=0, atol=atol)


def test_constant_image_stays_constant():
    image = torch.full((2, 3, 20, 23), 0.7)
    sigma = 5.0 * torch.rand(2, 1, 20, 23)
    out = gauss_psf(image, sigma)
    torch.testing.assert_close(out, image, rtol=0, atol=2e-6)


def test_zero_blur_is_nearly_identity():
    image, _ = _inputs(h=12, w=12)
    sigma = torch.zeros(2, 1, 12, 12, dtype=torch.float64)
    out = gauss_psf(image, sigma)
    # each of the 4 nearest neighbours weighs exp(-1 / (2 * 0.25^2)) = exp(-8) relative to the pixel
    assert (out - image).abs().max().item() < 4 * math.exp(-8)
    assert (out - image).abs().max().item() > 0  # the floor is smooth, not a hard identity
    torch.testing.assert_close(gauss_psf(image, 2.0 * torch.rand_like(sigma), radius=0), image, rtol=0, atol=1e-15)


def test_float16_and_autocast_compute_in_float32():
    image, sigma = _inputs(dtype=torch.float32, hi=2.0)
    want = gauss_psf(image, sigma, 3)
    half = gauss_psf(image.half(), sigma.half(), 3)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), want, rtol=0, atol=3e-3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = gauss_psf(image, sigma, 3)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------ radius


def test_window_radius_grows_with_sigma():
    assert psf_window_radius(0.0) == 1
    assert psf_window_radius(8.0) >= 24
    assert psf_window_radius(8.0) == math.ceil(3 * math.sqrt(64 + MIN_SIGMA_PX**2))
    radii = [psf_window_radius(s) for s in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)]
    assert radii == sorted(radii) and radii[-1] > radii[0]
    assert psf_window_radius(torch.tensor(2.0)) == psf_window_radius(2.0)
    assert psf_window_radius(2.0, truncate=2.0) < psf_window_radius(2.0)


def test_auto_radius_follows_the_largest_blur():
    image, sigma = _inputs(n=1, c=1, h=40, w=40, lo=0.5, hi=1.0, dtype=torch.float32)
    sigma[0, 0, 20, 20] = 6.0  # one wide pixel decides the window
    r = psf_window_radius(6.0)
    assert r >= 18
    torch.testing.assert_close(gauss_psf(image, sigma), gauss_psf(image, sigma, r), rtol=0, atol=0)
    assert (gauss_psf(image, sigma) - gauss_psf(image, sigma, 7)).abs().max() > 1e-4  # a fixed 7x7 is not it


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_window_radius_rejects_bad_sigma(bad):
    with pytest.raises(ValueError, match="max_sigma"):
        psf_window_radius(bad)


def test_window_radius_rejects_bad_truncate():
    with pytest.raises(ValueError, match="truncate"):
        psf_window_radius(1.0, truncate=0.0)


# ------------------------------------------------------------------------------------------ errors


def test_input_errors():
    image, sigma = _inputs(dtype=torch.float32)
    with pytest.raises(TypeError, match="image must be a torch.Tensor"):
        gauss_psf(image.numpy(), sigma)
    with pytest.raises(ValueError, match=r"image must be \(N, C, H, W\)"):
        gauss_psf(image[0], sigma)
    with pytest.raises(ValueError, match="sigma must be"):
        gauss_psf(image, sigma[:, :, :-1])
    with pytest.raises(ValueError, match="sigma must be"):
        gauss_psf(image, sigma.expand(2, 2, 9, 11))
    with pytest.raises(ValueError, match="sigma must be"):
        render_stack(image, sigma[:1])
    with pytest.raises(ValueError, match="dtype int64 is not supported"):
        gauss_psf(image.long(), sigma)
    with pytest.raises(ValueError, match="on cpu but sigma is on meta"):
        gauss_psf(image, sigma.to("meta"))
    with pytest.raises(ValueError, match="empty input"):
        gauss_psf(image[:, :, :0], sigma[:, :, :0])


@pytest.mark.parametrize("value,match", [(float("nan"), "non-finite"), (float("inf"), "non-finite"), (-0.1, "negative")])
def test_bad_sigma_values(value, match):
    image, sigma = _inputs(dtype=torch.float32)
    sigma[1, 0, 3, 3] = value
    with pytest.raises(ValueError, match=match):
        gauss_psf(image, sigma)
    with pytest.raises(ValueError, match=match):
        render_stack(image, sigma.expand(2, 3, 9, 11))


def test_radius_errors():
    image, sigma = _inputs(dtype=torch.float32)
    with pytest.raises(ValueError, match=f"outside \\[0, {MAX_RADIUS_PX}\\]"):
        gauss_psf(image, sigma, MAX_RADIUS_PX + 1)
    with pytest.raises(ValueError, match="outside"):
        gauss_psf(image, sigma, -1)
    with pytest.raises(TypeError, match="radius must be an int"):
        gauss_psf(image, sigma, 2.5)
    with pytest.raises(TypeError, match="radius must be an int"):
        GaussPSF(radius=True)
    with pytest.raises(ValueError, match="needs a radius-.* window"):
        gauss_psf(image, torch.full_like(sigma, 30.0))  # auto radius 91 > 64
    gauss_psf(image, torch.full_like(sigma, 30.0), radius=MAX_RADIUS_PX)  # explicit truncation is allowed


# ------------------------------------------------------------------------------------------ gradients


def test_gradcheck_image_and_sigma():
    image, sigma = _inputs(n=2, c=2, h=6, w=7, lo=0.5, hi=2.5, seed=5)
    image.requires_grad_(True)
    sigma.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, s: gauss_psf(x, s, 2), (image, sigma), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("which", ["image", "sigma"])
def test_gradcheck_one_input(which):
    image, sigma = _inputs(n=1, c=3, h=5, w=6, lo=0.5, hi=2.5, seed=6)
    (image if which == "image" else sigma).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, s: gauss_psf(x, s, 3), (image, sigma), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_gradcheck_render_stack():
    g = torch.Generator().manual_seed(7)
    aif = torch.rand(2, 2, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    sigma = (0.5 + 2.0 * torch.rand(2, 3, 5, 6, generator=g, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, s: render_stack(x, s, 2), (aif, sigma), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_gradients_match_unfold_autograd_float32():
    image, sigma = _inputs(n=2, c=3, h=24, w=19, lo=0.0, hi=4.0, dtype=torch.float32, seed=8)
    weight = torch.randn(2, 3, 24, 19)
    grads = []
    for fn in (gauss_psf, gauss_psf_unfold):
        x, s = image.clone().requires_grad_(True), sigma.clone().requires_grad_(True)
        (fn(x, s, 5) * weight).sum().backward()
        grads.append((x.grad, s.grad))
    (gx, gs), (ux, us) = grads
    torch.testing.assert_close(gx, ux, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gs, us, rtol=1e-4, atol=1e-5)


def test_autograd_saves_no_window_copies():
    image, sigma = _inputs(n=1, c=3, h=32, w=32, dtype=torch.float32)
    radius = 6

    def saved_bytes(fn) -> int:
        total = []

        def pack(t):
            total.append(t.numel() * t.element_size())
            return t

        x, s = image.clone().requires_grad_(True), sigma.clone().requires_grad_(True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn(x, s, radius)
        return sum(total)

    plane = 32 * 32 * 4
    ours = saved_bytes(gauss_psf)
    assert ours <= (3 + 1 + 3 + 1) * plane  # image, sigma, output, normaliser
    assert saved_bytes(gauss_psf_unfold) > (2 * radius + 1) ** 2 * 3 * plane  # the baseline keeps K^2 copies


# ------------------------------------------------------------------------------------------ stacks, module, chunks


def test_render_stack_equals_per_slice_gauss_psf():
    g = torch.Generator().manual_seed(9)
    aif = torch.rand(2, 3, 16, 18, generator=g, requires_grad=True)
    sigma = (3.0 * torch.rand(2, 4, 16, 18, generator=g)).requires_grad_(True)
    weight = torch.randn(2, 4, 3, 16, 18, generator=g)
    stack = render_stack(aif, sigma, 5)
    assert stack.shape == (2, 4, 3, 16, 18)
    (stack * weight).sum().backward()
    aif2, sigma2 = aif.detach().clone().requires_grad_(True), sigma.detach().clone().requires_grad_(True)
    slices = [gauss_psf(aif2, sigma2[:, k : k + 1], 5) for k in range(4)]
    torch.testing.assert_close(stack, torch.stack(slices, dim=1), rtol=0, atol=0)
    (torch.stack(slices, dim=1) * weight).sum().backward()
    torch.testing.assert_close(aif.grad, aif2.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sigma.grad, sigma2.grad, rtol=1e-5, atol=1e-6)


def test_chunking_does_not_change_results(monkeypatch):
    g = torch.Generator().manual_seed(10)
    aif = torch.rand(2, 3, 12, 10, generator=g, dtype=torch.float64, requires_grad=True)
    sigma = (3.0 * torch.rand(2, 3, 12, 10, generator=g, dtype=torch.float64)).requires_grad_(True)

    def run():
        aif.grad = sigma.grad = None
        out = render_stack(aif, sigma, 4)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        return out.detach(), aif.grad.clone(), sigma.grad.clone()

    whole = run()
    monkeypatch.setattr(render, "_CHUNK_BYTES_CPU", 1)  # one slice per chunk
    for a, b in zip(whole, run()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)


def test_module_matches_function():
    image, sigma = _inputs(dtype=torch.float32)
    m = GaussPSF(radius=3)
    assert "radius=3" in repr(m)
    torch.testing.assert_close(m(image, sigma), gauss_psf(image, sigma, 3), rtol=0, atol=0)
    torch.testing.assert_close(GaussPSF()(image, sigma), gauss_psf(image, sigma), rtol=0, atol=0)


# ------------------------------------------------------------------------------------------ CUDA


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
def test_cuda_matches_cpu():
    image, sigma = _inputs(n=3, c=3, h=40, w=37, hi=4.0, dtype=torch.float32, seed=11)
    weight = torch.randn(3, 3, 40, 37)
    results = {}
    for dev in ("cpu", "cuda"):
        x = image.detach().to(dev).clone().requires_grad_(True)  # a fresh leaf on each device
        s = sigma.detach().to(dev).clone().requires_grad_(True)
        out = gauss_psf(x, s)
        (out * weight.to(dev)).sum().backward()
        results[dev] = (out.detach().cpu(), x.grad.cpu(), s.grad.cpu())
    for a, b in zip(results["cpu"], results["cuda"]):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    half = gauss_psf(image.cuda().half(), sigma.cuda().half())
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float().cpu(), results["cpu"][0], rtol=0, atol=3e-3)
    stack = render_stack(image.cuda(), sigma.cuda().expand(3, 2, 40, 37).contiguous(), 6)
    torch.testing.assert_close(stack[:, 1].cpu(), gauss_psf(image, sigma, 6), rtol=1e-5, atol=1e-5)
