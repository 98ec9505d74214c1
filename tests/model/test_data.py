"""Training data: rendered synthetic / RGB-D streams, recorded stack folders, batching, seeding."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from model.data import (
    FolderStacks,
    LensMismatchError,
    RandomBatches,
    RGBDStacks,
    SynthConfig,
    SyntheticStacks,
    build_training_data,
    collate_stacks,
)
from model.formats import FocalStack, write_image, write_stack
from model.lens import LensProfile
from model.synth.noise import NO_NOISE

LENS = LensProfile(0.05, 8.0, 1.2e-5, name="nyu", image_size=(320, 240))
FOCUS = (1.0, 1.5, 2.5, 4.0, 6.0)


def _cfg(**kw):
    base = dict(lens=LENS, crop_hw=(32, 32), focus_m=FOCUS, seed=0)
    base.update(kw)
    return SynthConfig(**base)


# ----------------------------------------------------------------------------- config


def test_config_defaults():
    c = _cfg()
    assert c.working_range_m == pytest.approx((0.5, 12.0))
    assert c.scene_range_m == pytest.approx((0.7, 10.2))
    assert c.stack_size == (5, 5)


@pytest.mark.parametrize(
    "kw",
    [
        dict(focus_mode="nearest"),
        dict(stack_size=(2, 6)),  # fixed mode: more frames than focus distances
        dict(stack_size=(3, 2)),
        dict(scene_range_m=(0.2, 5.0)),  # outside the working range
        dict(focus_m=(1.0, -2.0)),
        dict(focus_jitter=0.7),
        dict(crop_hw=(4, 32)),
        dict(gain_range=(0.0, 1.0)),
        dict(batch_size=0),
        dict(focus_mode="bins", focus_range_m=(3.0, 2.0)),
    ],
)
def test_config_rejects(kw):
    with pytest.raises((ValueError, TypeError)):
        _cfg(**kw)


def test_focus_sampling_modes():
    rng = np.random.default_rng(0)
    fixed = _cfg(focus_jitter=0.03)
    for _ in range(20):
        f = fixed.draw_focus(rng, 5)
        assert np.all(np.abs(1 / f - 1 / np.array(FOCUS)) <= 0.03 / np.array(FOCUS) + 1e-12)
    sub = _cfg(stack_size=(2, 4))
    f = sub.draw_focus(rng, 3)
    assert len(f) == 3 and set(f) <= set(FOCUS) and np.all(np.diff(f) > 0)
    bins = _cfg(focus_mode="bins", focus_range_m=(1.0, 9.0), stack_size=(5, 5))
    edges = np.linspace(1, 9, 6)
    draws = np.stack([bins.draw_focus(rng, 5) for _ in range(200)])
    for i in range(5):
        assert np.all((draws[:, i] >= edges[i]) & (draws[:, i] <= edges[i + 1]))
    assert draws.std(axis=0).min() > 0.3  # really random within the bins
    dpt = _cfg(focus_mode="bins", bin_spacing="dioptres", stack_size=(4, 4))
    assert np.all(np.diff(dpt.draw_focus(rng, 4)) > 0)


# ----------------------------------------------------------------------------- synthetic


def test_item_shapes_and_ranges():
    ds = SyntheticStacks(_cfg())
    item = next(iter(ds))
    assert set(item) == {"images", "focus_m", "depth", "aif"}
    assert item["images"].shape == (5, 3, 32, 32) and item["images"].dtype == torch.float32
    assert item["focus_m"].shape == (5,) and torch.allclose(item["focus_m"], torch.tensor(FOCUS))
    assert item["depth"].shape == (1, 32, 32) and item["aif"].shape == (3, 32, 32)
    assert 0 <= float(item["images"].min()) and float(item["images"].max()) <= 1
    assert 0.7 - 1e-5 <= float(item["depth"].min()) and float(item["depth"].max()) <= 10.2 + 1e-4


def test_deterministic_and_seed_dependent():
    a = SyntheticStacks(_cfg(seed=1)).make(3)
    b = SyntheticStacks(_cfg(seed=1)).make(3)
    c = SyntheticStacks(_cfg(seed=2)).make(3)
    d = SyntheticStacks(_cfg(seed=1)).make(4)
    assert torch.equal(a["images"], b["images"]) and torch.equal(a["depth"], b["depth"])
    assert not torch.equal(a["depth"], c["depth"]) and not torch.equal(a["depth"], d["depth"])
    ds = SyntheticStacks(_cfg(seed=1))
    ds.set_epoch(1)
    assert not torch.equal(ds.make(3)["depth"], a["depth"])


def test_batches_share_one_stack_size():
    ds = SyntheticStacks(_cfg(batch_size=3, stack_size=(2, 5), epoch_size=6, crop_hw=(16, 24)))
    sizes = set()
    for batch in ds:
        s = batch["images"].shape[1]
        sizes.add(s)
        assert batch["images"].shape == (3, s, 3, 16, 24)
        assert batch["focus_m"].shape == (3, s)
        assert batch["depth"].shape == (3, 1, 16, 24) and batch["aif"].shape == (3, 3, 16, 24)
    assert len(sizes) > 1


def test_workers_reproduce_the_single_process_stream():
    cfg = _cfg(batch_size=2, epoch_size=4, crop_hw=(16, 16))
    one = list(DataLoader(SyntheticStacks(cfg), batch_size=None, num_workers=0))
    two = list(DataLoader(SyntheticStacks(cfg), batch_size=None, num_workers=2))
    assert len(one) == len(two) == 4
    for x, y in zip(one, two):
        assert torch.equal(x["images"], y["images"])
    assert not torch.equal(one[0]["images"], one[1]["images"])


class _Plane(SyntheticStacks):
    def _scene(self, rng, h, w):
        return np.random.default_rng(0).random((h, w, 3)).astype(np.float32), np.full((h, w), 2.5, np.float32)


def test_rendering_is_physical():
    ds = _Plane(_cfg(noise=NO_NOISE, augment=False, crop_hw=(40, 40)))
    item = ds.make(0)
    err = [(item["images"][i] - item["aif"]).abs()[:, 8:-8, 8:-8].mean().item() for i in range(5)]
    assert int(np.argmin(err)) == 2  # focused at the plane's depth
    assert err[2] < 0.02 and err[0] > 3 * err[2]


def test_noise_is_added():
    clean = _Plane(_cfg(noise=NO_NOISE, augment=False)).make(0)["images"]
    noisy = _Plane(_cfg(augment=False)).make(0)["images"]
    diff = (noisy - clean)[2]
    assert 0.002 < float(diff.std()) < 0.05


def test_augmentation_keeps_aif_consistent():
    ds = _Plane(_cfg(noise=NO_NOISE, augment=True, crop_hw=(40, 40)))
    item = ds.make(5)
    assert (item["images"][2] - item["aif"]).abs()[:, 8:-8, 8:-8].mean() < 0.02


def test_collate():
    ds = SyntheticStacks(_cfg(crop_hw=(16, 16)))
    b = collate_stacks([ds.make(0), ds.make(1)])
    assert b["images"].shape == (2, 5, 3, 16, 16) and b["focus_m"].shape == (2, 5)
    other = SyntheticStacks(_cfg(crop_hw=(16, 16), stack_size=(3, 3))).make(0)
    with pytest.raises(ValueError, match="stack size"):
        collate_stacks([ds.make(0), other])
    with pytest.raises(ValueError):
        collate_stacks([])


# ----------------------------------------------------------------------------- recorded folders


def _write_stacks(root, lens=LENS, n=3, size=(48, 40), focus=(0.9, 1.4, 2.6, 4.2, 6.5, 9.0), with_depth=True):
    rng = np.random.default_rng(0)
    for k in range(n):
        w, h = size
        imgs = rng.random((len(focus), h, w, 3)).astype(np.float32)
        depth = rng.uniform(1, 5, (h, w)).astype(np.float32) if with_depth and k == 0 else None
        write_stack(root / f"s{k}", FocalStack(imgs, np.array(focus), lens, depth=depth))


def test_folder_stacks(tmp_path):
    _write_stacks(tmp_path)
    ds = FolderStacks(tmp_path, LENS, crop_hw=(32, 32))
    assert len(ds) == 3 and ds.stack_sizes == [6, 6, 6]
    item = ds[0]
    assert item["images"].shape == (6, 3, 32, 32) and item["focus_m"].shape == (6,)
    assert torch.isfinite(item["depth"]).all() and torch.isnan(item["aif"]).all()
    assert torch.isnan(ds[1]["depth"]).all()
    assert torch.equal(ds[2]["images"], ds[2]["images"])  # deterministic per index
    sel = FolderStacks(tmp_path, LENS, crop_hw=(32, 32), frames=FOCUS, resize_to_lens=False)
    assert sel.stack_sizes == [5] * 3
    assert np.allclose(sel[0]["focus_m"].numpy(), [0.9, 1.4, 2.6, 4.2, 6.5])


def test_folder_stacks_refuses_other_lens_and_small_frames(tmp_path):
    other = LensProfile(0.016, 1.4, 1.2e-5, name="other")
    _write_stacks(tmp_path / "a", lens=other, n=1)
    with pytest.raises(LensMismatchError, match="focal_length_m"):
        FolderStacks(tmp_path / "a", LENS, crop_hw=(32, 32), resize_to_lens=False)
    _write_stacks(tmp_path / "b", n=1, size=(24, 20))
    ds = FolderStacks(tmp_path / "b", LENS, crop_hw=(32, 32), resize_to_lens=False)
    with pytest.raises(ValueError, match="smaller"):
        ds[0]
    with pytest.raises(ValueError, match="frames"):
        FolderStacks(tmp_path / "b", LENS, frames=[1, 2, 3, 4, 5, 6, 7], resize_to_lens=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no focal-stack"):
        FolderStacks(tmp_path / "empty", LENS)
    with pytest.raises(FileNotFoundError):
        FolderStacks(tmp_path / "missing", LENS)


def test_folder_stacks_resizes_finer_pixels(tmp_path):
    # full-resolution frames (half the pitch) for a model trained on 2x binned images: resized by 1/2
    half = LensProfile(0.05, 8.0, 0.6e-5, name="nyu-full")
    _write_stacks(tmp_path, lens=half, n=1, size=(64, 48))
    ds = FolderStacks(tmp_path, LENS, crop_hw=(24, 24))
    assert ds.resize == [(32, 24)]
    assert ds[0]["images"].shape == (6, 3, 24, 24)
    with pytest.raises(ValueError, match="smaller"):
        FolderStacks(tmp_path, LENS, crop_hw=(32, 32))[0]
    with pytest.raises(LensMismatchError, match="pixel_pitch_m"):
        FolderStacks(tmp_path, LENS, crop_hw=(16, 16), resize_to_lens=False)
    with pytest.raises(LensMismatchError, match="coarser"):
        FolderStacks(tmp_path, LensProfile(0.05, 8.0, 0.3e-5), crop_hw=(16, 16))


def test_random_batches(tmp_path):
    _write_stacks(tmp_path, n=2)
    _write_stacks(tmp_path / "short", n=1, focus=(1.0, 2.0, 3.0))
    ds = FolderStacks(tmp_path, LENS, crop_hw=(16, 16), resize_to_lens=False)
    rb = RandomBatches(ds, batch_size=3, stack_size=(2, 6), seed=0, epoch_size=8)
    sizes = set()
    for b in rb:
        s = b["images"].shape[1]
        sizes.add(s)
        assert b["images"].shape == (3, s, 3, 16, 16) and b["focus_m"].shape == (3, s)
        assert torch.all(b["focus_m"][:, 1:] > b["focus_m"][:, :-1])
    assert len(sizes) > 1 and max(sizes) <= 6
    with pytest.raises(ValueError, match="no stack"):
        RandomBatches(ds, 2, stack_size=(7, 8))


# ----------------------------------------------------------------------------- rgbd and the trainer's entry point


def _rgbd_folder(root):
    rng = np.random.default_rng(0)
    for k in range(2):
        write_image(root / f"r{k}_rgb.png", rng.random((60, 80, 3)).astype(np.float32))
        d = rng.uniform(1000, 4000, (60, 80)).astype(np.uint16)
        d[:5] = 0
        cv2.imwrite(str(root / f"r{k}_depth.png"), d)


def test_rgbd_stacks(tmp_path):
    _rgbd_folder(tmp_path)
    ds = RGBDStacks(tmp_path, _cfg(crop_hw=(32, 32), batch_size=2, augment=False))
    b = ds.make(0)
    assert b["images"].shape == (2, 5, 3, 32, 32)
    depth = b["depth"]
    known = torch.isfinite(depth)
    assert known.any()
    assert float(depth[known].min()) >= 0.5 - 1e-6 and float(depth[known].max()) <= 12.0
    assert torch.isfinite(b["images"]).all()


def test_build_training_data(tmp_path):
    common = dict(lens=LENS, focus_m=FOCUS, crop=16, batch_size=2, stack_size=(5, 5), noise=0.01)
    syn = build_training_data("synthetic", None, scene_near_m=1.0, **common)
    assert isinstance(syn, SyntheticStacks) and syn.config.scene_range_m[0] == 1.0
    assert syn.make(0)["images"].shape == (2, 5, 3, 16, 16)
    _write_stacks(tmp_path / "rec", n=2)
    fol = build_training_data("folder", tmp_path / "rec", **common)
    assert next(iter(fol))["images"].shape[:2] == (2, 5)
    _rgbd_folder(tmp_path)
    assert isinstance(build_training_data("rgbd", tmp_path, **common), RGBDStacks)
    with pytest.raises(ValueError):
        build_training_data("video", None, **common)
    with pytest.raises(ValueError):
        build_training_data("folder", None, **common)


def test_render_batch_matches_render_stack():
    from model.data import render_batch
    from model.optics import defocus_sigma_map
    from model.render import psf_window_radius, render_stack

    rng = np.random.default_rng(0)
    aif = rng.random((2, 24, 20, 3)).astype(np.float32)
    depth = rng.uniform(0.8, 6.0, (2, 24, 20)).astype(np.float32)
    focus = np.array([[1.0, 2.0, 5.0], [1.2, 2.5, 6.0]])
    got = render_batch(aif, depth, focus, LENS)
    a = torch.from_numpy(aif).permute(0, 3, 1, 2)
    sigma = defocus_sigma_map(torch.from_numpy(depth)[:, None], torch.from_numpy(focus).float(), LENS)
    ref = render_stack(a, sigma, radius=psf_window_radius(float(sigma.max()))).clamp(0, 1)
    assert got.shape == (2, 3, 3, 24, 20)
    assert torch.allclose(got, ref, atol=1e-3)  # per-frame radii truncate only negligible tails


# ----------------------------------------------------------------------------- PSF mix, breathing, photos


def _batch_stats(batch):
    im = batch["images"].double().numpy()
    return float(im.sum()), float((im**2).sum()), [float(x) for x in im[1, 2, :, 5, 9]], float(batch["depth"].double().sum())


@pytest.mark.parametrize(
    "kw, expected",
    [  # recorded with the code before psf_mix / breathing / photo_dir existed (commit 65a63f6), seed 7, batch 1
        (dict(), (15681.766443198081, 8663.455544546841, [0.7446606755256653, 0.5941181182861328, 0.6739209294319153], 3368.6078209280968)),
        (dict(disc_prob=1.0), (15623.182139530778, 8588.482612054338, [0.7324984669685364, 0.5638522505760193, 0.6664872169494629], 3368.6078209280968)),
        (dict(disc_prob=1.0, vignetting=0.3), (15164.780644780054, 8087.330277018435, [0.7575962543487549, 0.5604522228240967, 0.6581016778945923], 3368.6078209280968)),
    ],
)
def test_default_batches_are_unchanged(kw, expected):
    batch = SyntheticStacks(_cfg(seed=7, batch_size=2, **kw)).make(1)
    total, squares, pixel, depth = _batch_stats(batch)
    assert total == pytest.approx(expected[0], rel=1e-7) and squares == pytest.approx(expected[1], rel=1e-7)
    assert pixel == pytest.approx(expected[2], abs=1e-6) and depth == pytest.approx(expected[3], rel=1e-7)


def test_psf_mix_matches_disc_prob_and_default():
    for i in range(3):
        base = SyntheticStacks(_cfg(seed=4, batch_size=2)).make(i)
        same = SyntheticStacks(_cfg(seed=4, batch_size=2, psf_mix=(1.0, 0.0, 0.0))).make(i)
        assert torch.equal(base["images"], same["images"])
        disc = SyntheticStacks(_cfg(seed=4, batch_size=2, disc_prob=0.4)).make(i)
        mix = SyntheticStacks(_cfg(seed=4, batch_size=2, psf_mix=(0.6, 0.4, 0.0))).make(i)
        assert torch.equal(disc["images"], mix["images"])


def test_psf_mix_draws_each_renderer(monkeypatch):
    import model.data as data_mod

    seen: list = []
    real_g, real_l = data_mod.render_batch, data_mod.render_batch_layered
    monkeypatch.setattr(data_mod, "render_batch", lambda *a, **k: (seen.append("gaussian"), real_g(*a, **k))[1])

    def layered(*a, **k):
        beta = a[6] if len(a) > 6 else k.get("beta", float("inf"))
        seen.append(beta)
        assert (a[7] if len(a) > 7 else k.get("min_sigma_px")) == 0.29
        return real_l(*a, **k)

    monkeypatch.setattr(data_mod, "render_batch_layered", layered)
    ds = SyntheticStacks(_cfg(seed=0, batch_size=1, crop_hw=(16, 16), psf_mix=(0.2, 0.3, 0.5), psf_beta_range=(3.0, 6.0),
                              psf_min_sigma_px=0.29))
    for i in range(60):
        b = ds.make(i)
        assert b["images"].shape == (1, 5, 3, 16, 16) and 0 <= float(b["images"].min()) and float(b["images"].max()) <= 1
    kinds = ["gaussian" if s == "gaussian" else "disc" if s == float("inf") else "generalised" for s in seen]
    assert {k: kinds.count(k) for k in set(kinds)}.keys() == {"gaussian", "disc", "generalised"}
    assert kinds.count("generalised") > kinds.count("gaussian")
    betas = [s for s in seen if s not in ("gaussian", float("inf"))]
    assert all(3.0 <= b <= 6.0 for b in betas) and np.std(betas) > 0.3


@pytest.mark.parametrize(
    "kw",
    [
        dict(psf_mix=(0.5, 0.5)),
        dict(psf_mix=(0.5, 0.6, 0.0)),
        dict(psf_mix=(-0.1, 0.6, 0.5)),
        dict(psf_mix=(0.5, 0.5, 0.0), disc_prob=0.5),
        dict(psf_beta_range=(0.5, 4.0)),
        dict(psf_beta_range=(6.0, 4.0)),
        dict(psf_min_sigma_px=-0.1),
        dict(breathing=1.5),
        dict(breathing=-0.1),
    ],
)
def test_config_rejects_bad_psf_and_breathing(kw):
    with pytest.raises((ValueError, TypeError)):
        _cfg(**kw)


def test_breathing_magnifies_each_frame_by_one_power_of_the_thin_lens_breathing():
    from model.data import _breathe
    from model.optics import breathing_magnification

    lens = LensProfile(0.05, 2.0, 1.2e-5, name="breathy", image_size=(96, 64))
    h, w = 40, 48
    xx = np.broadcast_to(np.arange(w, dtype=np.float32), (h, w))
    ramp = torch.from_numpy(np.stack([xx, xx, xx]))[None, None].repeat(3, 4, 1, 1, 1)  # (B, S, 3, h, w)
    focus = np.array([[0.3, 0.5, 1.0, 4.0]] * 3)
    out = _breathe(np.random.default_rng(3), ramp.clone(), focus, lens, 0.8).numpy()
    exps = []
    for b in range(3):
        assert np.array_equal(out[b, 0], ramp[b, 0].numpy())  # the nearest focus is the reference
        for s in range(1, 4):
            row = out[b, s, 0, h // 2, 8:-8]  # away from the reflected border
            slope = float(np.polyfit(np.arange(8, w - 8), row, 1)[0])  # output x samples c + (x - c) / m
            big = breathing_magnification(focus[b, s], lens, focus[b, 0])
            exps.append((b, np.log(1 / slope) / np.log(big)))
    for b in range(3):
        e = [x for bb, x in exps if bb == b]
        assert np.ptp(e) < 0.02 and abs(e[0]) <= 0.8 + 0.02  # one fraction per stack, within the strength
    assert np.ptp([x for _, x in exps]) > 0.05  # drawn per stack


def test_breathing_in_batches():
    plain = SyntheticStacks(_cfg(seed=5, batch_size=2, noise=NO_NOISE)).make(0)
    breathe = SyntheticStacks(_cfg(seed=5, batch_size=2, noise=NO_NOISE, breathing=0.2)).make(0)
    assert torch.equal(plain["aif"], breathe["aif"]) and torch.equal(plain["depth"], breathe["depth"])
    assert torch.equal(plain["images"][:, 0], breathe["images"][:, 0])  # the nearest focus is not moved
    diff = (plain["images"] - breathe["images"]).abs()
    assert float(diff[:, 1:].max()) > 1e-3 and float(diff[:, 1:].mean()) < 0.05  # moved, by a fraction of a pixel
    noisy = SyntheticStacks(_cfg(seed=5, batch_size=2, breathing=0.2)).make(0)["images"]
    assert 0.002 < float((noisy - breathe["images"])[:, 0].std()) < 0.05  # noise still added, after the warp
    assert 0 <= float(noisy.min()) and float(noisy.max()) <= 1


def test_photo_dir_reaches_the_scenes(tmp_path, monkeypatch):
    from model.synth import textures as tx

    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        cv2.imwrite(str(folder / f"p{k}.png"), rng.integers(0, 255, (70, 80, 3), dtype=np.uint8))
    used: list[str] = []
    real = tx.photo_texture
    monkeypatch.setattr(tx, "photo_texture", lambda rng, h, w, name, *a, **k: (used.append(name), real(rng, h, w, name, *a, **k))[1])
    ds = SyntheticStacks(_cfg(seed=1, batch_size=2, crop_hw=(16, 16), photo_dir=str(folder)))
    for i in range(12):
        ds.make(i)
    assert {u for u in used if u.endswith(".png")} and all(u in tx.TRAIN_PHOTOS or u.endswith(".png") for u in used)
    with pytest.raises(ValueError, match="no such folder"):
        _cfg(photo_dir=str(tmp_path / "missing"))
    ds = build_training_data("synthetic", None, lens=LENS, focus_m=FOCUS, crop=16, batch_size=1, psf_mix=[0.5, 0.5, 0.0],
                             psf_min_sigma_px=0.29, breathing=0.1, photo_dir=folder)
    c = ds.config
    assert c.psf_mix == (0.5, 0.5, 0.0) and c.psf_min_sigma_px == 0.29 and c.breathing == 0.1 and c.photo_dir == str(folder)
    assert ds.make(0)["images"].shape == (1, 5, 3, 16, 16)
