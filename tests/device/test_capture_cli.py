"""``python -m device.capture``: help, bad input, the headless demo, the live page, SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import queue
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from model.formats import find_stacks, read_stack

ROOT = Path(__file__).resolve().parents[2]
HANG_S = 600  # a limit that only a hang reaches, never a slow machine
FAST = ["--camera", "sim", "--camera-opt", "size=[80,60]", "--camera-opt", "realtime=false"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the CLI; ``timeout`` only catches a hang (a loaded machine may take minutes)."""
    return subprocess.run([sys.executable, "-m", "device.capture", *args], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def test_help_does_not_import_torch():
    """``--help`` stays light (no torch import); how long it takes is benchmarks/bench_startup.py's job."""
    r = _run(["--help"])
    assert r.returncode == 0 and "--live" in r.stdout and "--record" in r.stdout
    code = "import sys, device.capture; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("args,msg", [
    (["--count", "0"], "--count must be >= 1"),
    (["--lens", "/nonexistent/lens.json"], "lens profile not found"),
    (["--camera-opt", "size"], "KEY=VALUE"),
    (["--camera-opt", "size=640"], "expected WIDTHxHEIGHT in pixels, e.g. size=640x480"),
    (["--out", "/tmp/x-capture-same", "--record", "/tmp/x-capture-same/rec"], "overlap"),
    (["--port", "70000"], "--port"),
    (["--range", "2", "1"], "--range NEAR FAR must be metres with 0 < NEAR < FAR"),
    (["--plan-frames", "3"], "--plan-frames needs --range"),
    (["--range", "1", "4", "--plan-frames", "1"], "--plan-frames must be between 2 and 64"),
])
def test_bad_input_exits_2_with_one_line(args, msg):
    r = _run(args)
    assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr


def test_camera_size_as_width_x_height(tiny_checkpoint, tmp_path):
    """``--camera-opt size=80x60`` (once "too many values to unpack") is read as (80, 60)."""
    r = _run(["--camera", "sim", "--camera-opt", "size=80x60", "--camera-opt", "realtime=false", "--model",
              str(tiny_checkpoint), "--count", "1", "--out", str(tmp_path / "o")])
    assert r.returncode == 0, r.stderr
    assert np.load(tmp_path / "o" / "stack_000000" / "depth.npy").shape == (60, 80)


def test_key_value_options_are_one_grammar_for_every_tool():
    from calibration.wizard import _parse_opts
    from model.cli import UsageError, parse_options

    opts = ["size=640x480", "fps=30", "exposure=0.5", "realtime=False", "vcm=ak7375", "roi=[1,2,3,4]", "device=/dev/video2"]
    want = {"size": (640, 480), "fps": 30, "exposure": 0.5, "realtime": False, "vcm": "ak7375", "roi": (1, 2, 3, 4),
            "device": "/dev/video2"}
    assert parse_options(opts) == want and _parse_opts(opts) == want
    assert parse_options(["size=[640, 480]"]) == {"size": (640, 480)}
    for bad in ("size", "size=640", "size=0x480", "9x=1"):
        with pytest.raises(UsageError):
            parse_options([bad])


def test_unknown_camera_option_exits_2(tiny_checkpoint):
    r = _run(FAST + ["--model", str(tiny_checkpoint), "--camera-opt", "zoom=2", "--count", "1"])
    assert r.returncode == 2 and "unknown simulated-camera option(s) zoom" in r.stderr


def test_headless_count_saves_predictions_records_stacks_and_prints_rates(tiny_checkpoint, tmp_path):
    out, rec = tmp_path / "out", tmp_path / "rec"
    r = _run(FAST + ["--model", str(tiny_checkpoint), "--count", "3", "--out", str(out), "--record", str(rec)])
    assert r.returncode == 0, r.stderr
    assert re.search(r"captured \d+ stacks \(\d+ frames\) from the sim camera in [\d.]+ s: [\d.]+ frames/s", r.stdout)
    assert re.search(r"inference \(torch\): 3 stacks, \d+ ms mean", r.stdout)
    assert "saved 3 predictions" in r.stdout and "recorded 3 stacks" in r.stdout
    preds = sorted(p.name for p in out.iterdir())
    assert preds == ["stack_000000", "stack_000001", "stack_000002"]
    d = np.load(out / "stack_000000" / "depth.npy")
    assert d.shape == (60, 80) and d.dtype == np.float32
    stacks = find_stacks(rec)
    assert len(stacks) == 3 and read_stack(stacks[0]).capture["camera"]["camera"] == "sim"


def test_live_page_is_served_and_sigterm_stops_cleanly(tiny_checkpoint, tmp_path):
    rec = tmp_path / "rec"
    p = subprocess.Popen([sys.executable, "-m", "device.capture", *FAST, "--model", str(tiny_checkpoint), "--live",
                          "--display", "web", "--port", "0", "--record", str(rec)],
                         cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Waits are for events (a line on stderr, a page state), each with a generous limit that only a hang
    # reaches: a slow or loaded machine is not a failure.
    lines: "queue.Queue[str]" = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in p.stderr], daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        url = None
        deadline = time.monotonic() + HANG_S
        while url is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1.0)
            except queue.Empty:
                assert p.poll() is None, "".join(seen)
                continue
            seen.append(line)
            m = re.search(r"live view: (http://127\.0\.0\.1:\d+/)", line)
            if m:
                url = m.group(1)
        assert url is not None, "".join(seen)
        seq = 0
        while seq < 2 and time.monotonic() < deadline:
            with urllib.request.urlopen(url + "state.json", timeout=HANG_S) as r:
                seq = json.loads(r.read())["seq"]
            time.sleep(0.1)
        assert seq >= 2
        with urllib.request.urlopen(url + "depth.png", timeout=HANG_S) as r:
            assert r.read()[:4] == b"\x89PNG"
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=HANG_S)  # the summary on stdout is a few lines: the pipe cannot fill
        stdout = p.stdout.read()
        reader.join(HANG_S)
        while not lines.empty():
            seen.append(lines.get())
        stderr = "".join(seen)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, stderr
    assert "stopped (SIGTERM)" in stderr and "Traceback" not in stderr
    assert "captured" in stdout and "recorded" in stdout
    for f in find_stacks(rec):  # every recorded stack is complete
        assert read_stack(f).images.shape[0] == 5
    assert not [q for q in rec.iterdir() if q.name.startswith(".")]


def _spy_on_model_input(monkeypatch) -> list[list[float]]:
    """Record the focus distances every runner made by ``device.capture`` is given with each stack."""
    import model.runners as runners

    seen: list[list[float]] = []
    real = runners.create_runner

    def spy(*a, **k):
        r = real(*a, **k)
        predict = r.predict

        def recording(images, focus_m):
            seen.append([float(f) for f in focus_m])
            return predict(images, focus_m)

        r.predict = recording
        return r

    monkeypatch.setattr(runners, "create_runner", spy)
    return seen


def test_range_plans_the_sweep_and_those_distances_reach_the_model(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    """``--range 1.2 4 --plan-frames 4``: the plan is printed (distances and LensPosition values), the camera
    sweeps it (recorded stacks), the model is given it, and prediction.json says so."""
    from device.cameras.simulated import default_lens
    from device.capture import main
    from model.sweep_plan import plan_focus_distances

    seen = _spy_on_model_input(monkeypatch)
    out, rec = tmp_path / "out", tmp_path / "rec"
    code = main(FAST + ["--model", str(tiny_checkpoint), "--range", "1.2", "4", "--plan-frames", "4", "--count", "2",
                        "--out", str(out), "--record", str(rec)])
    err = capsys.readouterr().err
    assert code == 0, err
    # the model sees 320x240 (the sim camera's 80x60 frames are upscaled to its size): plan for that lens
    want = plan_focus_distances(default_lens(), 1.2, 4.0, 4).focus_m
    assert "sweep plan for 1.2-4 m, 4 frames: focus " + ", ".join(f"{f:.3g}" for f in want) + " m (LensPosition " in err
    assert "(planned)" in err
    assert len(seen) == 2 and all(np.allclose(s, want, rtol=1e-5) for s in seen)
    for f in find_stacks(rec):
        assert np.allclose(read_stack(f).focus_m, want, rtol=1e-5)
    meta = json.loads((out / "stack_000000" / "prediction.json").read_text())
    assert meta["focus_plan"]["range_m"] == [1.2, 4.0] and np.allclose(meta["focus_plan"]["focus_m"], want)


def test_without_range_the_model_focus_distances_are_swept(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    from device.capture import main

    seen = _spy_on_model_input(monkeypatch)
    assert main(FAST + ["--model", str(tiny_checkpoint), "--count", "1"]) == 0
    assert np.allclose(seen[0], [1.0, 1.5, 2.5, 4.0, 6.0], rtol=1e-5) and "sweep plan" not in capsys.readouterr().err


def test_range_beyond_the_lens_and_the_model_prints_their_warnings(tiny_checkpoint, tmp_path, capsys):
    from device.capture import main

    code = main(FAST + ["--model", str(tiny_checkpoint), "--range", "1", "40", "--count", "1"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "warning: the lens cannot tell depths apart over" in err and "What helps" in err
    assert "warning: the model predicts depth only in 0.5-12 m" in err


def test_range_the_camera_cannot_focus_exits_2_with_one_line(tiny_checkpoint):
    r = _run(FAST + ["--model", str(tiny_checkpoint), "--camera-opt", "control_range=[0,2]", "--range", "0.2", "1",
                     "--count", "1"])
    assert r.returncode == 2 and "needs focus at" in r.stderr and "0.5 m to infinity" in r.stderr
    assert "Traceback" not in r.stderr


def _captures_with(tiny_checkpoint, out, flag, count, runtime):
    """``device.capture --count count flag`` runs, reports its inference as ``runtime``, and writes valid depth."""
    r = _run(FAST + ["--model", str(tiny_checkpoint), "--count", str(count), "--out", str(out), flag])
    assert r.returncode == 0, r.stderr
    assert re.search(rf"inference \({re.escape(runtime)}\): {count} stacks, \d+ ms mean", r.stdout)
    d = np.load(out / "stack_000000" / "depth.npy")
    assert d.shape == (60, 80) and np.all(np.isfinite(d)) and np.all(d > 0)


def test_sweep_sharpens_each_prediction_on_the_live_path(tiny_checkpoint, tmp_path):
    _captures_with(tiny_checkpoint, tmp_path / "out", "--sweep", 2, "torch+sweep")


def test_fast_refine_on_the_capture_path(tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    _captures_with(tiny_checkpoint, out, "--fast-refine", 1, "torch+refine")
    assert (out / "stack_000000" / "confidence.npy").exists()
    r = _run(FAST + ["--model", str(tiny_checkpoint), "--count", "1", "--out", str(tmp_path / "o2"), "--fast-refine",
                     "--sweep"])
    assert r.returncode == 2 and "--fast-refine already sweeps" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o2").exists()
