"""RGB-D folder reading."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from model.errors import FormatError
from model.formats import write_image
from model.synth.rgbd import find_rgbd_pairs, read_depth, read_rgbd


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
