"""The training loop on tiny settings: losses finite, checkpoints atomic and complete, resume, fine-tune."""

import yaml
import pytest
import torch

from model.checkpoint import load_checkpoint, read_checkpoint
from model.config import load_config
from model.train_config import TrainConfig
from model.trainer import Trainer

TINY = ["width=4", "depth=2", "crop=32", "batch_size=2", "num_workers=0", "log_every=1", "val_every=2",
        "val_stacks=2", "ckpt_every=2", "image_every=2", "max_psf_radius=6", "warmup_steps=1"]


def _cfg(tmp_path, *extra):
    return load_config(TrainConfig, None, [f"out_dir={tmp_path / 'run'}", *TINY, *extra])


def test_train_saves_and_resumes(tmp_path):
    tr = Trainer(_cfg(tmp_path, "steps=2"), progress=False)
    before = {k: v.clone() for k, v in tr.net.state_dict().items()}
    metrics = tr.train()
    assert tr.step == 2 and "d1" in metrics and "recon" in metrics
    changed = any(not torch.equal(before[k], v) for k, v in tr.net.state_dict().items())
    assert changed
    run = tmp_path / "run"
    assert (run / "last.pt").is_file() and (run / "config.yaml").is_file() and (run / "lens.json").is_file()
    assert yaml.safe_load((run / "config.yaml").read_text())["steps"] == 2
    ck = read_checkpoint(run / "last.pt")
    assert ck["step"] == 2 and "optimizer" in ck and ck["focus_m"] == [1.0, 1.5, 2.5, 4.0, 6.0]
    assert ck["config"]["crop"] == 32
    # resume continues from step 2
    tr2 = Trainer(_cfg(tmp_path, "steps=3"), progress=False)
    assert tr2.step == 2
    tr2.train()
    assert read_checkpoint(run / "last.pt")["step"] == 3
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temp files left


def test_resume_refuses_other_focus(tmp_path):
    Trainer(_cfg(tmp_path, "steps=1"), progress=False).train()
    with pytest.raises(ValueError, match="other focus distances"):
        Trainer(_cfg(tmp_path, "steps=2", "focus_m=[1, 2, 3]"), progress=False)


def test_finetune_from_checkpoint_on_folder(tmp_path, lens):
    import numpy as np

    from model.formats import FocalStack, write_stack

    Trainer(_cfg(tmp_path, "steps=1"), progress=False).train()
    src = tmp_path / "run" / "last.pt"
    base = load_checkpoint(src)
    rng = np.random.default_rng(0)
    for i in range(2):
        st = FocalStack(images=rng.random((5, 40, 40, 3), dtype=np.float32), focus_m=np.array(base.focus_m), lens=base.lens)
        write_stack(tmp_path / "rec" / f"s{i}", st)
    cfg = load_config(TrainConfig, None, [f"out_dir={tmp_path / 'ft'}", "crop=32", "batch_size=2", "num_workers=0",
                                          "steps=1", "data=folder", f"data_dir={tmp_path / 'rec'}", f"init={src}",
                                          f"lens={tmp_path / 'run' / 'lens.json'}", "val_every=5", "max_psf_radius=6"])
    tr = Trainer(cfg, progress=False)
    assert tr.net.config == base.net.config
    tr.train()
    assert load_checkpoint(tmp_path / "ft" / "last.pt").step == 1


def test_bad_config_fails_before_work(tmp_path):
    with pytest.raises(ValueError, match="data_dir"):
        Trainer(_cfg(tmp_path, "data=folder"), progress=False)


def test_data_failure_saves_last_step(tmp_path, monkeypatch):
    tr = Trainer(_cfg(tmp_path, "steps=5", "ckpt_every=100", "val_every=100", "image_every=100"), progress=False)
    real = tr._batches

    def failing():
        it = real()
        yield next(it)
        yield next(it)
        raise RuntimeError("DataLoader worker (pid 1) is killed by signal: Terminated.")

    monkeypatch.setattr(tr, "_batches", failing)
    with pytest.raises(RuntimeError, match="worker"):
        tr.train()
    assert read_checkpoint(tmp_path / "run" / "last.pt")["step"] == 2


def test_sigterm_to_process_group_stops_cleanly_with_workers(tmp_path):
    """SIGTERM to the whole process group (``timeout``, a scheduler, Ctrl-C in a terminal) while data
    workers run: the run saves ``last.pt`` at the step it reached and exits 0, no worker error."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    run = tmp_path / "run"
    args = [f"out_dir={run}", *[a for a in TINY if not a.startswith("num_workers")], "num_workers=1",
            "steps=100000", "val_every=100000", "image_every=100000", "ckpt_every=1", "log_every=1"]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "model.train", "--no-progress", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        # wait for an event (the first step's checkpoint), not a fixed time: a loaded machine may take
        # minutes to start; only a run that never gets there (a hang) reaches the limit
        deadline = time.monotonic() + 600
        while not (run / "last.pt").is_file() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None and (run / "last.pt").is_file(), "the run did not reach its first step"
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out
    assert "exited unexpectedly" not in out and "done at step" in out, out
    step = int(out.split("done at step")[1].split(";")[0])
    assert step > 0 and read_checkpoint(run / "last.pt")["step"] == step


def test_relative_blur_term_is_added_when_weighted(tmp_path):
    off = Trainer(_cfg(tmp_path, "steps=1"), progress=False)
    on = Trainer(_cfg(tmp_path, "steps=1", "loss.relblur=1000", f"out_dir={tmp_path / 'run2'}"), progress=False)
    on.net.load_state_dict(off.net.state_dict())
    batch = next(off._batches())
    _, l_off = off.process_batch(batch)
    _, l_on = on.process_batch(batch)
    assert "relblur" not in l_off and l_on["relblur"].item() > 0
    torch.testing.assert_close(l_on["total"], l_off["total"] + 1000 * l_on["relblur"], rtol=1e-5, atol=1e-5)


def test_gpu_synthetic_data_validates_on_its_own_batches(tmp_path):
    tr = Trainer(_cfg(tmp_path, "steps=2", "data=gpu_synthetic"), progress=False)
    metrics = tr.train()
    assert tr.step == 2 and "d1" in metrics and 0 <= metrics["d1"] <= 1
    assert (tmp_path / "run" / "best.pt").is_file()


def test_psf_mix_and_breathing_reach_the_training_data(tmp_path):
    tr = Trainer(_cfg(tmp_path, "steps=1", "psf_mix=[0.0,0.0,1.0]", "breathing=0.2", "psf_min_blur_px=0.29"), progress=False)
    sc = tr.training_data(seed=1).config
    assert sc.psf_mix == (0.0, 0.0, 1.0) or list(sc.psf_mix) == [0.0, 0.0, 1.0]
    assert sc.breathing == 0.2 and sc.psf_min_sigma_px == 0.29
    tr.train()
    assert tr.step == 1


def test_threads_setting_reaches_torch(tmp_path):
    """threads=N sets the training process's CPU threads; threads=0 is refused before any work."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        Trainer(_cfg(tmp_path, "steps=1", "threads=1"), progress=False)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        Trainer(_cfg(tmp_path, "threads=0"), progress=False)
