"""model.sweep_plan: focus distances from the lens, and the depth uncertainty they give."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model.lens import FocusControl, LensProfile
from model.optics import coc_sigma_px, working_range_m
from model.sweep_plan import PlanNoise, depth_uncertainty_m, sigma_per_dioptre_px, plan_focus_distances

REPO = Path(__file__).resolve().parents[2]
# a Camera-Module-3-like module binned to 640x480 (~0.3 px per dioptre) and a lens with plenty of blur
CM3_640 = LensProfile(4.74e-3, 1.8, 1.4e-6 * 4608 / 640, name="cm3-640", image_size=(640, 480),
                      focus_control=FocusControl(a=1.03, b=-0.05))
WIDE = LensProfile(16e-3, 1.4, 9.8e-6, name="16mm", image_size=(640, 480))


def test_blur_per_dioptre_is_model_optics():
    for fm in (0.3, 1.0, 4.0):
        k = sigma_per_dioptre_px(CM3_640, fm)
        # exactly linear in dioptres of defocus, on both sides of focus
        for dpt in (0.25, 2.0):
            assert coc_sigma_px(1 / (1 / fm + dpt), fm, CM3_640) == pytest.approx(k * dpt, rel=1e-9)
        f, n, p = CM3_640.focal_length_m, CM3_640.f_number, CM3_640.pixel_pitch_m
        assert k == pytest.approx((f / n) * f * fm / (4 * p * (fm - f)), rel=1e-9)  # K_i of the issue
    assert float(sigma_per_dioptre_px(CM3_640, 1.0)) == pytest.approx(0.31, abs=0.02)


@pytest.mark.parametrize("lens,near,far", [(CM3_640, 0.1, 1.0), (WIDE, 0.5, 3.0), (WIDE, 1.0, 6.0)])
@pytest.mark.parametrize("frames", [2, 5, 8])
def test_plan_is_sorted_distinct_within_range(lens, near, far, frames):
    plan = plan_focus_distances(lens, near, far, frames)
    fm = plan.focus_m
    assert fm.shape == (frames,)
    assert np.all(np.diff(fm) > 0), fm
    assert fm.min() >= near - 1e-12 and fm.max() <= far + 1e-12
    # the depth model's working range for these focus distances holds the whole range
    wn, wf = working_range_m(list(fm), lens)
    assert wn <= near * (1 + 1e-9) and wf >= far * (1 - 1e-9)
    assert np.all(np.diff(plan.depth_grid_m) > 0)
    assert plan.depth_grid_m[0] == pytest.approx(near) and plan.depth_grid_m[-1] == pytest.approx(far)
    np.testing.assert_allclose(plan.depth_std_m, depth_uncertainty_m(lens, fm, plan.depth_grid_m, plan.noise))
    # the plan is no worse than the even spacings it is compared with, where they hold the range too
    even = {"dpt": 1.0 / np.linspace(1 / near, 1 / far, 2 * frames + 1)[1::2], "m": np.linspace(near, far, 2 * frames + 1)[1::2]}
    for key, err in (("dpt", plan.even_dioptre_rel_err), ("m", plan.even_metre_rel_err)):
        en, ef = working_range_m(list(even[key]), lens)
        if en <= near * (1 + 1e-9) and ef >= far * (1 - 1e-9):
            assert plan.rms_rel_err <= err * (1 + 1e-9), key


def test_control_values_come_from_the_profile_mapping():
    plan = plan_focus_distances(CM3_640, 0.1, 1.0, 5)
    assert plan.control_name == "LensPosition"
    fc = CM3_640.focus_control
    np.testing.assert_allclose(fc.a * plan.control_values + fc.b, 1.0 / plan.focus_m, rtol=1e-12)
    assert plan_focus_distances(WIDE, 0.5, 3.0, 4).control_values is None


def test_more_frames_lower_uncertainty():
    errs = [plan_focus_distances(WIDE, 0.5, 4.0, s).rms_rel_err for s in (2, 3, 5, 8, 12)]
    assert all(b < a for a, b in zip(errs, errs[1:])), errs
    # and pointwise: adding a frame to a set never raises the uncertainty anywhere
    d = np.linspace(0.5, 4.0, 50)
    base = depth_uncertainty_m(WIDE, [0.6, 1.5, 3.5], d)
    more = depth_uncertainty_m(WIDE, [0.6, 1.5, 2.2, 3.5], d)
    assert np.all(more <= base + 1e-15)


def test_noise_level_scales_the_uncertainty():
    quiet = plan_focus_distances(WIDE, 0.5, 3.0, 5, noise_px=0.05)
    loud = plan_focus_distances(WIDE, 0.5, 3.0, 5, noise_px=0.2)
    assert loud.noise.noise_px == 0.2
    assert loud.rms_rel_err > 1.5 * quiet.rms_rel_err


def test_warns_when_the_lens_cannot_resolve_the_range():
    """A Camera-Module-3-like lens at 640x480 for 2-10 m: about 0.3 px per dioptre, hopeless."""
    plan = plan_focus_distances(CM3_640, 2.0, 10.0, 5)
    assert plan.unresolved_m and plan.unresolved_m[0][0] == pytest.approx(2.0) and plan.unresolved_m[-1][1] == pytest.approx(10.0)
    assert len(plan.warnings) == 1
    w = plan.warnings[0]
    for what in ("cannot tell depths apart", "640x480", "higher resolution", "closer range", "wider aperture"):
        assert what in w, w
    # the same lens close up is fine; the 16 mm lens resolves 0.5-3 m
    assert not plan_focus_distances(CM3_640, 0.1, 0.2, 5).warnings
    good = plan_focus_distances(WIDE, 0.5, 3.0, 5)
    assert not good.warnings and not good.unresolved_m
    assert np.all(good.rel_std < 0.1)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(near_m=0.0, far_m=2.0, frames=5), "positive"),
        (dict(near_m=-1.0, far_m=2.0, frames=5), "positive"),
        (dict(near_m=2.0, far_m=1.0, frames=5), "beyond its near end"),
        (dict(near_m=1.0, far_m=1.0, frames=5), "beyond its near end"),
        (dict(near_m=1.0, far_m=math.inf, frames=5), "finite"),
        (dict(near_m=math.nan, far_m=2.0, frames=5), "finite"),
        (dict(near_m=0.005, far_m=2.0, frames=5), "focal length"),
        (dict(near_m=0.5, far_m=2.0, frames=1), "between 2 and 64"),
        (dict(near_m=0.5, far_m=2.0, frames=100), "between 2 and 64"),
        (dict(near_m=0.5, far_m=2.0, frames=2.5), "whole number"),
        (dict(near_m="0.5", far_m=2.0, frames=5), "number"),
        (dict(near_m=0.5, far_m=2.0, frames=5, noise_px=0.0), "noise_px"),
        (dict(near_m=0.5, far_m=2.0, frames=5, noise_px=-1.0), "noise_px"),
    ],
)
def test_bad_inputs_give_a_clear_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plan_focus_distances(WIDE, **kwargs)


def test_noise_model_validation():
    with pytest.raises(ValueError, match="rel_noise"):
        PlanNoise(rel_noise=-0.1)
    with pytest.raises(ValueError, match="depth_m"):
        depth_uncertainty_m(WIDE, [1.0, 2.0], [0.01])


def test_plan_command(tmp_path):
    lens = tmp_path / "lens.json"
    CM3_640.save(lens)
    png = tmp_path / "plan.png"
    proc = subprocess.run([sys.executable, "-m", "calibration", "plan", "--lens", str(lens), "--range", "2", "10",
                           "--frames", "5", "--plot", str(png)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "LensPosition" in proc.stdout and "expected depth uncertainty" in proc.stdout
    assert "warning: the lens cannot tell depths apart" in proc.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    proc = subprocess.run([sys.executable, "-m", "calibration", "plan", "--lens", str(lens), "--range", "0.1", "0.3",
                           "--frames", "4", "--json"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert len(d["focus_m"]) == 4 and len(d["control_values"]) == 4 and d["range_m"] == [0.1, 0.3]
    bad = subprocess.run([sys.executable, "-m", "calibration", "plan", "--lens", str(lens), "--range", "3", "1"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "near end" in bad.stderr
