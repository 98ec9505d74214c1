"""The pure fitter on measurements made from a known lens (the truth computed by the simulator's own
formulas, which go through model.optics, not through the fitter's model)."""

import math

import numpy as np
import pytest

from calibration.fit import (
    CalibrationError,
    FitConfig,
    LensGuess,
    Sweep,
    check_sweep,
    fit_lens,
    initial_guess,
    model_scale_px_per_m,
    model_sigma_px,
    suggest_distances,
)
from calibration.simulate import default_sim_lens, defocus_sigma_px, image_scale_px_per_m, sensor_distance_m
from model.lens import FocusControl, LensProfile
from model.optics import coc_sigma_px

TRUTH = LensProfile(6e-3, 1.4, 7.5e-6, image_size=(480, 360), focus_control=FocusControl(a=0.93, b=0.15))
CONTROLS = np.linspace(0.0, 5.0, 14)


def _sweep(lens, distance, controls=CONTROLS, rng=None, sigma0=0.5, scale_noise=1.5e-4, blur_noise=0.008, offset=0.0):
    k = np.array([image_scale_px_per_m(lens, v, distance + offset) for v in controls])
    s = np.array([math.hypot(defocus_sigma_px(lens, v, distance + offset), sigma0) for v in controls])
    if rng is not None:
        k = k * (1 + rng.normal(0, scale_noise, k.size))
        s = s + rng.normal(0, blur_noise * (1 + 0.5 * s))
    return Sweep(distance, controls, k, s)


def _theta(lens, sigma0=0.5, delta=0.0):
    return np.array([lens.focal_length_m, lens.f_number, lens.pixel_pitch_m, lens.focus_control.a, lens.focus_control.b, sigma0, delta])


def test_model_is_the_thin_lens_of_formats_md():
    """sigma = A s |1/d_f - 1/D| / (4p) equals model.optics' c/(4p) with c = A f |D - d_f| / (D (d_f - f)),
    and the scale is s/(D p) with s = f d_f / (d_f - f)."""
    lens = default_sim_lens()
    th = _theta(lens, sigma0=0.0)
    v = np.array([0.5, 2.0, 7.0])
    for D in (0.3, 0.8):
        d_f = 1.0 / (lens.focus_control.a * v + lens.focus_control.b)
        np.testing.assert_allclose(model_sigma_px(th, v, D), coc_sigma_px(D, d_f, lens), rtol=1e-10)
        s = lens.focal_length_m * d_f / (d_f - lens.focal_length_m)
        np.testing.assert_allclose(model_scale_px_per_m(th, v, D), s / (D * lens.pixel_pitch_m), rtol=1e-10)
        np.testing.assert_allclose([sensor_distance_m(lens, x) for x in v], s, rtol=1e-10)


@pytest.mark.parametrize("distances", [(0.4, 0.8), (0.35, 0.55, 1.0)])
def test_recovers_the_lens_from_noisy_measurements(distances):
    rng = np.random.default_rng(1)
    r = fit_lens([_sweep(TRUTH, d, rng=rng) for d in distances], (480, 360))
    L = r.lens
    assert L.focal_length_m == pytest.approx(TRUTH.focal_length_m, rel=0.02)
    assert L.f_number == pytest.approx(TRUTH.f_number, rel=0.02)
    assert L.pixel_pitch_m == pytest.approx(TRUTH.pixel_pitch_m, rel=0.02)
    dpt_true = TRUTH.focus_control.a * CONTROLS + TRUTH.focus_control.b
    dpt_fit = L.focus_control.a * CONTROLS + L.focus_control.b
    assert np.max(np.abs(dpt_fit - dpt_true)) < 0.05
    # the reported uncertainties are honest (within 4 sigma) and small
    for key, true in (("f_m", TRUTH.focal_length_m), ("N", TRUTH.f_number), ("p_m", TRUTH.pixel_pitch_m)):
        assert abs(r.params[key] - true) < 4 * r.stderr[key] + 1e-3 * true
        assert r.stderr[key] < 0.02 * true
    assert r.params["sigma0_px"] == pytest.approx(0.5, abs=0.05)
    assert L.fit["samples"] == 14 * len(distances) and L.image_size == (480, 360)
    assert L.focus_control.control == "LensPosition"
    assert "focal length" in r.summary()


def test_exact_measurements_give_the_exact_lens():
    r = fit_lens([_sweep(TRUTH, d) for d in (0.4, 0.7, 1.2)], (480, 360), FitConfig(fit_distance_offset=False))
    assert r.lens.focal_length_m == pytest.approx(TRUTH.focal_length_m, rel=1e-5)
    assert r.lens.f_number == pytest.approx(TRUTH.f_number, rel=1e-5)
    assert r.lens.pixel_pitch_m == pytest.approx(TRUTH.pixel_pitch_m, rel=1e-5)
    assert r.lens.focus_control.a == pytest.approx(0.93, rel=1e-5)
    assert r.lens.focus_control.b == pytest.approx(0.15, abs=1e-5)


def test_a_common_distance_offset_is_found():
    """The tape was held 6 mm in front of the lens: every distance reads 6 mm short."""
    sweeps = [_sweep(TRUTH, d, offset=0.006) for d in (0.4, 0.7, 1.2)]
    with_offset = fit_lens(sweeps, (480, 360))
    assert with_offset.params["delta_m"] == pytest.approx(0.006, abs=2e-4)
    assert with_offset.lens.focal_length_m == pytest.approx(TRUTH.focal_length_m, rel=2e-3)
    without = fit_lens(sweeps, (480, 360), FitConfig(fit_distance_offset=False))
    assert abs(without.lens.focus_control.b - 0.15) > 5 * abs(with_offset.lens.focus_control.b - 0.15)


def test_outlier_frames_do_not_pull_the_fit():
    rng = np.random.default_rng(2)
    sweeps = [_sweep(TRUTH, d, rng=rng) for d in (0.4, 0.7, 1.2)]
    bad = sweeps[1].sigma_px.copy()
    bad[3] += 1.5  # a frame exposed while the lens still moved
    sweeps[1] = Sweep(0.7, CONTROLS, sweeps[1].scale_px_per_m, bad)
    r = fit_lens(sweeps, (480, 360))
    assert r.lens.f_number == pytest.approx(TRUTH.f_number, rel=0.02)
    assert not r.inlier[1][3] and r.inlier[1].sum() >= 12


def test_initial_guess_is_close():
    sweeps = [_sweep(TRUTH, d) for d in (0.4, 0.7, 1.2)]
    th = initial_guess(sweeps, [s.valid for s in sweeps])
    np.testing.assert_allclose(th[:5], _theta(TRUTH)[:5], rtol=0.05, atol=0.02)


# ----------------------------------------------------------------------------- refusals


def test_one_distance_is_refused_with_what_to_capture_next():
    with pytest.raises(CalibrationError, match=r"(?s)1 usable distance \(0.5 m\).*at least 2.*Capture next: the chart at about"):
        fit_lens([_sweep(TRUTH, 0.5)], (480, 360), focus_range_dioptres=(0.0, 5.0))


def test_chart_never_found_is_refused():
    lost = Sweep(0.9, CONTROLS, np.full(CONTROLS.size, np.nan), np.full(CONTROLS.size, np.nan),
                 problems=("chart not found: all 6 squares must be in view",))
    with pytest.raises(CalibrationError, match=r"(?s)0\.9.*measured in only 0 of 14 frames; e.g. chart not found.*Capture next"):
        fit_lens([_sweep(TRUTH, 0.5), lost], (480, 360))


def test_sweep_that_never_passes_through_focus_is_refused():
    # chart at 0.15 m (6.7 dioptres) is nearer than the sweep reaches (at most 4.8 dioptres)
    near = _sweep(TRUTH, 0.15)
    why = check_sweep(near)
    assert "never passes through focus" in why and "last" in why
    with pytest.raises(CalibrationError, match="never passes through focus"):
        fit_lens([_sweep(TRUTH, 0.5), near], (480, 360))


def test_distances_too_close_together_are_refused():
    with pytest.raises(CalibrationError, match="too close together"):
        fit_lens([_sweep(TRUTH, 0.5), _sweep(TRUTH, 0.55)], (480, 360))


def test_no_sweeps():
    with pytest.raises(CalibrationError, match="two or more distances"):
        fit_lens([], (480, 360))


def test_guess_far_off_gives_a_warning():
    r = fit_lens([_sweep(TRUTH, d) for d in (0.4, 0.8)], (480, 360), guess=LensGuess(focal_length_m=4e-3, name="module X"))
    assert any("module X" in w and "focal length" in w for w in r.warnings)


def test_sweep_validation():
    with pytest.raises(ValueError, match="distance_m"):
        Sweep(-1.0, CONTROLS, CONTROLS, CONTROLS)
    with pytest.raises(ValueError, match="sigma_px"):
        Sweep(0.5, CONTROLS, CONTROLS, CONTROLS[:3])


def test_suggestions_avoid_what_is_captured():
    out = suggest_distances([0.5], (0.0, 10.0), 2)
    assert all(abs(1 / d - 2.0) > 1.0 for d in out)
    assert all(0.1 < d < 3.0 for d in out)
