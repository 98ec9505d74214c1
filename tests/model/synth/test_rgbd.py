"""RGB-D folder reading."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from model.errors import FormatError
from model.formats import write_image
from model.synth.rgbd import crop_resize, find_rgbd_pairs, read_depth, read_rgbd


def _make(root, name, depth_kind, h=20, w=30):
    rgb = np.random.default_rng(0).random((h, w, 3)).astype(np.float32)
    write_image(root / f"{name}_rgb.png", rgb)
    d_m = np.linspace(1.0, 4.0, h * w, dtype=np.float32).reshape(h, w)
    d_m[0, 0] = 0
    if depth_kind == "png":
        cv2.imwrite(str(root / f"{name}_depth.png"), np.round(d_m * 1000).astype(np.uint16))
    elif depth_kind == "npy_m":
        d = d_m.copy()
        d[0, 1] = np.nan
        np.save(root / f"{name}_depth.npy", d)
    elif depth_kind == "npy_mm":
        np.save(root / f"{name}_depth.npy", np.round(d_m * 1000).astype(np.uint16))
    return rgb, d_m


@pytest.mark.parametrize("kind", ["png", "npy_m", "npy_mm"])
def test_read_each_depth_kind(tmp_path, kind):
    rgb, d_m = _make(tmp_path, "a", kind)
    pairs = find_rgbd_pairs(tmp_path)
    assert len(pairs) == 1 and pairs[0].name == "a"
    img, depth = read_rgbd(pairs[0])
    assert img.shape == rgb.shape and np.abs(img - rgb).max() < 1 / 255 + 1e-6
    assert depth.dtype == np.float32 and np.isnan(depth[0, 0])
    ok = np.isfinite(depth)
    assert np.allclose(depth[ok], d_m[ok], atol=1e-3)
    if kind == "npy_m":
        assert np.isnan(depth[0, 1])


def test_find_recursive_and_skip_unpaired(tmp_path, caplog):
    (tmp_path / "sub").mkdir()
    _make(tmp_path, "a", "png")
    _make(tmp_path / "sub", "b", "npy_m")
    write_image(tmp_path / "lonely_rgb.png", np.zeros((4, 4, 3), np.float32))
    pairs = find_rgbd_pairs(tmp_path)
    assert [p.name for p in pairs] == ["a", "b"]
    assert "lonely_rgb.png" in caplog.text


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        find_rgbd_pairs(tmp_path / "nope")
    with pytest.raises(ValueError, match="no RGB-D pairs"):
        find_rgbd_pairs(tmp_path)
    cv2.imwrite(str(tmp_path / "x_depth.png"), np.zeros((4, 4), np.uint8))
    with pytest.raises(FormatError, match="16-bit"):
        read_depth(tmp_path / "x_depth.png")
    np.save(tmp_path / "y_depth.npy", np.zeros((2, 2, 2), np.float32))
    with pytest.raises(FormatError, match="y_depth.npy"):
        read_depth(tmp_path / "y_depth.npy")
    write_image(tmp_path / "z_rgb.png", np.zeros((5, 6, 3), np.float32))
    np.save(tmp_path / "z_depth.npy", np.ones((5, 7), np.float32))
    pair = [p for p in find_rgbd_pairs(tmp_path) if p.name == "z"][0]
    with pytest.raises(FormatError, match="differs"):
        read_rgbd(pair)


# ----------------------------------------------------------------------------- crop_resize


def _window_marker(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """An image whose pixels code their column and a depth that codes their row (read back after a 1:1 resize)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.repeat((xx / 1000.0)[:, :, None], 3, axis=2), yy + 1.0


@pytest.mark.parametrize("align, x0", [("nearest", 4), ("floor", 3)])
def test_crop_resize_alignment_of_a_centred_window(align, x0) -> None:
    """A 19 x 10 image cropped to 12 x 10: the window's offset is (19 - 12) / 2 = 3.5 columns; "nearest"
    rounds it (to even: 4), "floor" leaves the odd column after the window (3)."""
    rgb, depth = _window_marker(10, 19)
    a, d = crop_resize(rgb, depth, (12, 10), align=align)
    assert a.shape == (10, 12, 3) and d.shape == (10, 12)
    np.testing.assert_allclose(a[0, :, 0] * 1000.0, np.arange(x0, x0 + 12), atol=1e-3)
    np.testing.assert_array_equal(d[:, 0], np.arange(1, 11))  # full height kept


def test_crop_resize_floor_keeps_the_full_side_and_puts_the_odd_pixel_after() -> None:
    rgb, depth = _window_marker(30, 40)
    # portrait target from a landscape image: width round(30 * 17 / 33) = 15, full height, offset (40 - 15) // 2 = 12
    a, d = crop_resize(rgb, depth, (15, 30), align="floor")
    np.testing.assert_allclose(a[0, :, 0] * 1000.0, np.arange(12, 27), atol=1e-3)
    np.testing.assert_array_equal(d[:, 0], np.arange(1, 31))
    # too tall: height round(40 * 3 / 4) = 30 of 41 rows, offset (41 - 30) // 2 = 5
    rgb, depth = _window_marker(41, 40)
    a, d = crop_resize(rgb, depth, (40, 30), align="floor")
    np.testing.assert_array_equal(d[:, 0], np.arange(6, 36))


def test_crop_resize_interpolation_and_range() -> None:
    rgb = np.random.default_rng(1).random((9, 12, 3), dtype=np.float32)
    depth = np.full((9, 12), 2.0, np.float32)
    depth[4, 5] = np.nan
    auto, d = crop_resize(rgb, depth, (24, 18))  # enlarging: bilinear
    area, _ = crop_resize(rgb, depth, (24, 18), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(auto, np.clip(cv2.resize(rgb, (24, 18), interpolation=cv2.INTER_LINEAR), 0, 1))
    np.testing.assert_array_equal(area, np.clip(cv2.resize(rgb, (24, 18), interpolation=cv2.INTER_AREA), 0, 1))
    assert auto.dtype == np.float32 and 0.0 <= auto.min() and auto.max() <= 1.0
    assert np.isnan(d).sum() == 4 and set(np.unique(d[np.isfinite(d)])) == {2.0}  # nearest: unknown stays unknown
    assert crop_resize(rgb, None, (6, 4))[1] is None
    with pytest.raises(ValueError, match="align"):
        crop_resize(rgb, None, (6, 4), align="ceil")  # type: ignore[call-overload]
