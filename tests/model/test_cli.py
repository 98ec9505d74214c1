"""predict / evaluate / info / train command lines: outputs as in FORMATS.md, clean errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model.formats import FocalStack, read_image, write_stack

ROOT = Path(__file__).resolve().parents[2]


def _run(*args, timeout=600):  # a hang guard, not a speed limit
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


@pytest.fixture
def dataset(tmp_path, small_stack):
    write_stack(tmp_path / "data" / "a" / "s1", small_stack)
    nogt = FocalStack(images=small_stack.images, focus_m=small_stack.focus_m, lens=small_stack.lens)
    write_stack(tmp_path / "data" / "b", nogt)
    return tmp_path / "data"


def test_predict_writes_formats(tmp_path, dataset, tiny_checkpoint):
    from model.predict import main

    assert main(["--data", str(dataset), "--out", str(tmp_path / "out"), "--checkpoint", str(tiny_checkpoint)]) == 0
    for rel in ("a/s1", "b"):
        d = tmp_path / "out" / rel
        depth = np.load(d / "depth.npy")
        assert depth.dtype == np.float32 and depth.shape == (40, 48) and np.all(depth > 0)
        conf = np.load(d / "confidence.npy")
        assert conf.shape == (40, 48) and conf.min() >= 0 and conf.max() <= 1
        assert read_image(d / "aif.png").shape == (40, 48, 3)
        assert (d / "depth.png").stat().st_size > 1000 and (d / "figure.png").stat().st_size > 1000
    # finished outputs are skipped (left as they were), and --overwrite replaces them
    before = (tmp_path / "out" / "b" / "depth.npy").stat().st_mtime_ns
    assert main(["--data", str(dataset), "--out", str(tmp_path / "out"), "--checkpoint", str(tiny_checkpoint)]) == 0
    assert (tmp_path / "out" / "b" / "depth.npy").stat().st_mtime_ns == before
    assert main(["--data", str(dataset), "--out", str(tmp_path / "out"), "--checkpoint", str(tiny_checkpoint),
                 "--overwrite", "--no-figures"]) == 0


def test_evaluate_reports_metrics_and_heldout(dataset, tiny_checkpoint, capsys):
    from model.evaluate import evaluate_folder, main

    res = evaluate_folder(dataset, tiny_checkpoint, baseline=True)
    assert res["model"]["stacks"] == 1 and 0 <= res["model"]["d1"] <= 1
    assert "baseline" in res and "aif" in res
    assert res["heldout"]["stacks"] == 1 and res["heldout"]["psnr"] > 0
    assert main(["--data", str(dataset), "--checkpoint", str(tiny_checkpoint), "--json"]) == 0
    assert "abs_rel" in json.loads(capsys.readouterr().out)["model"]
    # --shard I/N: every N-th stack from the I-th; a malformed shard is a usage error, not a traceback
    whole = res["model"]["stacks"] + res["heldout"]["stacks"]
    assert main(["--data", str(dataset), "--checkpoint", str(tiny_checkpoint), "--json", "--shard", "0/1"]) == 0
    assert json.loads(capsys.readouterr().out)["stacks"] == whole == 2
    assert main(["--data", str(dataset), "--checkpoint", str(tiny_checkpoint), "--json", "--shard", "1/2"]) == 0
    assert json.loads(capsys.readouterr().out)["stacks"] == 1
    for bad in ("1/1", "x", "0/0"):
        with pytest.raises(SystemExit) as exc:
            main(["--data", str(dataset), "--checkpoint", str(tiny_checkpoint), "--shard", bad])
        assert exc.value.code == 2
    capsys.readouterr()


def test_info_json(tiny_checkpoint):
    r = _run("-m", "model.info", "--checkpoint", str(tiny_checkpoint), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["lens"]["format"] == "lens/1" and info["focus_distances_m"] == [1.0, 1.5, 2.5, 4.0, 6.0]


def test_clean_errors_no_traceback(tmp_path, dataset, tiny_checkpoint):
    r = _run("-m", "model.predict", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--checkpoint", str(tiny_checkpoint))
    assert r.returncode == 2 and "error:" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"x")
    r = _run("-m", "model.info", "--checkpoint", str(bad))
    assert r.returncode == 2 and "bad.pt" in r.stderr and "Traceback" not in r.stderr
    # a stack taken with another lens is refused, naming the file
    other = tmp_path / "other"
    st = FocalStack(images=np.random.rand(3, 16, 16, 3).astype(np.float32), focus_m=np.array([1.0, 2.0, 4.0]),
                    lens=__import__("model.lens", fromlist=["LensProfile"]).LensProfile(0.016, 1.4, 1.2e-5))
    write_stack(other / "s", st)
    r = _run("-m", "model.evaluate", "--data", str(other), "--checkpoint", str(tiny_checkpoint))
    assert r.returncode == 2 and "lens differs" in r.stderr and "stack.json" in r.stderr
    r = _run("-m", "model.train", "stpes=3")
    assert r.returncode == 2 and "unknown config key" in r.stderr


def test_help_is_fast():
    for mod in ("model.predict", "model.evaluate", "model.info", "model.train"):
        r = _run("-m", mod, "--help", timeout=600)  # a hang guard: speed is benchmarks/bench_startup.py's
        assert r.returncode == 0 and "usage" in r.stdout


def test_finetune_is_one_command(tmp_path, tiny_checkpoint, small_stack):
    for i in range(2):
        write_stack(tmp_path / "rec" / f"s{i}", small_stack)
    out = tmp_path / "ft"
    r = _run("-m", "model.train", "--no-progress", "--finetune", str(tmp_path / "rec"), "--init", str(tiny_checkpoint),
             f"out_dir={out}", "steps=1", "crop=32", "batch_size=2", "num_workers=0", "max_psf_radius=6", timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    from model.checkpoint import load_checkpoint

    m = load_checkpoint(out / "last.pt")
    assert m.step == 1 and m.config["data"] == "folder" and m.config["init"] == str(tiny_checkpoint)


def _scores_and_predicts(tmp_path, dataset, checkpoint, flag, key, label, **evaluate_kw):
    """``evaluate_folder(**evaluate_kw)`` scores ``key`` (shown as ``label``) and ``model.predict flag`` writes a
    valid depth map; returns the evaluation result and the written prediction.json."""
    from model.evaluate import evaluate_folder, format_table
    from model.predict import main

    res = evaluate_folder(dataset, checkpoint, **evaluate_kw)
    assert res[key]["stacks"] == 1 and 0 <= res[key]["d1"] <= 1
    assert label in format_table(res)
    out = tmp_path / key
    assert main(["--data", str(dataset), "--out", str(out), "--checkpoint", str(checkpoint), flag, "--no-figures"]) == 0
    depth = np.load(out / "a" / "s1" / "depth.npy")
    assert depth.shape == (40, 48) and np.all(np.isfinite(depth)) and np.all(depth > 0)
    return res, json.loads((out / "a" / "s1" / "prediction.json").read_text())


def _refused(tmp_path, dataset, checkpoint, capsys, flags, message):
    """``model.predict`` with ``flags`` stops with exit code 2 and ``message``, before writing anything."""
    from model.cli import run_cli
    from model.predict import main

    out = tmp_path / "refused"
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        run_cli(lambda: main(["--data", str(dataset), "--out", str(out), "--checkpoint", str(checkpoint), *flags]))
    assert e.value.code == 2 and message in capsys.readouterr().err and not out.exists()


def test_refine_flags(tmp_path, dataset, tiny_checkpoint, capsys):
    from model.predict import PredictConfig
    from model.refine import DISC_MATCHED_SIGMA_SCALE

    res, _ = _scores_and_predicts(tmp_path, dataset, tiny_checkpoint, "--refine", "refined", "DAIF-Net + refine",
                                  refine=True)
    assert "aif_refined" in res and res["per_stack"][0]["refined"]["pixels"] > 0
    assert PredictConfig(data=tmp_path, out=tmp_path).refine_blur_scale == DISC_MATCHED_SIGMA_SCALE
    # a bad blur scale: a clear error before any work, nothing written
    _refused(tmp_path, dataset, tiny_checkpoint, capsys, ["--refine", "--refine-blur-scale", "0"], "psf_sigma_scale")


def test_sweep_flags(tmp_path, dataset, tiny_checkpoint, capsys):
    _, meta = _scores_and_predicts(tmp_path, dataset, tiny_checkpoint, "--sweep", "swept", "DAIF-Net + sweep",
                                   sweep=True)
    assert meta["sweep"] is True and meta["runtime"].endswith("+sweep")
    # sweep and refine together: a clear error, nothing written
    _refused(tmp_path, dataset, tiny_checkpoint, capsys, ["--sweep", "--refine"], "--sweep and --refine")


def test_fast_refine_flags(tmp_path, dataset, tiny_checkpoint, capsys):
    _, meta = _scores_and_predicts(tmp_path, dataset, tiny_checkpoint, "--fast-refine", "fast_refined",
                                   "DAIF-Net + fast refine", fast_refine=True)
    assert meta["fast_refine"] is True and meta["refine"] is False and meta["runtime"].endswith("+refine")
    for other in ("--sweep", "--refine"):  # alternatives: a clear error, nothing written
        _refused(tmp_path, dataset, tiny_checkpoint, capsys, ["--fast-refine", other], "--fast-refine is an alternative")
