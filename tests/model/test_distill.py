"""Teacher groups (model.distill), the distillation loss and training on teacher groups."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from model.distill import GROUP_PATTERN, TeacherGroups, make_teacher_groups, parse_groups, teacher_group_files
from model.losses import distill_loss
from model.train_config import TrainConfig


def _gen_cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(out_dir=str(tmp_path / "run"), lens_aware=True, width=4, depth=2, crop=32, batch_size=2,
                num_workers=0, stack_size_min=2, stack_size_max=3, max_psf_radius=8, k_range=[2.0, 6.0])
    base.update(kw)
    return TrainConfig(**base)


def _write_group(folder, index, images, focus, teacher, lens=(0.016, 1.4, 19.6e-6), k=2.3):
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / GROUP_PATTERN.format(index), images=images, focus_m=focus, lens=np.array(lens),
             k=np.float32(k), teacher_depth=teacher)


def test_teacher_groups_are_made_once_labelled_within_range_and_resumable(tmp_path):
    out = tmp_path / "groups"
    cfg = _gen_cfg(tmp_path)
    written = make_teacher_groups(cfg, out, range(2), size=32, progress=False)
    assert [p.name for p in written] == ["group_000000.npz", "group_000001.npz"]
    assert teacher_group_files(out) == written
    with np.load(written[0]) as z:
        b, s = z["focus_m"].shape
        assert z["images"].shape == (b, s, 3, 32, 32) and z["images"].dtype == np.uint8
        assert b == 2 and 2 <= s <= 3
        t = z["teacher_depth"]
        assert t.shape == (b, 32, 32) and t.dtype == np.float32 and np.isfinite(t).all() and (t > 0).all()
        f, n, p = z["lens"]
        assert float(z["k"]) == pytest.approx(f * f / (4 * n * p), rel=1e-4)
        assert 2.0 * 0.999 <= float(z["k"]) <= 6.0 * 1.001
    spec = json.loads((out / "manifest.json").read_text())
    assert spec["size"] == 32 and spec["teacher"] == "shipped" and len(spec["teacher_sha256"]) == 64
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {"network", "teacher"} <= set(rows[0])
    # a rerun makes only what is missing
    before = written[0].stat().st_mtime_ns
    assert make_teacher_groups(cfg, out, range(3), size=32, progress=False) == [out / "group_000002.npz"]
    assert written[0].stat().st_mtime_ns == before
    # other settings are refused, not mixed in
    with pytest.raises(ValueError, match="other settings.*size"):
        make_teacher_groups(cfg, out, range(4), size=48, progress=False)
    assert len(teacher_group_files(out)) == 3
    # the teacher is known by its digest, not its file name; training-only settings do not split a folder
    from model.checkpoint import default_checkpoint_path

    copy = tmp_path / "teacher_copy.pt"
    copy.write_bytes(default_checkpoint_path().read_bytes())
    cfg_lr = _gen_cfg(tmp_path, weight_decay=0.1, grad_clip=5.0, width=8)
    assert make_teacher_groups(cfg_lr, out, range(4), size=32, teacher=copy, progress=False) == [
        out / "group_000003.npz"]
    other = tmp_path / "other.pt"
    other.write_bytes(copy.read_bytes() + b"\0")
    with pytest.raises(ValueError, match="teacher_sha256"):
        make_teacher_groups(cfg, out, range(5), size=32, teacher=other, progress=False)
    with pytest.raises(ValueError, match=r"config\.noise"):
        make_teacher_groups(_gen_cfg(tmp_path, noise=0.05), out, range(5), size=32, progress=False)
    assert len(teacher_group_files(out)) == 4


def test_teacher_groups_need_a_lens_aware_synthetic_config(tmp_path):
    with pytest.raises(ValueError, match="lens-aware"):
        make_teacher_groups(_gen_cfg(tmp_path, lens_aware=False), tmp_path / "g", range(1), size=32, progress=False)
    with pytest.raises(ValueError, match="multiple of 16"):
        make_teacher_groups(_gen_cfg(tmp_path), tmp_path / "g", range(1), size=40, progress=False)


def test_teacher_group_batches_crop_and_flip_images_and_labels_together(tmp_path):
    rng = np.random.default_rng(0)
    b, s, h, w = 3, 4, 24, 40
    images = rng.integers(0, 256, size=(b, s, 3, h, w), dtype=np.uint8)
    # the label of every pixel is a function of that pixel's first frame, so misaligned crops or flips show
    teacher = 1.0 + images[:, 0, 0].astype(np.float32) / 64.0
    focus = np.tile(np.linspace(0.4, 1.5, s, dtype=np.float32), (b, 1))
    _write_group(tmp_path / "g", 0, images, focus, teacher)
    ds = TeacherGroups(tmp_path / "g", crop=16, seed=3)
    for j in range(6):
        batch = ds.make(j)
        assert batch["images"].shape == (b, s, 3, 16, 16) and batch["teacher_depth"].shape == (b, 1, 16, 16)
        assert batch["lens"].shape == (b, 3) and batch["lens"].dtype == torch.float64
        assert batch["k"].shape == (b,) and torch.equal(batch["focus_m"], torch.from_numpy(focus))
        want = 1.0 + torch.round(batch["images"][:, 0, 0] * 255) / 64.0
        assert torch.allclose(batch["teacher_depth"][:, 0], want)
        assert 0.0 <= float(batch["images"].min()) and float(batch["images"].max()) <= 1.0
    assert torch.equal(ds.make(2)["images"], TeacherGroups(tmp_path / "g", crop=16, seed=3).make(2)["images"])
    assert not torch.equal(ds.make(2)["images"], ds.make(3)["images"])
    first = next(iter(ds))
    assert torch.equal(first["images"], ds.make(0)["images"])


def test_teacher_group_batches_refuse_an_empty_folder_or_too_large_a_crop(tmp_path):
    with pytest.raises(ValueError, match="no teacher groups.*model.distill make"):
        TeacherGroups(tmp_path / "none", crop=16)
    _write_group(tmp_path / "g", 0, np.zeros((1, 2, 3, 16, 16), np.uint8), np.ones((1, 2), np.float32),
                 np.ones((1, 16, 16), np.float32))
    with pytest.raises(ValueError, match="crop 32 is larger"):
        TeacherGroups(tmp_path / "g", crop=32)


def test_distill_loss_is_the_mean_log_depth_error_and_leaves_the_teacher_alone():
    d = torch.full((2, 1, 4, 4), 2.0, requires_grad=True)
    t = torch.full((2, 1, 4, 4), 1.0, requires_grad=True)
    loss = distill_loss(d, t)
    assert loss.item() == pytest.approx(np.log(2.0))
    loss.backward()
    assert d.grad is not None and float(d.grad.abs().sum()) > 0 and t.grad is None
    assert distill_loss(t.detach(), t.detach()).item() == 0.0
    with pytest.raises(ValueError, match="differ in shape"):
        distill_loss(d, t[:, :, :2])


def test_training_on_teacher_groups_adds_the_distill_term(tmp_path):
    from model.trainer import Trainer

    rng = np.random.default_rng(1)
    for i in range(2):
        _write_group(tmp_path / "g", i, rng.integers(0, 256, size=(2, 3, 3, 48, 48), dtype=np.uint8),
                     np.tile(np.array([0.35, 0.6, 1.5], np.float32), (2, 1)), np.full((2, 48, 48), 0.8, np.float32))
    from model.losses import LossWeights

    cfg = _gen_cfg(tmp_path, data="distill", data_dir=str(tmp_path / "g"), steps=2, val_every=100, ckpt_every=2,
                   image_every=100, warmup_steps=1, init="model/default/daifnet.pt", freeze_bn=True,
                   loss=LossWeights(distill=100.0))
    tr = Trainer(cfg, progress=False)
    batch = tr.training_data(seed=0).make(0)
    _, losses = tr.process_batch(batch)
    assert "distill" in losses and losses["distill"].item() > 0
    without = {k: v.item() for k, v in losses.items() if k not in ("total", "distill")}
    w = cfg.loss
    rest = (w.recon * without["recon"] + w.coarse * without["coarse"] + w.aif_blur * without["aif_blur"]
            + w.coarse_blur * without["coarse_blur"] + w.smooth * without["smooth"])
    assert losses["total"].item() == pytest.approx(rest + 100.0 * losses["distill"].item(), rel=1e-4)
    tr.train()
    assert (tmp_path / "run" / "last.pt").is_file()
    with pytest.raises(ValueError, match="data_dir"):
        TrainConfig(data="distill").validate()


def test_parse_groups_and_the_cli_say_what_is_wrong(tmp_path, capsys):
    assert parse_groups("5") == range(5) and parse_groups("3:7") == range(3, 7)
    for bad in ("x", "4:2", "-1:3", "0"):
        with pytest.raises(ValueError, match="--groups"):
            parse_groups(bad)
    from model.cli import UsageError
    from model.distill import main

    with pytest.raises(UsageError, match="--groups"):
        main(["make", "--out", str(tmp_path / "o"), "--groups", "a:b"])
    with pytest.raises(UsageError, match="no such file"):
        main(["make", "--out", str(tmp_path / "o"), "--config", str(tmp_path / "none.yaml")])
    with pytest.raises(UsageError, match="--teacher .*no such checkpoint"):
        main(["make", "--out", str(tmp_path / "o"), "--teacher", str(tmp_path / "none.pt")])
    assert not (tmp_path / "o").exists()
