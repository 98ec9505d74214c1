"""Procedural scenes: shapes, ranges, determinism, planarity and speed."""

from __future__ import annotations

import numpy as np
import pytest

from model.synth.scenes import default_scene_range_m, inverse_depth_plane, random_scene


def test_shapes_and_ranges():
    rng = np.random.default_rng(0)
    for _ in range(20):
        aif, depth = random_scene(rng, 48, 64, 0.7, 10.0)
        assert aif.shape == (48, 64, 3) and aif.dtype == np.float32
        assert depth.shape == (48, 64) and depth.dtype == np.float32
        assert aif.min() >= 0 and aif.max() <= 1
        assert np.isfinite(depth).all() and depth.min() >= 0.7 and depth.max() <= 10.0


def test_deterministic_with_seed():
    a = random_scene(np.random.default_rng(3), 40, 40, 1.0, 5.0)
    b = random_scene(np.random.default_rng(3), 40, 40, 1.0, 5.0)
    c = random_scene(np.random.default_rng(4), 40, 40, 1.0, 5.0)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_background_alone_is_a_plane_in_inverse_depth():
    rng = np.random.default_rng(7)
    slanted = 0
    for _ in range(10):
        _, depth = random_scene(rng, 30, 50, 0.5, 8.0, n_objects=(0, 0))
        inv = 1.0 / depth.astype(np.float64)
        yy, xx = np.mgrid[0:30, 0:50]
        A = np.stack([np.ones(inv.size), xx.ravel(), yy.ravel()], 1)
        coef, *_ = np.linalg.lstsq(A, inv.ravel(), rcond=None)
        assert np.abs(A @ coef - inv.ravel()).max() < 1e-4
        slanted += np.ptp(inv) > 1e-3
    assert 0 < slanted < 10  # some fronto-parallel, some slanted


def test_objects_make_several_depths_and_cover_the_range():
    rng = np.random.default_rng(1)
    inv_all = []
    n_levels = []
    for _ in range(60):
        _, depth = random_scene(rng, 48, 48, 1.0, 10.0, n_objects=(3, 5), slant_prob=0.0)
        n_levels.append(len(np.unique(depth)))
        inv_all.append(1.0 / depth.ravel())
    assert np.median(n_levels) >= 3
    inv = np.concatenate(inv_all)
    # depths drawn uniform in inverse depth: both halves of [0.1, 1] dpt well populated
    assert (inv > 0.55).mean() > 0.15 and (inv < 0.55).mean() > 0.3


def test_inverse_depth_plane():
    p = inverse_depth_plane(3, 5, 0.5, grad_x=0.1)
    assert np.allclose(p[0], [0.3, 0.4, 0.5, 0.6, 0.7])


def test_default_scene_range():
    assert default_scene_range_m((1.0, 6.0), (0.5, 12.0)) == pytest.approx((0.7, 10.2))
    assert default_scene_range_m((1.0, 6.0), (0.9, 8.0)) == pytest.approx((0.9, 8.0))


@pytest.mark.parametrize("near,far", [(2.0, 1.0), (0.0, 1.0), (1.0, float("inf")), (-1.0, 2.0)])
def test_bad_range(near, far):
    with pytest.raises(ValueError):
        random_scene(np.random.default_rng(0), 8, 8, near, far)


def test_bad_size_and_objects():
    with pytest.raises(ValueError):
        random_scene(np.random.default_rng(0), 0, 8, 1.0, 2.0)
    with pytest.raises(ValueError):
        random_scene(np.random.default_rng(0), 8, 8, 1.0, 2.0, n_objects=(3, 1))
