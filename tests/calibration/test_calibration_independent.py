"""Calibration on sessions the project's own simulator did not make (issue 15).

The sessions are rendered by ``independent_sim.py`` (its own thin lens with focus breathing, uniform-disc
blur, photon and read noise per channel, sRGB, 8-bit PNG, its own stack writer; only the chart's printed
layout is shared), each chart distance swept from 0.45x to 2.5x its distance in even dioptres, the
chart slightly rolled and off-centre. The two sessions of issue 15 that the fit refused:

- a 4.74 mm f/1.8 phone-like module at 1280x960 (5 um) on a well-exposed white page whose photon noise
  clips about 1 % of the chart's pixels: refused before ("measured in only 0 of N frames;
  over-exposed"), in every frame whatever the count;
- a 16 mm f/1.4 lens at 640x480 (9.8 um), charts at 0.87, 1.30, 1.91 m: large disc blur at the ends
  of the sweeps (up to 6.8 px). This renderer's session was fitted also before; the issue's refusal
  ("the sharpest frame is the last one") is reproduced by a sweep whose most blurred frame is misread
  as sharp (the last test), which the robust vee now survives.

Most frame counts are smaller than the 17 of the issue to keep the tests short; the issue's two
sessions at 17 frames are the last two tests, each fitted by the `fit` command and the library (the
phone module's is marked slow). Numbers: calibration/README.md.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from calibration.chart import default_chart
from calibration.fit import FitConfig, Sweep, check_sweep, fit_lens
from calibration.measure import MeasureConfig, measure_frame
from calibration.session import measure_session
from independent_sim import (
    LENS_16MM,
    PHONE_MODULE,
    TrueCamera,
    mapping_error_dpt,
    render_linear,
    sensor,
    sweep_dioptres,
    true_coc_m,
    true_scale_px_per_m,
    true_sigma_px,
    write_session,
)
from model.lens import LensProfile
from model.optics import coc_diameter_m

SPEC = default_chart()
REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _errors(cam: TrueCamera, lens: LensProfile, controls: np.ndarray) -> dict:
    """Relative errors of ``f, N, p`` and the largest focus-mapping error (dioptres) over ``controls``."""
    errs = {
        "f": lens.focal_length_m / cam.focal_length_m - 1,
        "N": lens.f_number / cam.f_number - 1,
        "p": lens.pixel_pitch_m / cam.pixel_pitch_m - 1,
        "map_dpt": mapping_error_dpt(cam, lens.focus_control.a, lens.focus_control.b, controls),
    }
    print("recovery errors:", {k: round(v, 5) for k, v in errs.items()})
    return errs


def _recovery(cam: TrueCamera, session) -> dict:
    sd = measure_session(session, progress=False)
    r = fit_lens(sd.sweeps, sd.image_size)
    controls = np.concatenate([sw.control for sw in sd.sweeps])
    return {"errs": _errors(cam, r.lens, controls), "sd": sd, "fit": r}


def _fit_by_cli(session: Path, out: Path) -> LensProfile:
    """What the user runs: ``python -m calibration fit SESSION --out lens.json``; the written profile."""
    proc = subprocess.run([sys.executable, "-m", "calibration", "fit", str(session), "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "never passes through focus" not in proc.stdout + proc.stderr
    assert "warning" not in proc.stdout, proc.stdout
    return LensProfile.load(out)


def _assert_targets(errs: dict) -> None:
    assert abs(errs["f"]) < 0.03 and abs(errs["N"]) < 0.03 and abs(errs["p"]) < 0.03, errs
    assert errs["map_dpt"] < 0.05, errs


def test_independent_optics_is_the_thin_lens_of_formats_md():
    """The second renderer's own formulas agree with model.optics (so a disagreement in the fit is the
    fit's, not the renderer's): c = A s |1/d_f - 1/D| = A f |D - d_f| / (D (d_f - f)), scale s / (D p)."""
    cam = LENS_16MM
    lens = LensProfile(cam.focal_length_m, cam.f_number, cam.pixel_pitch_m)
    for D in (0.87, 1.9):
        for P in sweep_dioptres(D, 5):
            d_f = 1.0 / P
            assert true_coc_m(cam, D, P) == pytest.approx(coc_diameter_m(D, d_f, lens), rel=1e-9)
            s = cam.focal_length_m * d_f / (d_f - cam.focal_length_m)
            assert true_scale_px_per_m(cam, D, P) == pytest.approx(s / (D * cam.pixel_pitch_m), rel=1e-12)


@pytest.mark.parametrize("j", [0, 16])
def test_large_disc_blur_at_the_ends_of_a_sweep_rolled_chart(j):
    """Single frames at the ends of the 0.87 m sweep (disc sigma 3.3 and 6.8 px), chart rolled 3 degrees."""
    cam = LENS_16MM
    D = 0.87
    P = float(sweep_dioptres(D, 17)[j])
    img = sensor(cam, render_linear(cam, SPEC, D, P, roll_deg=3.0, offset_px=(4.0, -3.0)), np.random.default_rng(j))
    m = measure_frame(img.astype(np.float32) / 255.0, SPEC)
    assert m.found and m.usable, m.problem
    truth = true_sigma_px(cam, D, P)
    assert truth > 3.0
    assert m.sigma_px == pytest.approx(truth, rel=0.02, abs=0.03)
    assert m.scale_px_per_m == pytest.approx(true_scale_px_per_m(cam, D, P), rel=5e-4)


def test_noise_clipping_is_measured_around_with_a_warning():
    """Photon noise on a bright page clips ~1 % of the chart (more than the 0.5 % that used to refuse the
    frame): the frame stays usable, its blur is right, and the problem line says what was clipped."""
    cam = PHONE_MODULE
    D = 0.5
    P = float(sweep_dioptres(D, 7)[1])
    img = sensor(cam, render_linear(cam, SPEC, D, P, roll_deg=-1.0), np.random.default_rng(5))
    m = measure_frame(img.astype(np.float32) / 255.0, SPEC)
    assert 0.005 < m.saturated_fraction < 0.03
    assert m.usable and not m.over_exposed
    assert "clipped" in m.problem and "measured around" in m.problem
    assert m.sigma_px == pytest.approx(true_sigma_px(cam, D, P), rel=0.02, abs=0.02)
    # the old limit would have refused this frame; a strict limit still can
    strict = measure_frame(img.astype(np.float32) / 255.0, SPEC, MeasureConfig(max_saturated_fraction=0.005))
    assert strict.over_exposed and not strict.usable


@pytest.fixture(scope="module")
def lens16_session(tmp_path_factory):
    return write_session(tmp_path_factory.mktemp("indep16") / "s", LENS_16MM, SPEC, [0.87, 1.30, 1.91], frames=13, seed=1)


@pytest.fixture(scope="module")
def phone_session(tmp_path_factory):
    return write_session(tmp_path_factory.mktemp("indep_phone") / "s", PHONE_MODULE, SPEC, [0.3, 0.5, 0.8], frames=7, seed=2)


def test_16mm_lens_sweeps_through_focus_and_fits(lens16_session):
    out = _recovery(LENS_16MM, lens16_session)
    sd = out["sd"]
    for sw in sd.sweeps:
        assert check_sweep(sw) == "", sw.name
        assert int(sw.valid.sum()) == sw.control.size
    _assert_targets(out["errs"])
    assert not out["fit"].dropped


def test_phone_module_with_noise_clipping_fits(phone_session):
    out = _recovery(PHONE_MODULE, phone_session)
    sd = out["sd"]
    sat = np.array([m.saturated_fraction for meas in sd.measurements for m in meas])
    assert np.all(sat > 0.003) and np.all(sat < 0.03), sat  # the issue's 0.8 %: noise on a white page
    assert all(m.usable for meas in sd.measurements for m in meas)
    assert any("clipped" in p for sw in sd.sweeps for p in sw.problems)
    _assert_targets(out["errs"])


def test_a_misread_end_frame_does_not_refuse_the_sweep():
    """One frame at the blurred end of a sweep read as sharp (what a failed measurement of a large blur
    looks like) made the sweep look as if it never passed through focus; the vee is fitted robustly."""
    cam = LENS_16MM
    rng = np.random.default_rng(3)
    sweeps = []
    for D in (0.87, 1.30, 1.91):
        P = sweep_dioptres(D, 13)
        k = np.array([true_scale_px_per_m(cam, D, x) for x in P]) * (1 + rng.normal(0, 1e-4, P.size))
        s = np.array([true_sigma_px(cam, D, x) for x in P]) + rng.normal(0, 0.01, P.size)
        s[-1] = 0.2  # the last (most blurred) frame misread as sharper than any other
        sweeps.append(Sweep(D, cam.control(P), k, s))
    for sw in sweeps:
        assert check_sweep(sw) == ""
    r = fit_lens(sweeps, cam.image_size, FitConfig())
    assert r.lens.f_number == pytest.approx(cam.f_number, rel=0.03)
    assert r.lens.focal_length_m == pytest.approx(cam.focal_length_m, rel=0.03)
    assert mapping_error_dpt(cam, r.lens.focus_control.a, r.lens.focus_control.b, np.concatenate([sw.control for sw in sweeps])) < 0.05
    # and a sweep that really never passes through focus is still refused
    D = 0.87
    P = np.linspace(1 / (2.5 * D), 0.9 / D, 9)
    k = np.array([true_scale_px_per_m(cam, D, x) for x in P])
    s = np.array([true_sigma_px(cam, D, x) for x in P])
    why = check_sweep(Sweep(D, cam.control(P), k, s))
    assert "never passes through focus" in why


def _check_issue_session(cam: TrueCamera, session: Path, tmp_path: Path) -> None:
    """The issue's check on one session: the `fit` command and the library both fit it, f, N and p within
    3 % and the focus mapping within 0.05 dioptre over the swept controls; every sweep passes through
    focus where the truth does, and every frame's blur (the large blur at the ends included) is read as
    rendered."""
    lens_cli = _fit_by_cli(session, tmp_path / "lens.json")
    out = _recovery(cam, session)
    sd = out["sd"]
    controls = np.concatenate([sw.control for sw in sd.sweeps])
    _assert_targets(_errors(cam, lens_cli, controls))
    _assert_targets(out["errs"])
    assert not out["fit"].dropped
    # the command line is the library: the same profile
    assert lens_cli.focal_length_m == pytest.approx(out["fit"].lens.focal_length_m, rel=1e-9)
    assert lens_cli.f_number == pytest.approx(out["fit"].lens.f_number, rel=1e-9)
    for sw in sd.sweeps:
        assert check_sweep(sw) == "", sw.name
        assert int(sw.valid.sum()) == sw.control.size == 17, sw.name
        truth = np.array([true_sigma_px(cam, sw.distance_m, float(cam.a * v + cam.b)) for v in sw.control])
        assert int(np.argmin(sw.sigma_px)) == int(np.argmin(truth)), (sw.name, np.round(sw.sigma_px, 2))
        assert 0 < int(np.argmin(sw.sigma_px)) < sw.control.size - 1
        np.testing.assert_array_less(np.abs(sw.sigma_px - truth), 0.03 * truth + 0.05)


def test_issue_16mm_session_exactly_fits_by_cli_and_library(tmp_path):
    """Issue 15's first session exactly: 16 mm f/1.4, 640x480 at 9.8 um, charts at 0.87, 1.30, 1.91 m, each
    swept from 0.45x to 2.5x its distance in 17 frames even in dioptres (disc blur up to 6.8 px sigma).
    It was refused as "the sweep never passes through focus (the sharpest frame is the last one)"."""
    session = write_session(tmp_path / "s", LENS_16MM, SPEC, [0.87, 1.30, 1.91], frames=17, seed=0)
    _check_issue_session(LENS_16MM, session, tmp_path)


@pytest.mark.slow
def test_issue_phone_module_session_17_frames_fits_by_cli_and_library(tmp_path):
    """Issue 15's second session at its 17 frames: 4.74 mm f/1.8 at 1280x960 (5 um), a bright page whose
    noise clips about 1 % of the chart (refused before: "measured in only 0 of 17 frames; over-exposed").
    About 2 minutes on one core (the 7-frame version above is the quick check)."""
    session = write_session(tmp_path / "s", PHONE_MODULE, SPEC, [0.3, 0.5, 0.8], frames=17, seed=0)
    _check_issue_session(PHONE_MODULE, session, tmp_path)
