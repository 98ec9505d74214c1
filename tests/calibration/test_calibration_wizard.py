"""The wizard, scripted: non-interactive runs and answers files, with the chart simulator."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from calibration.wizard import main
from model.lens import FocusControl, LensProfile

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _run(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_non_interactive_run_fits_and_saves_everything(tmp_path, capsys):
    truth = LensProfile(6e-3, 1.4, 11.2e-6, name="truth", image_size=(320, 240), focus_control=FocusControl(a=0.93, b=0.15))
    truth.save(tmp_path / "truth.json")
    session = tmp_path / "s"
    code, out, err = _run(["--camera", "chart-sim", "--sim-lens", str(tmp_path / "truth.json"), "--sim-size", "320x240",
                           "--frames", "12", "--non-interactive", "--distances", "0.45", "0.65", "0.9", "--out", str(session),
                           "--preset", "camera-module-3"], capsys)
    assert code == 0, err
    lens = LensProfile.load(session / "lens.json")
    assert lens.image_size == (320, 240)
    assert lens.focal_length_m == pytest.approx(truth.focal_length_m, rel=0.03)
    assert lens.f_number == pytest.approx(truth.f_number, rel=0.03)
    assert lens.pixel_pitch_m == pytest.approx(truth.pixel_pitch_m, rel=0.03)
    # the focus mapping, where the chart distances pin it down (1.1 to 2.2 dioptres)
    v = (np.linspace(1 / 0.9, 1 / 0.45, 10) - 0.15) / 0.93
    assert np.max(np.abs(lens.focus_control.a * v + lens.focus_control.b - (0.93 * v + 0.15))) < 0.05
    # the simulated actuator: 10 control units at 1.6 per frame, half a frame late -> 7 frames
    assert lens.extra["settle_frames"] == 7
    assert lens.extra["settle_time_s"] == pytest.approx(8 / 30)
    # the preset (a different module) is only a first guess: the fit says how far off it is
    assert "differs from the Raspberry Pi Camera Module 3" in out
    assert (session / "fit.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in session.iterdir() if p.is_dir()) == ["d0.450m", "d0.650m", "d0.900m"]
    info = json.loads((session / "session.json").read_text())
    assert info["settle"]["settle_frames"] == 7 and info["guess"]["f_number"] == 1.8
    assert "the focus settles 7 frames" in out and "profile:" in out
    # the raw session fits again offline to the same lens, with the command the wizard suggests
    import re
    import shlex

    suggested = re.search(r"`(python -m calibration fit [^`]*)`", out)
    assert suggested and "--out" in suggested.group(1), out
    argv = shlex.split(suggested.group(1))[1:]
    refit = Path(argv[argv.index("--out") + 1])
    proc = subprocess.run([sys.executable, *argv],
                          capture_output=True, text=True, cwd=REPO, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr
    again = LensProfile.load(refit)
    assert again.focal_length_m == pytest.approx(lens.focal_length_m, rel=1e-9)
    assert again.extra["settle_frames"] == 7


def test_help_imports_nothing_heavy():
    """Help stays light (no numpy/scipy/torch/cv2/matplotlib import); how long it takes is measured by
    ``benchmarks/bench_startup.py``, not asserted here (a loaded machine is not a failure)."""
    code = (
        "import sys\n"
        "from calibration.wizard import build_parser as w\n"
        "from calibration.__main__ import build_parser as c\n"
        "w().format_help(); c().format_help()\n"
        "heavy = [m for m in ('numpy', 'scipy', 'torch', 'cv2', 'matplotlib') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=ENV, timeout=600)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr
    for mod in ("calibration", "calibration.wizard"):
        proc = subprocess.run([sys.executable, "-m", mod, "--help"], capture_output=True, text=True, cwd=REPO, env=ENV, timeout=600)
        assert proc.returncode == 0 and "usage:" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "calibration", "fit"], capture_output=True, text=True, cwd=REPO, env=ENV, timeout=600)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
