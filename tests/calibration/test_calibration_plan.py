"""The sweep plan in the calibration tools: the wizard's --range and the text/plot helpers."""

import pytest

from calibration.plan import format_plan, plot_plan
from calibration.wizard import main
from model.lens import FocusControl, LensProfile
from model.sweep_plan import plan_focus_distances


def _run(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_wizard_range_prints_the_plan_after_the_fit(tmp_path, capsys):
    truth = LensProfile(6e-3, 1.4, 11.2e-6, name="truth", image_size=(320, 240), focus_control=FocusControl(a=0.93, b=0.15))
    truth.save(tmp_path / "truth.json")
    session = tmp_path / "s"
    code, out, err = _run(["--camera", "chart-sim", "--sim-lens", str(tmp_path / "truth.json"), "--sim-size", "320x240",
                           "--frames", "10", "--non-interactive", "--distances", "0.45", "0.65", "--out", str(session),
                           "--range", "0.4", "2.0", "--plan-frames", "4"], capsys)
    assert code == 0, err
    assert out.index("profile:") < out.index("sweep plan: 4 frames for 0.4-2 m")
    assert "expected depth uncertainty" in out
    # the control values are those of the fitted mapping (close to the truth's)
    lens = LensProfile.load(session / "lens.json")
    plan = plan_focus_distances(lens, 0.4, 2.0, 4)
    for v in plan.control_values:
        assert f"{v:14.5g}" in out
    assert (session / "plan.png").read_bytes()[:4] == b"\x89PNG"


def test_wizard_range_is_checked_before_capturing(tmp_path, capsys):
    code, out, err = _run(["--camera", "chart-sim", "--non-interactive", "--distances", "0.45", "0.9",
                           "--out", str(tmp_path / "s"), "--range", "2", "1"], capsys)
    assert code == 2 and "--range" in err and not (tmp_path / "s").exists()


def test_format_and_plot(tmp_path):
    lens = LensProfile(4.74e-3, 1.8, 1.008e-5, image_size=(640, 480), focus_control=FocusControl())
    plan = plan_focus_distances(lens, 2.0, 10.0, 5, noise_px=0.05)
    text = format_plan(plan)
    assert "blur noise 0.05 px" in text and "unresolved" in text and text.count("\nwarning: ") == 1
    assert "LensPosition" in text
    p = plot_plan(plan, tmp_path / "plan.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ok = plan_focus_distances(LensProfile(16e-3, 1.4, 9.8e-6), 0.5, 2.0, 5)
    assert "depth is resolved" in format_plan(ok) and "warning" not in format_plan(ok)
