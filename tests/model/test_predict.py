"""``model.predict``: nothing lost, broken stacks reported, finished outputs skipped, no depth from no evidence."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model.formats import FocalStack, read_image, write_stack
from model.lens import LensProfile

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "model.predict", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)  # a hang guard only


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the hash of its content."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def recordings(tmp_path, small_stack):
    rec = tmp_path / "rec"
    write_stack(rec / "stack_000000", small_stack)
    write_stack(rec / "stack_000001", FocalStack(images=small_stack.images[::-1].copy(), focus_m=small_stack.focus_m,
                                                  lens=small_stack.lens))
    return rec


def _args(data: Path, out: Path, ckpt: Path, *extra: str) -> list[str]:
    return ["--data", str(data), "--out", str(out), "--checkpoint", str(ckpt), "--no-figures", "--device", "cpu", *extra]


# ----------------------------------------------------------------------------- nothing lost


@pytest.mark.parametrize("where", ["same", "inside_stack", "is_stack"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_output_root_overlapping_the_recordings_is_refused_and_nothing_is_touched(recordings, tiny_checkpoint, where, overwrite):
    before = _snapshot(recordings)
    out = {"same": recordings, "inside_stack": recordings / "stack_000000" / "pred",
           "is_stack": recordings / "stack_000001"}[where]
    r = _run(*_args(recordings, out, tiny_checkpoint, *(["--overwrite"] if overwrite else [])))
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "input stack" in r.stderr and "stack_00000" in r.stderr
    assert _snapshot(recordings) == before  # every recorded file still there, unchanged
    assert not (recordings / "stack_000000" / "pred").exists()


def test_a_single_stack_as_data_with_out_inside_it_is_refused(recordings, tiny_checkpoint):
    before = _snapshot(recordings)
    one = recordings / "stack_000000"
    r = _run(*_args(one, one, tiny_checkpoint, "--overwrite"))
    assert r.returncode == 2 and "is the input stack" in r.stderr
    assert _snapshot(recordings) == before


def test_overwrite_never_replaces_a_focal_stack_in_the_output_root(tmp_path, recordings, tiny_checkpoint, small_stack):
    out = tmp_path / "pred"
    write_stack(out / "stack_000001", small_stack)  # someone's recording where a prediction would go
    before = _snapshot(out)
    r = _run(*_args(recordings, out, tiny_checkpoint, "--overwrite"))
    assert r.returncode == 2 and "never replaces recordings" in r.stderr and "Traceback" not in r.stderr
    assert _snapshot(out) == before


def test_overwrite_never_replaces_a_folder_that_is_not_a_prediction(tmp_path, recordings, tiny_checkpoint):
    out = tmp_path / "pred"
    (out / "stack_000000").mkdir(parents=True)
    (out / "stack_000000" / "notes.txt").write_text("mine")
    r = _run(*_args(recordings, out, tiny_checkpoint, "--overwrite"))
    assert r.returncode == 2 and "not a prediction folder" in r.stderr
    assert (out / "stack_000000" / "notes.txt").read_text() == "mine"


def test_finished_outputs_are_skipped_by_default_and_redone_with_overwrite(tmp_path, recordings, tiny_checkpoint, capsys):
    from model.predict import main

    out = tmp_path / "pred"
    assert main(_args(recordings, out, tiny_checkpoint)) == 0
    assert "wrote 2 prediction folder(s)" in capsys.readouterr().out
    first = _snapshot(out)
    (out / "stack_000001").rename(tmp_path / "gone")  # as if the run had been interrupted before it
    assert main(_args(recordings, out, tiny_checkpoint)) == 0
    msg = capsys.readouterr().out
    assert "wrote 1 prediction folder(s)" in msg and "skipped 1 finished" in msg and "--overwrite" in msg
    assert _snapshot(out)["stack_000000/depth.npy"] == first["stack_000000/depth.npy"]
    os.utime(out / "stack_000000" / "depth.npy", (0, 0))
    assert main(_args(recordings, out, tiny_checkpoint, "--overwrite")) == 0
    assert "wrote 2 prediction folder(s)" in capsys.readouterr().out
    assert (out / "stack_000000" / "depth.npy").stat().st_mtime > 0  # rewritten


def test_orphans_of_a_killed_run_are_removed_and_a_half_replaced_folder_is_restored(tmp_path, recordings, tiny_checkpoint):
    from model.predict import main

    out = tmp_path / "pred"
    assert main(_args(recordings, out, tiny_checkpoint)) == 0
    # what kill -9 leaves: a folder being built, a file being written, a folder being replaced whose
    # replacement never arrived (atomic_dir moved the old one aside, then died)
    (out / ".stack_000000.k3j_9x0a.tmp").mkdir()
    (out / ".stack_000000.k3j_9x0a.tmp" / "depth.npy").write_bytes(b"partial")
    (out / "stack_000000" / ".depth.npy.zz1abc9q.tmp").write_bytes(b"partial")
    aside = out / ".stack_000001.a1b2c3d4.old"
    aside.mkdir()
    (out / "stack_000001").rename(aside / "x")
    assert main(_args(recordings, out, tiny_checkpoint)) == 0
    assert not [p for p in out.rglob(".*")]
    assert (out / "stack_000001" / "depth.npy").is_file()  # restored, then skipped as finished


# ----------------------------------------------------------------------------- broken stacks, full disk


def test_a_broken_stack_does_not_stop_the_folder(tmp_path, recordings, tiny_checkpoint):
    (recordings / "stack_000000" / "frame_02.png").write_bytes(b"not a png")
    out = tmp_path / "pred"
    r = _run(*_args(recordings, out, tiny_checkpoint))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "1 of 2 stack(s) could not be predicted" in r.stderr and "frame_02.png" in r.stderr
    assert (out / "stack_000001" / "depth.npy").is_file()  # the good one after the bad one
    assert not (out / "stack_000000").exists()


def test_a_single_frame_stack_names_its_file(tmp_path, small_stack, tiny_checkpoint):
    data = tmp_path / "one"
    write_stack(data / "s", FocalStack(images=small_stack.images[:1], focus_m=small_stack.focus_m[:1], lens=small_stack.lens))
    r = _run(*_args(data, tmp_path / "pred", tiny_checkpoint))
    assert r.returncode == 2 and "stack.json" in r.stderr and "frame_00.png" in r.stderr and "2 or more" in r.stderr


def test_full_disk_is_one_clear_line(tmp_path, recordings, tiny_checkpoint, capsys, monkeypatch):
    import model.atomic as atomic
    from model.cli import run_cli
    from model.predict import main

    real_save = np.save

    def full(fh, arr, *a, **k):  # what numpy raises when the disk fills during tofile
        raise OSError("76800 requested and 55264 written")

    monkeypatch.setattr(np, "save", full)
    with pytest.raises(SystemExit) as e:
        run_cli(lambda: main(_args(recordings, tmp_path / "pred", tiny_checkpoint)))
    monkeypatch.setattr(np, "save", real_save)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and "predict:" not in ln]  # (the progress bar aside)
    assert e.value.code == 1 and len(lines) == 1 and lines[0].startswith("error: disk full writing"), err
    assert "Traceback" not in err and "run the same command again" in err and "requested and" not in err
    assert not [p for p in (tmp_path / "pred").rglob("*")]  # nothing half-written
    assert atomic.is_disk_full(OSError(errno.ENOSPC, "No space left on device"))


# ----------------------------------------------------------------------------- evidence


def _stack(images: np.ndarray, focus=(1.0, 1.5, 2.5, 4.0, 6.0)) -> FocalStack:
    return FocalStack(images=images.astype(np.float32), focus_m=np.array(focus), lens=LensProfile(0.05, 8.0, 1.2e-5))


@pytest.mark.parametrize("kind,why", [
    ("identical", "identical"),
    ("black", "black"),
    ("same_focus", "same focus distance"),
])
def test_a_stack_without_depth_evidence_is_flagged_and_gets_zero_confidence(tmp_path, tiny_checkpoint, kind, why, capsys):
    from model.predict import main

    rng = np.random.default_rng(1)
    tex = rng.random((40, 48, 3))
    images = {"identical": np.repeat(tex[None], 5, 0), "black": np.zeros((5, 40, 48, 3)),
              "same_focus": rng.random((5, 40, 48, 3))}[kind]
    focus = (2.0,) * 5 if kind == "same_focus" else (1.0, 1.5, 2.5, 4.0, 6.0)
    data = tmp_path / "data"
    write_stack(data / "bad", _stack(images, focus))
    write_stack(data / "good", _stack(rng.random((5, 40, 48, 3))))
    assert main(_args(data, tmp_path / "pred", tiny_checkpoint)) == 0
    out = capsys.readouterr().out
    assert "bad" in out and "no depth evidence" in out and why in out
    conf = np.load(tmp_path / "pred" / "bad" / "confidence.npy")
    assert conf.shape == (40, 48) and not np.any(conf)
    meta = json.loads((tmp_path / "pred" / "bad" / "prediction.json").read_text())
    assert meta["depth_evidence"]["has_evidence"] is False and why in meta["depth_evidence"]["reason"] + " ".join(meta["warnings"])
    good = json.loads((tmp_path / "pred" / "good" / "prediction.json").read_text())
    assert good["depth_evidence"]["has_evidence"] is True and good["warnings"] == []
    assert np.load(tmp_path / "pred" / "good" / "confidence.npy").max() > 0


def test_stack_checks_library():
    from model.stack_checks import check_stack_evidence

    rng = np.random.default_rng(0)
    good = rng.random((5, 20, 24, 3))
    ev = check_stack_evidence(good, [1.0, 1.5, 2.5, 4.0, 6.0])
    assert ev.has_evidence and ev.problems == [] and ev.summary() == "ok"
    # one black frame and two duplicated: less evidence, but some
    part = good.copy()
    part[0] = 0.0
    part[3] = part[2]
    ev = check_stack_evidence(part, [1.0, 1.5, 2.5, 4.0, 6.0], frame_names=[f"f{i}.png" for i in range(5)])
    assert ev.has_evidence and ev.constant_frames == [0] and ev.identical_pairs == [(2, 3)]
    assert "f0.png" in ev.summary() and "f2.png, f3.png are identical" in ev.summary()
    # 8-bit rounding of the same image is "identical"; real noise is not
    q = np.round(good[0] * 255) / 255
    assert not check_stack_evidence(np.stack([good[0], q]), [1.0, 2.0]).has_evidence
    noisy = np.clip(good[0] + rng.normal(0, 0.01, good[0].shape), 0, 1)
    assert check_stack_evidence(np.stack([good[0], noisy]), [1.0, 2.0]).has_evidence
    # repeated focus on two of three frames leaves evidence; on all, none
    assert check_stack_evidence(good[:3], [1.0, 1.0, 2.0]).repeated_focus == [(0, 1)]
    assert check_stack_evidence(good[:3], [1.0, 1.0, 2.0]).has_evidence
    none = check_stack_evidence(good[:3], [2.0, 2.0, 2.0])
    assert not none.has_evidence and "same focus distance" in none.reason
    assert not check_stack_evidence(np.full((3, 8, 8, 3), 0.5), None).has_evidence
    assert "single frame" in check_stack_evidence(good[:1], [1.0]).reason
    # uint8 frames
    assert check_stack_evidence((good * 255).astype(np.uint8), [1.0, 1.5, 2.5, 4.0, 6.0]).has_evidence


# ----------------------------------------------------------------------------- input size


def test_a_stack_over_max_size_is_downscaled_with_its_pitch_and_brought_back(tmp_path, tiny_checkpoint, capsys):
    from model.predict import fit_size, main

    assert fit_size((4000, 3000), 1280) == (1280, 960) and fit_size((320, 240), 1280) == (320, 240)
    assert fit_size((4000, 3000), 0) == (4000, 3000)
    rng = np.random.default_rng(2)
    data = tmp_path / "data"
    # 96x80 with half the model's pixel pitch: at 48x40 the pitch is the model's 12 um
    write_stack(data / "big", FocalStack(images=rng.random((5, 80, 96, 3)).astype(np.float32),
                                         focus_m=np.array([1.0, 1.5, 2.5, 4.0, 6.0]), lens=LensProfile(0.05, 8.0, 6e-6)))
    assert main(_args(data, tmp_path / "pred", tiny_checkpoint, "--max-size", "48")) == 0
    out = capsys.readouterr().out
    assert "larger than --max-size 48" in out and "48x40" in out
    d = tmp_path / "pred" / "big"
    assert np.load(d / "depth.npy").shape == (80, 96) and np.load(d / "confidence.npy").shape == (80, 96)
    assert read_image(d / "aif.png").shape == (80, 96, 3)
    meta = json.loads((d / "prediction.json").read_text())
    assert meta["input_size"] == [96, 80] and meta["inferred_size"] == [48, 40]
    # without the downscale the stack's pitch is not the model's: refused, naming the file
    r = _run(*_args(data, tmp_path / "pred2", tiny_checkpoint, "--max-size", "0"))
    assert r.returncode == 2 and "stack.json" in r.stderr


def test_good_stacks_write_the_same_files_as_before(tmp_path, recordings, tiny_checkpoint):
    from model.predict import main

    assert main(["--data", str(recordings), "--out", str(tmp_path / "pred"), "--checkpoint", str(tiny_checkpoint),
                 "--device", "cpu"]) == 0
    names = sorted(p.name for p in (tmp_path / "pred" / "stack_000000").iterdir())
    assert names == ["aif.png", "confidence.npy", "depth.npy", "depth.png", "figure.png", "prediction.json"]


def test_device_and_predict_share_one_writer(tmp_path):
    """The device's PredictionWriter writes what model.prediction_io writes, byte for byte."""
    from device.recorder import PredictionWriter
    from model.prediction_io import write_prediction_folder

    rng = np.random.default_rng(3)
    depth = rng.uniform(1, 5, (30, 40)).astype(np.float32)
    aif = rng.random((30, 40, 3), dtype=np.float32)
    conf = rng.uniform(-0.2, 1.3, (30, 40)).astype(np.float32)
    conf[0, 0] = np.nan
    w = PredictionWriter(tmp_path / "dev", 0.5, 12.0)
    a = w.save(depth, aif, conf, metadata={})
    w.close()
    b = write_prediction_folder(tmp_path / "lib", depth, aif, conf, near_m=0.5, far_m=12.0, metadata={"warnings": []})
    for name in ("depth.npy", "aif.png", "confidence.npy", "depth.png", "prediction.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    c = np.load(b / "confidence.npy")
    assert c.min() >= 0 and c.max() <= 1 and c[0, 0] == 0


def test_cuda_requested_without_cuda_says_so(tiny_checkpoint):
    import torch

    from model.runners import TorchRunner

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the message is for machines without it")
    with pytest.raises(ValueError, match="CUDA is not available"):
        TorchRunner(tiny_checkpoint, device="cuda")


def test_a_run_killed_with_sigkill_is_finished_by_the_next_run(tmp_path, small_stack, tiny_checkpoint):
    """kill -9 wherever it lands: the rerun removes the orphans, skips what was finished, does the rest."""
    import signal
    import time

    from model.prediction_io import is_prediction_folder

    data, out = tmp_path / "data", tmp_path / "pred"
    for i in range(6):
        write_stack(data / f"s{i}", FocalStack(images=np.roll(small_stack.images, i, axis=2), focus_m=small_stack.focus_m,
                                               lens=small_stack.lens))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    p = subprocess.Popen([sys.executable, "-m", "model.predict", *_args(data, out, tiny_checkpoint)], cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600  # an event (the first finished output), with a hang-only limit
        while p.poll() is None and time.monotonic() < deadline and not any(is_prediction_folder(f) for f in out.glob("s*")):
            time.sleep(0.01)
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.wait(600)
    r = _run(*_args(data, out, tiny_checkpoint))
    assert r.returncode == 0, r.stderr
    assert all(is_prediction_folder(out / f"s{i}") for i in range(6))
    assert not [q for q in out.rglob(".*")]


def test_refine_options_reach_the_refiner(tmp_path, tiny_checkpoint):
    from model.predict import PredictConfig, _make_runner, build_parser
    from model.refine import RefineConfig, RefiningRunner

    base = dict(data=tmp_path, out=tmp_path / "out", model=tiny_checkpoint, runtime="torch", refine=True)
    runner = _make_runner(PredictConfig(**base, refine_far_start=0.7, refine_blur_scale=1.0, refine_texture="aif",
                                        refine_cost_trust=False))
    assert isinstance(runner, RefiningRunner)
    assert runner.config.far_start == 0.7 and runner.config.psf_sigma_scale == 1.0
    assert runner.config.propagate_texture_from == "aif" and runner.config.propagate_cost_agreement is False
    default = _make_runner(PredictConfig(**base)).config  # no flag: the refiner's defaults
    assert default.far_start == RefineConfig().far_start
    assert default.propagate_texture_from == RefineConfig().propagate_texture_from
    assert default.propagate_cost_agreement is RefineConfig().propagate_cost_agreement is True
    args = build_parser().parse_args(["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--refine-far-start", "0",
                                      "--refine-texture", "focus", "--refine-no-cost-trust"])
    assert args.refine_far_start == 0.0 and args.refine_texture == "focus" and args.refine_cost_trust is False
    plain = build_parser().parse_args(["--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert plain.refine_cost_trust is None
    with pytest.raises(SystemExit) as e:  # argparse names the choices
        build_parser().parse_args(["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--refine-texture", "x"])
    assert e.value.code == 2
    # the help quotes the refiner's default without importing it (model.refine pulls in torch)
    assert f"default {RefineConfig().far_start}" in " ".join(build_parser().format_help().split())
