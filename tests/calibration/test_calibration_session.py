"""End to end on synthetic sessions: chart rendered through a known lens (focus breathing, defocus,
vignetting, noise, sRGB, 8-bit PNG on disk) -> measured -> fitted; and the `fit` command line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from calibration.fit import CalibrationError, fit_lens
from calibration.session import measure_session, save_sweep, write_session_chart
from calibration.simulate import default_sim_lens, make_synthetic_session
from model.lens import FocusControl, LensProfile

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _mapping_error(truth, fitted, controls):
    t = truth.focus_control.a * controls + truth.focus_control.b
    f = fitted.focus_control.a * controls + fitted.focus_control.b
    return float(np.max(np.abs(f - t)))


def _check_recovery(truth, session_dir, controls):
    sd = measure_session(session_dir, progress=False)
    r = fit_lens(sd.sweeps, sd.image_size)
    L = r.lens
    errs = {
        "f": L.focal_length_m / truth.focal_length_m - 1,
        "N": L.f_number / truth.f_number - 1,
        "p": L.pixel_pitch_m / truth.pixel_pitch_m - 1,
        "map": _mapping_error(truth, L, controls),
    }
    print("recovery errors:", {k: round(v, 5) for k, v in errs.items()})
    assert abs(errs["f"]) < 0.03 and abs(errs["N"]) < 0.03 and abs(errs["p"]) < 0.03, errs
    assert errs["map"] < 0.05, errs
    return r, errs


def test_large_blur_lens_three_distances(tmp_path):
    """A 6 mm f/1.4 module at 480x360, chart at 0.45, 0.65 and 1.0 m, 12 focus values over 0..5."""
    truth = LensProfile(6e-3, 1.4, 5.6e-6 * 640 / 480, name="truth-6mm", image_size=(480, 360),
                        focus_control=FocusControl(a=0.93, b=0.15))
    controls = np.linspace(0.0, 5.0, 12)
    make_synthetic_session(tmp_path / "s", truth, [0.45, 0.65, 1.0], controls, seed=1)
    r, errs = _check_recovery(truth, tmp_path / "s", controls)
    assert max(abs(errs["f"]), abs(errs["N"]), abs(errs["p"])) < 0.015
    assert r.lens.fit["rms_residual_px"] < 0.05


def test_phone_module_at_640x360(tmp_path):
    """A Camera-Module-3-like module (4.74 mm f/1.8, 10 um pixels at 640x360), raw focus 0..10 whose
    dioptres are off by a few per cent, chart at 0.3, 0.5 and 0.9 m: small blur (0.3 px per dioptre)."""
    truth = default_sim_lens((640, 360))
    controls = np.linspace(0.0, 10.0, 12)
    make_synthetic_session(tmp_path / "s", truth, [0.3, 0.5, 0.9], controls, seed=3)
    _check_recovery(truth, tmp_path / "s", controls)


def test_fit_command_line(tmp_path):
    truth = LensProfile(6e-3, 1.4, 7.5e-6, image_size=(480, 360), focus_control=FocusControl(a=0.93, b=0.15))
    controls = np.linspace(0.0, 5.0, 10)
    session = make_synthetic_session(tmp_path / "s", truth, [0.45, 0.8], controls, seed=2)
    out = tmp_path / "lens.json"
    proc = subprocess.run([sys.executable, "-m", "calibration", "fit", str(session), "--out", str(out), "--name", "cli-test"],
                          capture_output=True, text=True, cwd=REPO, timeout=600, env=ENV)  # a hang guard, not a speed limit
    assert proc.returncode == 0, proc.stderr
    d = json.loads(out.read_text())
    assert d["format"] == "lens/1" and d["name"] == "cli-test" and d["image_size"] == [480, 360]
    assert d["focal_length_m"] == pytest.approx(6e-3, rel=0.03)
    assert d["focus_control"]["model"] == "dioptre-linear"
    assert d["fit"]["samples"] == 20 and "stderr" in d["fit"]
    png = tmp_path / "lens.fit.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "picture of the fit" in proc.stdout
    LensProfile.load(out)  # readable by everyone else


def test_one_distance_session_is_refused_by_the_command_line(tmp_path):
    truth = default_sim_lens((320, 180))
    session = make_synthetic_session(tmp_path / "s", truth, [0.3], np.linspace(0, 10, 8), seed=0)
    proc = subprocess.run([sys.executable, "-m", "calibration", "fit", str(session), "--out", str(tmp_path / "l.json")],
                          capture_output=True, text=True, cwd=REPO, timeout=600, env=ENV)  # a hang guard, not a speed limit
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: cannot fit the lens: 1 usable distance")
    assert "Capture next: the chart at about" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "l.json").exists()
    # the suggestions are where this camera sees the whole chart with squares of >= 24 px
    # (s/p is about f/p = 235 px, a few per cent more when focused near)
    import re

    suggested = [float(x) for x in re.findall(r"([0-9.]+) m", proc.stderr.split("Capture next:")[1])]
    assert abs(truth.focal_length_m / truth.pixel_pitch_m - 235) < 1
    near, far = 235 * 0.154 / (0.9 * 180), 235 * 0.05 / 24
    assert len(suggested) == 2 and all(0.97 * near <= d <= 1.05 * far for d in suggested), suggested


def test_session_without_chart_found_names_what_to_do(tmp_path):
    s = tmp_path / "s"
    s.mkdir()
    from calibration.chart import default_chart

    write_session_chart(s, default_chart())
    blank = np.full((6, 90, 160, 3), 0.5, np.float32)
    for d in (0.4, 0.8):
        save_sweep(s, blank, np.linspace(0, 10, 6), d)
    sd = measure_session(s, progress=False)
    with pytest.raises(CalibrationError, match=r"(?s)0 usable distances.*chart was measured in only 0 of 6 frames.*not found"):
        fit_lens(sd.sweeps, sd.image_size)


def test_session_format(tmp_path):
    """A capture is focal-stack/1 with focus_control per frame and target.distance_m (FORMATS.md)."""
    truth = default_sim_lens((320, 180))
    session = make_synthetic_session(tmp_path / "s", truth, [0.3], np.linspace(0, 10, 6), seed=0,
                                     guess=LensProfile(4.74e-3, 1.8, 1.4e-6 * 4608 / 320))
    meta = json.loads((session / "d0.300m" / "stack.json").read_text())
    assert meta["format"] == "focal-stack/1"
    assert [set(f) for f in meta["frames"]] == [{"file", "focus_control"}] * 6
    assert meta["target"] == {"distance_m": 0.3, "chart": "../chart.json"}
    assert meta["lens"]["focal_length_m"] == pytest.approx(4.74e-3)
    assert json.loads((session / "chart.json").read_text())["format"] == "calibration-chart/1"
    assert json.loads((session / "session.json").read_text())["format"] == "calibration-session/1"
    # the stack needs its chart
    (session / "chart.json").unlink()
    from model.errors import FormatError

    with pytest.raises(FormatError, match="target.chart"):
        measure_session(session, progress=False)
