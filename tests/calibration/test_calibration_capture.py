"""The capture loop against simulated cameras: settle time, preview checks, sweeps and their refusals."""

import numpy as np
import pytest

from calibration.camera_protocol import CalibrationCamera, sweep_axis
from calibration.capture import CaptureConfig, measure_settle, preview, capture_sweep
from calibration.chart import default_chart
from calibration.simulate import ChartSimCamera, SimOptions, default_sim_lens

SPEC = default_chart()
SMALL = default_sim_lens((400, 225))


def _cam(**kw):
    kw.setdefault("lens", SMALL)
    return ChartSimCamera(**kw)


def test_chart_sim_is_a_calibration_camera():
    with _cam() as cam:
        assert isinstance(cam, CalibrationCamera)
        assert sweep_axis(cam) == ("control", 0.0, 10.0)
        f = cam.capture()
        assert f.image.shape == (225, 400, 3) and f.image.dtype == np.float32
        assert f.metadata["focus_control"] is None and "timestamp_ns" in f.metadata
    assert cam.closed


@pytest.mark.parametrize("slew,expected", [(1.6, 7), (3.0, 4), (20.0, 1)])
def test_settle_time_matches_the_actuator(slew, expected):
    """A full 10-unit move at `slew` units per frame, starting half a frame after the command: the
    first frame after the command still shows the old position, the lens arrives ceil(10/slew) frames
    later."""
    with _cam(slew_per_frame=slew, distance_m=0.35) as cam:
        r = measure_settle(cam)
    assert r.settle_frames == expected
    assert r.frame_interval_s == pytest.approx(1 / 30)
    assert r.settle_time_s == pytest.approx(expected / 30)
    assert len(r.changes) == 2 and r.changes[0][0] > 10 * r.noise


def test_preview_finds_the_chart_and_flags_problems():
    with _cam(distance_m=0.35) as cam:
        good = preview(cam, SPEC, distance_m=0.35)
        assert good.ok and good.measurement.found
    with _cam(distance_m=0.35, options=SimOptions(white=1.8)) as cam:
        bright = preview(cam, SPEC)
        assert not bright.ok and "over-exposed" in bright.problems[0]
    with _cam(distance_m=0.35, motion_px_per_frame=2.0) as cam:
        moving = preview(cam, SPEC)
        assert not moving.ok and "moved" in moving.problems[0]
    with _cam(distance_m=0.35, offset_m=(0.3, 0.0)) as cam:
        away = preview(cam, SPEC)
        assert not away.ok and "not found" in away.problems[0]


def test_sweep_is_accepted_and_measured():
    with _cam(distance_m=0.35) as cam:
        settle = measure_settle(cam).settle_frames
        cap = capture_sweep(cam, SPEC, 0.35, CaptureConfig(frames=8), settle_frames=settle, progress=False)
    assert cap.ok, cap.problems
    assert cap.images.shape == (8, 225, 400, 3)
    np.testing.assert_allclose(cap.controls, np.linspace(0, 10, 8))
    sw = cap.sweep()
    assert sw.valid.all()
    # sharpest near the true focus crossing: a v + b = 1/D
    v0 = (1 / 0.35 - SMALL.focus_control.b) / SMALL.focus_control.a
    assert abs(sw.control[np.argmin(sw.sigma_px)] - v0) < 10 / 7


def test_sweep_without_settle_frames_sees_a_moving_lens():
    """Skipping the measured settle frames: frames show the lens on its way, the blur curve is
    wrong, and the sweep starting frame taken again does not match."""
    with _cam(distance_m=0.35, slew_per_frame=0.8) as cam:
        cap = capture_sweep(cam, SPEC, 0.35, CaptureConfig(frames=8, settle_frames=0), progress=False)
        good = capture_sweep(cam, SPEC, 0.35, CaptureConfig(frames=8), settle_frames=measure_settle(cam).settle_frames, progress=False)
    assert not np.allclose(cap.sweep().sigma_px, good.sweep().sigma_px, atol=0.05)


def test_sweep_refusals():
    with _cam(distance_m=6.0) as cam:  # 0.17 dioptres: the sweep never passes through focus
        far = capture_sweep(cam, SPEC, 6.0, CaptureConfig(frames=8), progress=False)
    assert not far.ok and any("never passes through focus" in p or "not found" in p or "hardly changes" in p for p in far.problems)
    with _cam(distance_m=0.35, motion_px_per_frame=0.5) as cam:
        moved = capture_sweep(cam, SPEC, 0.35, CaptureConfig(frames=8), progress=False)
    assert not moved.ok and any("moved" in p or "wandered" in p for p in moved.problems)


def test_device_simulated_camera_works_through_the_protocol():
    """The device package's simulated camera (if present) satisfies the protocol and is swept in raw
    control values; its scene is the chart at a distance."""
    cameras = pytest.importorskip("device.cameras")
    from calibration.measure import MeasureConfig
    from calibration.simulate import chart_scene

    truth = default_sim_lens((400, 225))
    cam = cameras.open_camera("sim", lens=None, true_lens=truth, true_focus_control=truth.focus_control,
                              scene=chart_scene(SPEC, truth, 0.35, (400, 225)), realtime=False, size=(400, 225),
                              control_range=(0.0, 10.0))
    with cam:
        assert isinstance(cam, CalibrationCamera)
        assert sweep_axis(cam)[0] == "control"
        settle = measure_settle(cam)
        assert settle.settle_frames >= 1
        cap = capture_sweep(cam, SPEC, 0.35, CaptureConfig(frames=8, measure=MeasureConfig(gamma="linear")),
                            settle_frames=settle.settle_frames, progress=False)
    assert cap.ok, cap.problems
    assert cap.controls[0] == 0.0 and cap.controls[-1] == 10.0
