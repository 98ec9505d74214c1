"""DistributedDataParallel through torchrun: two CPU processes (gloo backend) train a tiny model."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from model.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def test_torchrun_two_processes_on_cpu(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "model.train", "--no-progress", f"out_dir={out}", "width=4", "depth=2", "crop=32", "batch_size=2",
           "num_workers=0", "steps=2", "val_every=2", "val_stacks=2", "ckpt_every=2", "max_psf_radius=6", "device=cpu"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=600)  # a hang guard, not a speed limit
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both workers, so none outlives the test
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-3000:]
    ck = read_checkpoint(out / "last.pt")
    assert ck["step"] == 2
    assert not any(k.startswith("module.") for k in ck["state_dict"])  # saved without the DDP wrapper
