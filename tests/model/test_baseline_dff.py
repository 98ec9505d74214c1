"""Classical depth-from-focus baseline."""

from __future__ import annotations

import numpy as np
import pytest

from model.baseline_dff import depth_from_focus, focus_measure
from model.lens import LensProfile
from model.synth.layered import render_stack_layered
from model.synth.textures import random_texture

LENS = LensProfile(0.05, 8.0, 1.2e-5, name="nyu", image_size=(320, 240))
FOCUS = [1.0, 1.5, 2.5, 4.0, 6.0]


def _plane_stack(d, seed=0, h=64, w=80):
    rng = np.random.default_rng(seed)
    aif = random_texture(rng, h, w, "train", photo_prob=1.0)
    return render_stack_layered(aif, np.full((h, w), d, np.float32), FOCUS, LENS)


@pytest.mark.parametrize("d", [1.5, 2.5, 4.0])
def test_plane_at_a_focus_distance(d):
    z = depth_from_focus(_plane_stack(d), FOCUS)
    assert z.shape == (64, 80) and z.dtype == np.float32
    assert np.median(z) == pytest.approx(d, rel=0.12)


def test_plane_between_focus_distances_is_interpolated():
    z = depth_from_focus(_plane_stack(2.0, seed=1), FOCUS)
    assert 1.6 < np.median(z) < 2.4
    assert z.min() >= 1.0 and z.max() <= 6.0


def test_frame_order_does_not_matter():
    st = _plane_stack(3.0, seed=2)
    perm = [3, 0, 4, 1, 2]
    a = depth_from_focus(st, FOCUS)
    b = depth_from_focus(st[perm], [FOCUS[i] for i in perm])
    assert np.allclose(a, b)


def test_focus_measure_prefers_sharp():
    st = _plane_stack(1.5, seed=3)
    fm = focus_measure(st)
    assert fm.shape == (5, 64, 80) and (fm >= 0).all()
    assert int(np.argmax(fm.mean(axis=(1, 2)))) == 1
    z, peak = depth_from_focus(st, FOCUS, return_peak=True)
    assert peak.shape == z.shape


def test_bad_inputs():
    st = _plane_stack(2.5)
    with pytest.raises(ValueError, match="at least 2"):
        depth_from_focus(st[:1], FOCUS[:1])
    with pytest.raises(ValueError, match="focus distances"):
        depth_from_focus(st, FOCUS[:4])
    with pytest.raises(ValueError, match="distinct"):
        depth_from_focus(st[:2], [1.0, 1.0])
    with pytest.raises(ValueError):
        depth_from_focus(st, [1, 2, 3, 4, -5])
    with pytest.raises(ValueError, match="window"):
        focus_measure(st, window=4)
    with pytest.raises(ValueError):
        depth_from_focus(st[..., 0], FOCUS)
