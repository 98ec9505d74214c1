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
