"""Texture bank: shapes, ranges, determinism, and the train / held-out split."""

from __future__ import annotations

import numpy as np
import pytest

from model.synth import textures as tx


def test_splits_are_disjoint_and_exclude_aliases():
    assert not set(tx.TRAIN_PHOTOS) & set(tx.HELD_OUT_PHOTOS)
    for extra in tx.HELD_OUT_EXTRA:
        assert extra not in tx.TRAIN_PHOTOS


def test_cat_is_chelsea_so_it_is_held_out_too():
    import skimage.data

    assert np.array_equal(skimage.data.cat(), skimage.data.chelsea())
    assert "chelsea" in tx.HELD_OUT_PHOTOS and "cat" not in tx.TRAIN_PHOTOS


def test_no_train_photo_equals_a_held_out_photo():
    held = {n: tx.load_photo(n) for n in tx.available_photos("held_out")}
    for name in tx.available_photos("train"):
        img = tx.load_photo(name)
        for hname, h in held.items():
            assert img.shape != h.shape or not np.allclose(img, h), (name, hname)


def test_photos_load_offline():
    train = tx.available_photos("train")
    held = tx.available_photos("held_out")
    assert len(train) >= 8 and len(held) >= 3
    for n in train + held:
        img = tx.load_photo(n)
        assert img.dtype == np.float32 and img.ndim == 3 and img.shape[2] == 3
        assert 0.0 <= img.min() and img.max() <= 1.0
        assert not img.flags.writeable


@pytest.mark.parametrize("split", ["train", "held_out"])
@pytest.mark.parametrize("size", [(1, 1), (7, 300), (64, 48)])
def test_random_texture_shape_range(split, size):
    rng = np.random.default_rng(1)
    for _ in range(5):
        t = tx.random_texture(rng, *size, split=split)
        assert t.shape == (*size, 3) and t.dtype == np.float32
        assert np.isfinite(t).all() and t.min() >= 0.0 and t.max() <= 1.0


def test_random_texture_is_deterministic():
    a = [tx.random_texture(np.random.default_rng(5), 32, 40) for _ in range(2)]
    assert np.array_equal(a[0], a[1])
    b = tx.random_texture(np.random.default_rng(6), 32, 40)
    assert not np.array_equal(a[0], b)


def test_train_split_never_uses_held_out_photos(monkeypatch):
    used: list[str] = []
    real = tx.photo_texture

    def spy(rng, h, w, name, *a, **k):
        used.append(name)
        return real(rng, h, w, name, *a, **k)

    monkeypatch.setattr(tx, "photo_texture", spy)
    rng = np.random.default_rng(0)
    for _ in range(300):
        tx.random_texture(rng, 16, 16, split="train")
    assert used, "the train split should use photographs some of the time"
    assert set(used) <= set(tx.TRAIN_PHOTOS)
    assert len(set(used)) > len(tx.TRAIN_PHOTOS) // 2
    used.clear()
    for _ in range(40):
        tx.random_texture(rng, 16, 16, split="held_out")
    assert set(used) <= set(tx.HELD_OUT_PHOTOS) and used


def test_procedural_textures_have_detail():
    rng = np.random.default_rng(2)
    stds = [tx.procedural_texture(rng, 64, 64).std() for _ in range(20)]
    assert np.median(stds) > 0.05


def test_bad_inputs():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="split"):
        tx.random_texture(rng, 8, 8, split="test")
    with pytest.raises(ValueError, match="positive"):
        tx.random_texture(rng, 0, 8)
    with pytest.raises(ValueError, match="unknown photo"):
        tx.load_photo("stereo_motorcycle")


# ----------------------------------------------------------------------------- photographs from a folder


def _write_photos(root, rng=None):
    """Three usable tiny images (RGB png, grey jpg, 16-bit RGBA png), one too small, one not an image,
    one copy of a held-out photograph; returns the names expected to be usable."""
    import cv2

    rng = rng or np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    bgr = np.zeros((70, 90, 3), np.uint8)
    bgr[..., 2] = 200  # red in OpenCV's BGR order
    bgr[:, ::7] = rng.integers(0, 255, (70, 13, 3))
    cv2.imwrite(str(root / "red.png"), bgr)
    (root / "sub").mkdir(exist_ok=True)
    cv2.imwrite(str(root / "sub" / "grey.JPG"), rng.integers(0, 255, (80, 66), dtype=np.uint8))
    rgba16 = rng.integers(0, 65535, (72, 72, 4), dtype=np.uint16)
    cv2.imwrite(str(root / "deep.png"), rgba16)
    cv2.imwrite(str(root / "tiny.png"), np.zeros((20, 20, 3), np.uint8))
    (root / "notes.jpg").write_text("not an image")
    held = tx.load_photo(tx.available_photos("held_out")[0])
    copy = cv2.resize((held * 255).astype(np.uint8), (held.shape[1] // 4, held.shape[0] // 4), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(root / "copy_of_held_out.png"), np.ascontiguousarray(copy[:, :, ::-1]))
    return {"red.png", "grey.JPG", "deep.png"}


def test_folder_photos_lists_usable_images_only(tmp_path):
    expected = _write_photos(tmp_path / "photos")
    got = tx.folder_photos(tmp_path / "photos")
    assert {p.rsplit("/", 1)[-1] for p in got} == expected
    red = tx.load_photo_file(next(p for p in got if p.endswith("red.png")))
    assert red.dtype == np.uint8 and red.shape == (70, 90, 3) and not red.flags.writeable
    assert red[0, 1, 0] == 200 and red[0, 1, 2] == 0  # RGB order
    grey = tx.load_photo_file(next(p for p in got if p.endswith("grey.JPG")))
    assert grey.shape == (80, 66, 3) and np.array_equal(grey[..., 0], grey[..., 2])
    deep = tx.load_photo_file(next(p for p in got if p.endswith("deep.png")))
    assert deep.dtype == np.float32 and deep.shape == (72, 72, 3) and 0 <= deep.min() and deep.max() <= 1


def test_folder_photos_errors(tmp_path):
    with pytest.raises(ValueError, match="no such folder.*get_photos"):
        tx.folder_photos(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="no usable"):
        tx.folder_photos(tmp_path / "empty")
    with pytest.raises(ValueError, match="no such folder"):
        tx.random_texture(np.random.default_rng(0), 8, 8, photo_dir=tmp_path / "missing")


def test_random_texture_draws_folder_photos_for_training_only(tmp_path, monkeypatch):
    _write_photos(tmp_path / "photos")
    folder = set(tx.folder_photos(tmp_path / "photos"))
    used: list[str] = []
    real = tx.photo_texture

    def spy(rng, h, w, name, *a, **k):
        used.append(name)
        return real(rng, h, w, name, *a, **k)

    monkeypatch.setattr(tx, "photo_texture", spy)
    rng = np.random.default_rng(0)
    for _ in range(200):
        t = tx.random_texture(rng, 16, 20, photo_dir=tmp_path / "photos")
        assert t.shape == (16, 20, 3) and t.dtype == np.float32 and 0 <= t.min() and t.max() <= 1
    assert set(used) & folder and set(used) & set(tx.TRAIN_PHOTOS)
    assert set(used) <= folder | set(tx.TRAIN_PHOTOS)
    used.clear()
    for _ in range(30):
        tx.random_texture(rng, 16, 16, split="held_out", photo_dir=tmp_path / "photos")
    assert used and set(used) <= set(tx.HELD_OUT_PHOTOS)
    # the context form reaches callers that do not pass photo_dir, and ends with the block
    used.clear()
    with tx.training_photo_dir(tmp_path / "photos"):
        for _ in range(100):
            tx.random_texture(rng, 8, 8)
    assert set(used) & folder
    used.clear()
    for _ in range(100):
        tx.random_texture(rng, 8, 8)
    assert used and not set(used) & folder


def test_without_photo_dir_the_stream_is_unchanged():
    a = [tx.random_texture(np.random.default_rng(9), 24, 24) for _ in range(3)]
    b = [tx.random_texture(np.random.default_rng(9), 24, 24, photo_dir=None) for _ in range(3)]
    with tx.training_photo_dir(None):
        c = [tx.random_texture(np.random.default_rng(9), 24, 24) for _ in range(3)]
    assert all(np.array_equal(x, y) and np.array_equal(x, z) for x, y, z in zip(a, b, c))
