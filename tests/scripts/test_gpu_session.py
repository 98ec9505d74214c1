"""scripts/gpu_session.sh, dry-run on the CPU (GPU_SESSION_OVERRIDES device=cpu): one piece trains, its files come
out in $OUT (last.pt in parts under the device tool's 16 MiB limit that join back into the checkpoint), a second
piece resumes, bad arguments are refused. The GPU itself is only exercised on a lent machine."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from model.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_session.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None
                                or shutil.which("split") is None, reason="needs bash and coreutils (timeout, split)")


def _run(tmp_path, out, *args, steps=2):
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(out), GPU_SESSION_RUN_DIR=str(tmp_path / "run"),
               GPU_SESSION_SUITE=str(tmp_path / "suite"), GPU_SESSION_BENCH="0",
               GPU_SESSION_OVERRIDES=f"device=cpu amp=false steps={steps} crop=32 batch_size=2 val_every=2 "
                                     "ckpt_every=2 image_every=100 warmup_steps=1 threads=1")
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture
def tiny_suite(tmp_path):
    from model.eval_suite import make_suite

    paths = make_suite(tmp_path / "all", "tune", per_family=1, progress=False)
    (tmp_path / "suite").mkdir()
    for p in paths[:2]:  # two stacks are enough to validate on
        shutil.copytree(p, tmp_path / "suite" / p.name)
    return tmp_path / "suite"


def test_a_piece_trains_and_its_checkpoint_comes_out_in_parts_then_resumes(tmp_path, tiny_suite):
    out = tmp_path / "out"
    r = _run(tmp_path, out, "600")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "finished its schedule" in r.stdout
    names = {p.name for p in out.iterdir()}
    assert {"config.yaml", "lens.json", "best.pt", "session.log", "last.pt.part-00"} <= names
    parts = sorted(out.glob("last.pt.part-*"))
    assert len(parts) >= 2 and all(p.stat().st_size <= 15 * 2**20 for p in parts)  # under the 16 MiB per file
    joined = tmp_path / "joined.pt"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    assert joined.read_bytes() == (tmp_path / "run" / "last.pt").read_bytes()
    assert read_checkpoint(joined)["step"] == 2
    assert "finished its schedule" in (out / "session.log").read_text()
    # --join puts the piece where the next one resumes from, checked against the recorded checksum
    dest = tmp_path / "joined_run"
    j = subprocess.run(["bash", str(SCRIPT), "--join", str(out), str(dest)], cwd=ROOT, capture_output=True, text=True)
    assert j.returncode == 0, j.stderr
    assert (dest / "last.pt").read_bytes() == (tmp_path / "run" / "last.pt").read_bytes()
    assert {p.name for p in dest.iterdir()} == {"last.pt", "config.yaml", "lens.json", "best.pt"}
    parts[-1].write_bytes(parts[-1].read_bytes()[:-1])  # a truncated transfer
    bad = subprocess.run(["bash", str(SCRIPT), "--join", str(out), str(dest)], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 4 and "do not match the recorded checksum" in bad.stderr
    assert (dest / "last.pt").read_bytes() == (tmp_path / "run" / "last.pt").read_bytes()  # left as it was
    assert not (dest / ".last.pt.joining").exists()
    none = subprocess.run(["bash", str(SCRIPT), "--join", str(tmp_path / "nothing"), str(dest)], cwd=ROOT,
                          capture_output=True, text=True)
    assert none.returncode == 2 and "no last.pt parts" in none.stderr

    out2 = tmp_path / "out2"
    out2.mkdir()
    (out2 / "last.pt.part-07").write_bytes(b"stale part of an earlier piece")  # must not survive into the join
    r2 = _run(tmp_path, out2, "600", steps=3)
    assert r2.returncode == 0, r2.stdout[-3000:] + r2.stderr[-3000:]
    assert "resumed from" in r2.stdout and "at step 2" in r2.stdout
    assert read_checkpoint(tmp_path / "run" / "last.pt")["step"] == 3
    parts2 = sorted(out2.glob("last.pt.part-*"))
    assert b"".join(p.read_bytes() for p in parts2) == (tmp_path / "run" / "last.pt").read_bytes()


@pytest.mark.parametrize("arg", ["abc", "10", "-5"])
def test_a_bad_time_is_refused_before_anything_runs(tmp_path, arg):
    r = _run(tmp_path, tmp_path / "out", arg)
    assert r.returncode == 2 and "TRAIN_SECONDS" in r.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "run").exists()
