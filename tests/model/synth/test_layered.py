"""The evaluation renderer: disc kernel, in-focus planes, blur growth, occlusion, noise."""

from __future__ import annotations

import numpy as np
import pytest

from model.lens import LensProfile
from model.optics import coc_diameter_m
from model.synth.layered import disc_blur, disc_kernel, fill_unknown_depth, render_stack_layered
from model.synth.noise import SensorNoise

LENS = LensProfile(0.05, 8.0, 1.2e-5, name="nyu", image_size=(320, 240))


def _texture(h=60, w=80, seed=0):
    rng = np.random.default_rng(seed)
    import cv2

    base = rng.random((h // 2, w // 2, 3)).astype(np.float32)
    return np.clip(cv2.resize(base, (w, h), interpolation=cv2.INTER_LINEAR), 0, 1)


def _sharpness(img):
    g = img.mean(-1)
    return float((np.diff(g, axis=0) ** 2).mean() + (np.diff(g, axis=1) ** 2).mean())


def test_disc_kernel_properties():
    assert np.array_equal(disc_kernel(0.0), np.ones((1, 1), np.float32))
    assert disc_kernel(0.05).shape == (1, 1)
    prev = 0
    for d in (1.0, 2.5, 5.0, 10.3):
        k = disc_kernel(d)
        assert k.sum() == pytest.approx(1.0, abs=1e-5)
        assert np.allclose(k, k[::-1]) and np.allclose(k, k.T)
        # support: about the disc area
        r = d / 2
        assert (k > 0).sum() >= np.pi * r * r * 0.8
        assert k.shape[0] >= prev
        prev = k.shape[0]
        # variance per axis of a uniform disc of radius r is r^2 / 4 (+ 1/12 from the pixel grid)
        n = k.shape[0] // 2
        y = np.arange(-n, n + 1)
        var = float((k * y[:, None] ** 2).sum())
        if d > 2:
            assert var == pytest.approx(r * r / 4 + 1 / 12, rel=0.1)
    with pytest.raises(ValueError):
        disc_kernel(-1.0)


def test_in_focus_plane_is_returned_sharp():
    aif = _texture()
    depth = np.full(aif.shape[:2], 2.5, np.float32)
    st = render_stack_layered(aif, depth, [1.0, 2.5, 6.0], LENS)
    assert st.shape == (3, 60, 80, 3) and st.dtype == np.float32
    assert np.abs(st[1] - aif).max() < 1e-6
    assert np.abs(st[0] - aif).max() > 0.05


def test_plane_matches_disc_convolution_away_from_borders():
    aif = _texture(seed=1)
    depth = np.full(aif.shape[:2], 1.8, np.float32)
    focus = [1.0, 1.5, 4.0, 6.0]
    st = render_stack_layered(aif, depth, focus, LENS)
    for i, f in enumerate(focus):
        diam = coc_diameter_m(1.8, f, LENS) / LENS.pixel_pitch_m
        ref = disc_blur(aif, diam)
        m = int(np.ceil(diam / 2)) + 1
        assert np.abs(st[i] - ref)[m:-m, m:-m].max() < 1e-5, f


def test_blur_grows_with_dioptre_distance():
    aif = _texture(seed=2)
    depth = np.full(aif.shape[:2], 2.0, np.float32)
    focus = np.array([0.8, 1.0, 1.3, 1.6, 2.0, 2.6, 3.5, 5.0, 8.0])
    st = render_stack_layered(aif, depth, focus, LENS)
    sharp = np.array([_sharpness(s[8:-8, 8:-8]) for s in st])
    k = int(np.argmax(sharp))
    assert focus[k] == 2.0
    assert np.all(np.diff(sharp[: k + 1]) > 0) and np.all(np.diff(sharp[k:]) < 0)
    # the blur diameter follows |1/d - 1/d_f|: equal dioptre offsets give similar sharpness
    a = render_stack_layered(aif, depth, [1 / (0.5 + 0.3)], LENS)[0]
    b = render_stack_layered(aif, depth, [1 / (0.5 - 0.3)], LENS)[0]
    sa, sb = _sharpness(a[8:-8, 8:-8]), _sharpness(b[8:-8, 8:-8])
    assert sa == pytest.approx(sb, rel=0.25)


def test_occlusion():
    """A near square in focus hides the blurred background; a blurred near square spills over it."""
    aif = _texture(80, 80, seed=3)
    aif[25:55, 25:55] = [0.9, 0.1, 0.1]
    depth = np.full((80, 80), 5.0, np.float32)
    depth[25:55, 25:55] = 1.0
    st = render_stack_layered(aif, depth, [1.0, 5.0], LENS)
    # focused on the square: its inside is exact (the background blur does not leak in front)
    assert np.abs(st[0][25:55, 25:55] - aif[25:55, 25:55]).max() < 1e-5
    # focused on the background: far from the square it is sharp, next to it the red blur spills out
    assert np.abs(st[1][:10] - aif[:10]).max() < 1e-5
    ring = st[1][20:24, 30:50]
    assert (ring[..., 0] - aif[20:24, 30:50, 0]).mean() > 0.05


def test_noise_and_quantisation():
    aif = np.full((50, 50, 3), 0.5, np.float32)
    depth = np.full((50, 50), 2.0, np.float32)
    noise = SensorNoise.from_level(0.02, bits=8)
    st = render_stack_layered(aif, depth, [2.0], LENS, noise=noise, rng=np.random.default_rng(0))
    assert st.std() == pytest.approx(0.02, rel=0.15)
    assert np.allclose(st * 255, np.round(st * 255), atol=1e-3)
    again = render_stack_layered(aif, depth, [2.0], LENS, noise=noise, rng=np.random.default_rng(0))
    assert np.array_equal(st, again)
    with pytest.raises(ValueError, match="rng"):
        render_stack_layered(aif, depth, [2.0], LENS, noise=noise)


def test_bad_inputs_and_fill():
    aif = _texture(10, 12)
    depth = np.full((10, 12), 2.0, np.float32)
    with pytest.raises(ValueError, match="depth"):
        render_stack_layered(aif, depth[:5], [2.0], LENS)
    bad = depth.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="fill_unknown_depth"):
        render_stack_layered(aif, bad, [2.0], LENS)
    with pytest.raises(ValueError):
        render_stack_layered(aif, depth, [-1.0], LENS)
    with pytest.raises(ValueError):
        render_stack_layered(aif[..., :2], depth, [2.0], LENS)
    filled = fill_unknown_depth(bad)
    assert np.isfinite(filled).all() and filled[0, 0] == 2.0
    with pytest.raises(ValueError):
        fill_unknown_depth(np.full((3, 3), np.nan))


# ----------------------------------------------------------------------------- generalised-Gaussian PSF


def _old_disc_kernel(diameter_px, supersample=8):
    """The disc kernel as it was before the generalised PSF (the oracle of bit-equality)."""
    import math

    r = int(round(diameter_px * 100)) / 200.0
    half = max(0, int(math.ceil(r + 0.5)) - 1)
    if r * supersample < 0.5:
        return np.ones((1, 1), np.float32)
    n = 2 * half + 1
    sub = (np.arange(n * supersample, dtype=np.float64) + 0.5) / supersample - 0.5 - half
    inside = (sub[:, None] ** 2 + sub[None, :] ** 2) <= r * r
    k = inside.reshape(n, supersample, n, supersample).mean(axis=(1, 3))
    total = k.sum()
    if total <= 0:
        k = np.zeros((n, n))
        k[half, half] = 1.0
        total = 1.0
    return (k / total).astype(np.float32)


def _axis_moments(k):
    n = k.shape[0] // 2
    y = np.arange(-n, n + 1, dtype=np.float64)
    var = float((k * y[:, None] ** 2).sum())
    fourth = float((k * y[:, None] ** 4).sum())
    return var, fourth / var**2


def test_psf_kernel_default_is_the_disc_bit_for_bit():
    from model.synth.layered import psf_kernel

    for d in (0.0, 0.05, 0.13, 0.9, 1.0, 2.37, 5.0, 10.3, 31.7):
        old = _old_disc_kernel(d)
        assert np.array_equal(disc_kernel(d), old), d
        assert np.array_equal(psf_kernel(d), old), d
        assert np.array_equal(psf_kernel(d, beta=float("inf"), min_sigma_px=0.0), old), d
        assert np.array_equal(psf_kernel(d, beta=150.0), old), d  # >= 100 is the disc


@pytest.mark.parametrize("beta", [2.0, 4.0, 8.0])
def test_generalised_kernel_keeps_the_disc_variance(beta):
    from model.synth.layered import psf_kernel

    for d in (4.0, 8.0, 20.0):  # (smaller kernels: the pixel grid moves the variance by a few per cent)
        k = psf_kernel(d, beta)
        assert k.dtype == np.float32 and not k.flags.writeable
        assert k.sum() == pytest.approx(1.0, abs=1e-5)
        assert np.allclose(k, k[::-1]) and np.allclose(k, k.T)
        var, _ = _axis_moments(k)
        assert var == pytest.approx((d / 4) ** 2 + 1 / 12, rel=0.03), (d, beta)  # + 1/12: pixel averaging


def test_generalised_kernel_shape_goes_from_gaussian_to_disc():
    import math

    from model.synth.layered import psf_kernel

    d = 16.0
    # beta = 2: the pixel-averaged Gaussian of sigma d / 4
    k = psf_kernel(d, 2.0)
    n = k.shape[0] // 2
    x = np.arange(-n, n + 1)
    sub = (np.arange(8) + 0.5) / 8 - 0.5
    g1 = np.exp(-((x[:, None] + sub[None, :]) ** 2) / (2 * (d / 4) ** 2)).mean(1)
    gauss = np.outer(g1, g1)
    assert np.abs(k - gauss / gauss.sum()).max() < 2e-4
    # kurtosis falls from the Gaussian's 3 towards the disc's as beta grows
    kurt = [_axis_moments(psf_kernel(d, b))[1] for b in (2.0, 4.0, 8.0, 30.0)] + [_axis_moments(disc_kernel(d))[1]]
    assert kurt[0] == pytest.approx(3.0, rel=0.03)
    assert all(a > b for a, b in zip(kurt, kurt[1:-1])) and kurt[-2] == pytest.approx(kurt[-1], rel=0.03)
    # a large beta is nearly the disc
    assert np.abs(psf_kernel(d, 60.0) - disc_kernel(d)).sum() < 0.1
    assert psf_kernel(d, 4.0).shape[0] > disc_kernel(d).shape[0]  # soft edges reach a little further
    assert not np.array_equal(psf_kernel(d, 4.0), psf_kernel(d, 4.5))
    assert math.isfinite(float(psf_kernel(0.5, 2.0).sum()))


def test_pixel_footprint_minimum_blur():
    from model.synth.layered import PIXEL_BOX_SIGMA_PX, psf_kernel

    assert PIXEL_BOX_SIGMA_PX == pytest.approx(0.2887, abs=1e-4)
    for beta in (2.0, 6.0, float("inf")):
        # in focus: no longer a delta, the light spreads to the neighbours
        k0 = psf_kernel(0.0, beta, PIXEL_BOX_SIGMA_PX)
        assert k0.shape == (3, 3) and k0[1, 1] < 0.9 and k0[0, 1] > 0.02
        var0, _ = _axis_moments(k0)
        assert 0.05 < var0 < 1 / 12 + 0.01
        # the minimum adds in quadrature: the same kernel as the wider diameter
        for d in (0.5, 2.0, 9.0):
            wider = 4 * np.hypot(d / 4, PIXEL_BOX_SIGMA_PX)
            assert np.array_equal(psf_kernel(d, beta, PIXEL_BOX_SIGMA_PX), psf_kernel(wider, beta))
        # a large blur hardly changes
        big, big_min = psf_kernel(24.0, beta), psf_kernel(24.0, beta, PIXEL_BOX_SIGMA_PX)
        assert _axis_moments(big_min)[0] == pytest.approx(_axis_moments(big)[0], rel=0.01)


def test_psf_kernel_rejects():
    from model.synth.layered import psf_kernel

    for kw in (dict(diameter_px=-1.0), dict(diameter_px=float("nan")), dict(diameter_px=2.0, beta=0.5),
               dict(diameter_px=2.0, beta=float("nan")), dict(diameter_px=2.0, min_sigma_px=-0.1)):
        with pytest.raises(ValueError):
            psf_kernel(**kw)
    aif, depth = _texture(10, 12), np.full((10, 12), 2.0, np.float32)
    with pytest.raises(ValueError, match="beta"):
        render_stack_layered(aif, depth, [1.0], LENS, beta=0.0)


def test_layered_render_with_a_generalised_psf():
    from model.synth.layered import PIXEL_BOX_SIGMA_PX, psf_kernel

    aif = _texture(seed=4)
    depth = np.full(aif.shape[:2], 1.8, np.float32)
    focus = [1.0, 4.0]
    assert np.array_equal(render_stack_layered(aif, depth, focus, LENS),
                          render_stack_layered(aif, depth, focus, LENS, beta=float("inf"), min_sigma_px=0.0))
    import cv2

    for beta, ms in ((2.0, 0.0), (5.0, PIXEL_BOX_SIGMA_PX)):
        st = render_stack_layered(aif, depth, focus, LENS, beta=beta, min_sigma_px=ms)
        for i, f in enumerate(focus):
            k = psf_kernel(coc_diameter_m(1.8, f, LENS) / LENS.pixel_pitch_m, beta, ms)
            ref = cv2.filter2D(aif, -1, k, borderType=cv2.BORDER_CONSTANT)
            m = k.shape[0] // 2 + 1
            assert np.abs(st[i] - ref)[m:-m, m:-m].max() < 1e-5, (beta, f)
        assert not np.allclose(st, render_stack_layered(aif, depth, focus, LENS), atol=1e-3)
