"""Fine-tuning on your own stacks: stated length and time, held-back validation, best.pt by it, and a
clear word when the result is worse than the start (tiny settings, tiny focal-stack folders)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from model.checkpoint import read_checkpoint
from model.config import load_config
from model.formats import FocalStack, find_stacks, write_stack
from model.train_config import TrainConfig
from model.trainer import Trainer, holdout_indices, time_estimate

FOCUS = [1.0, 1.5, 2.5, 4.0, 6.0]
TINY = ["crop=32", "batch_size=2", "num_workers=0", "log_every=1", "val_stacks=2", "image_every=100",
        "max_psf_radius=6", "warmup_steps=1", "lr=1e-4"]


def _stacks(root: Path, lens, n: int) -> Path:
    rng = np.random.default_rng(1)
    for i in range(n):
        st = FocalStack(images=rng.random((5, 40, 40, 3), dtype=np.float32), focus_m=np.array(FOCUS), lens=lens)
        write_stack(root / f"s{i}", st)
    return root


def _cfg(tmp_path, tiny_checkpoint, lens, data: Path, *extra: str) -> TrainConfig:
    lens.save(tmp_path / "lens.json")
    return load_config(TrainConfig, None, [f"out_dir={tmp_path / 'ft'}", "data=folder", f"data_dir={data}",
                                           f"init={tiny_checkpoint}", f"lens={tmp_path / 'lens.json'}",
                                           f"focus_m={FOCUS}", *TINY, *extra])


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["state_dict"]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


@pytest.mark.parametrize("n,every,want", [(0, 5, []), (1, 5, []), (2, 5, [1]), (4, 5, [2]), (5, 5, [2]),
                                          (10, 5, [2, 7]), (11, 5, [2, 8]), (6, 2, [1, 3, 5]), (9, 0, [])])
def test_holdout_indices(n, every, want):
    got = holdout_indices(n, every)
    assert got == want and len(got) < max(n, 1)


def test_time_estimate_reads_like_the_issue():
    assert time_estimate(2000, 6.9) == "2,000 steps, about 3.8 h at 6.9 s/step on this machine"
    assert time_estimate(40, 1.5) == "40 steps, about 60 s at 1.5 s/step on this machine"
    assert time_estimate(300, 2.0, resumed_at=100) == "300 steps (from step 100), about 10 min at 2 s/step on this machine"


def test_holdout_stacks_are_validated_not_trained_on(tmp_path, tiny_checkpoint, lens, caplog):
    data = _stacks(tmp_path / "rec", lens, 5)
    cfg = _cfg(tmp_path, tiny_checkpoint, lens, data, "steps=6", "val_every=3", "ckpt_every=3")
    tr = Trainer(cfg, progress=False, holdout_every=5)
    start_w = {k: v.clone() for k, v in tr.net.state_dict().items()}
    ds = tr.training_data(seed=0)
    trained = [ds.dataset.ds.folders[i] for i in ds.dataset.index]
    folders = find_stacks(data)
    assert len(trained) == 4 and folders[2] not in trained  # s2 is held back
    with caplog.at_level(logging.INFO, logger="model.trainer"):
        tr.train()
    log = caplog.text
    assert "held back for validation: 1 of 5 stacks (s2); their re-rendering loss at the start:" in log
    assert "step 3: held-back re-rendering loss" in log and "step 6: held-back re-rendering loss" in log
    assert "6 steps, about" in log and "s/step on this machine (timed over steps 2-4)" in log
    ho = read_checkpoint(tmp_path / "ft" / "last.pt")["holdout"]
    assert ho["stacks"] == [str(folders[2])] and ho["start"][0] == 0 and ho["every"] == 5
    best_step = ho["best"][0]
    assert best_step in (0, 3, 6) and read_checkpoint(tmp_path / "ft" / "best.pt")["step"] == best_step
    if best_step == 0:  # nothing beat the start: best.pt holds the start weights
        assert _same(_weights(tmp_path / "ft" / "best.pt"), start_w)
    report = tr.holdout_report()
    assert report[0].startswith("held-back validation (1 stack, re-rendering loss, lower is better): start ")


def _fake_validation(monkeypatch, tr: Trainer, losses: list[float]) -> None:
    it = iter(losses)
    monkeypatch.setattr(tr, "validate", lambda: {"recon": next(it)})


def test_worse_than_the_start_says_so_and_keeps_the_start_weights(tmp_path, tiny_checkpoint, lens, monkeypatch):
    data = _stacks(tmp_path / "rec", lens, 3)
    tr = Trainer(_cfg(tmp_path, tiny_checkpoint, lens, data, "steps=4", "val_every=2", "ckpt_every=2"),
                 progress=False, holdout_every=5)
    start_w = {k: v.clone() for k, v in tr.net.state_dict().items()}
    _fake_validation(monkeypatch, tr, [0.10, 0.12, 0.15])
    tr.train()
    assert tr.holdout_best == (0, 0.10) and tr.holdout_last == (4, 0.15)
    assert _same(_weights(tmp_path / "ft" / "best.pt"), start_w)
    assert not _same(_weights(tmp_path / "ft" / "last.pt"), start_w)
    report = "\n".join(tr.holdout_report())
    assert "warning: fine-tuning did not improve on where it started" in report
    assert "0.10000 -> 0.15000" in report and "holds the start weights (step 0)" in report


def test_better_midway_worse_at_the_end(tmp_path, tiny_checkpoint, lens, monkeypatch):
    data = _stacks(tmp_path / "rec", lens, 2)
    tr = Trainer(_cfg(tmp_path, tiny_checkpoint, lens, data, "steps=4", "val_every=2", "ckpt_every=2"),
                 progress=False, holdout_every=5)
    _fake_validation(monkeypatch, tr, [0.10, 0.08, 0.13])
    tr.train()
    assert tr.holdout_best == (2, 0.08) and read_checkpoint(tmp_path / "ft" / "best.pt")["step"] == 2
    report = "\n".join(tr.holdout_report())
    assert "warning: the result is worse than where it started" in report and "holds step 2" in report


def test_better_at_the_end_and_resume_keeps_the_start(tmp_path, tiny_checkpoint, lens, monkeypatch):
    data = _stacks(tmp_path / "rec", lens, 2)
    tr = Trainer(_cfg(tmp_path, tiny_checkpoint, lens, data, "steps=2", "val_every=2", "ckpt_every=2"),
                 progress=False, holdout_every=5)
    _fake_validation(monkeypatch, tr, [0.10, 0.09])
    tr.train()
    assert "better than the start (0.10000)" in tr.holdout_report()[-1] and "warning" not in "".join(tr.holdout_report())
    tr2 = Trainer(_cfg(tmp_path, tiny_checkpoint, lens, data, "steps=4", "val_every=2", "ckpt_every=2"),
                  progress=False, holdout_every=5)
    assert tr2.step == 2 and tr2.holdout_start == (0, 0.10) and tr2.holdout_best == (2, 0.09)
    _fake_validation(monkeypatch, tr2, [0.2])  # no new start validation on resume: only step 4's
    tr2.train()
    assert tr2.holdout_best == (2, 0.09) and "worse than where it started" in "\n".join(tr2.holdout_report())


def test_one_stack_trains_on_it_and_warns(tmp_path, tiny_checkpoint, lens, caplog):
    data = _stacks(tmp_path / "rec", lens, 1)
    tr = Trainer(_cfg(tmp_path, tiny_checkpoint, lens, data, "steps=1", "val_every=5"), progress=False, holdout_every=5)
    with caplog.at_level(logging.WARNING, logger="model.trainer"):
        tr.train()
    assert "fewer than two stacks: none is held back" in caplog.text
    assert tr.holdout_report() == [] and not (tmp_path / "ft" / "best.pt").exists()


def test_bad_holdout_is_refused(tmp_path, tiny_checkpoint, lens):
    cfg = _cfg(tmp_path, tiny_checkpoint, lens, _stacks(tmp_path / "rec", lens, 2), "steps=1")
    with pytest.raises(ValueError, match="holdout_every"):
        Trainer(cfg, progress=False, holdout_every=1)


def test_finetune_command_states_length_time_and_holdout(tmp_path, tiny_checkpoint, lens, capsys, caplog):
    from model.train import main

    data = _stacks(tmp_path / "rec", lens, 3)
    with caplog.at_level(logging.INFO, logger="model.trainer"):
        code = main(["--no-progress", "--finetune", str(data), "--init", str(tiny_checkpoint), f"out_dir={tmp_path / 'ft'}",
                     "steps=5", "val_every=5", *TINY])
    out = capsys.readouterr().out
    assert code == 0
    assert f"fine-tuning on {data}: 5 steps;" in out and "(the default" not in out
    assert "5 steps, about" in caplog.text and "s/step on this machine" in caplog.text
    assert "held back for validation: 1 of 3 stacks (s1)" in caplog.text
    assert "held-back validation (1 stack, re-rendering loss, lower is better): start " in out
    assert (tmp_path / "ft" / "best.pt").is_file()


def test_holdout_of_one_is_refused_before_work(tmp_path):
    from model.cli import UsageError
    from model.train import main

    with pytest.raises(UsageError, match="--holdout must be 0"):
        main(["--finetune", str(tmp_path), "--holdout", "1"])


def test_lens_aware_finetune_takes_the_recorded_frames_and_focus_not_the_reference_lens_s(tmp_path, monkeypatch):
    """A lens-aware model fine-tuned on 7-frame sweeps of another lens (0.2-1 m) trains on all seven frames at their
    own focus distances, not on the five nearest the reference lens's 1-6 m."""
    from model.lens import LensProfile
    from model.train import main

    board = LensProfile(0.008, 2.0, 6e-6, name="board", image_size=(40, 40))
    focus = [0.2, 0.25, 0.3, 0.4, 0.5, 0.7, 1.0]
    rng = np.random.default_rng(2)
    for i in range(3):
        write_stack(tmp_path / "rec" / f"s{i}", FocalStack(images=rng.random((7, 40, 40, 3), dtype=np.float32),
                                                           focus_m=np.array(focus), lens=board))
    seen: list[dict] = []
    orig = Trainer.process_batch

    def spy(self, batch, model=None):
        seen.append({k: v for k, v in batch.items() if k in ("images", "focus_m")})
        return orig(self, batch, model)

    monkeypatch.setattr(Trainer, "process_batch", spy)
    tiny = [o for o in TINY if not o.startswith("lr=")]  # the recipe's learning rate is checked below
    code = main(["--no-progress", "--finetune", str(tmp_path / "rec"), f"out_dir={tmp_path / 'ft'}", "steps=2",
                 "val_every=2", *tiny])
    assert code == 0 and seen
    for batch in seen:  # training batches and the held-back stack alike
        assert batch["images"].shape[1] == 7
        assert torch.allclose(batch["focus_m"][0], torch.tensor(focus))
    saved = read_checkpoint(tmp_path / "ft" / "last.pt")
    assert saved["focus_m"] == pytest.approx(focus)
    # the shipped model's recipe (model/configs/relblur.yaml), not the generic fine-tune's lr 1e-4 and live BN
    import yaml

    used = yaml.safe_load((tmp_path / "ft" / "config.yaml").read_text())
    assert used["lr"] == pytest.approx(5e-5) and used["freeze_bn"] is True
    assert used["loss"]["relblur"] == pytest.approx(3000.0)
    # and a user's own setting still wins
    assert main(["--no-progress", "--finetune", str(tmp_path / "rec"), f"out_dir={tmp_path / 'ft2'}", "steps=1",
                 "val_every=1", *tiny, "lr=2e-5"]) == 0
    assert yaml.safe_load((tmp_path / "ft2" / "config.yaml").read_text())["lr"] == pytest.approx(2e-5)
