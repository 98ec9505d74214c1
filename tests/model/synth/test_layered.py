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
