"""The camera interface through the simulated camera: focus, settle, noise, breathing, scenes, lifetime."""

from __future__ import annotations

import math

import numpy as np
import pytest

from device.cameras import Camera, CameraClosedError, CameraError, Frame, open_camera
from device.cameras.simulated import SimulatedCamera, magnification
from model.lens import FocusControl, LensProfile


def _sharpness(img: np.ndarray) -> float:
    g = img.mean(axis=2)
    return float((np.diff(g, axis=0) ** 2).mean() + (np.diff(g, axis=1) ** 2).mean())


def _chart(h: int = 60, w: int = 80, depth_m: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    aif = np.repeat(rng.random((h, w, 1), dtype=np.float32), 3, axis=2)
    return aif, np.full((h, w), depth_m, np.float32)


def sim(**kw) -> SimulatedCamera:
    kw.setdefault("realtime", False)
    kw.setdefault("size", (80, 60))
    kw.setdefault("noise", (0.0, 0.0))
    kw.setdefault("bits", None)
    return open_camera("sim", **kw)  # type: ignore[return-value]


def test_open_camera_returns_a_camera_with_the_interface():
    with sim() as cam:
        assert isinstance(cam, Camera)
        lo, hi = cam.focus_range_dioptres
        assert lo == 0.0 and hi > 1.0
        cam.set_focus(1.0)
        cam.wait_settled()
        fr = cam.capture()
        assert isinstance(fr, Frame)
        assert fr.image.shape == (60, 80, 3) and fr.image.dtype == np.float32
        assert 0.0 <= fr.image.min() and fr.image.max() <= 1.0
        for key in ("focus_control", "focus_dioptres", "timestamp_ns", "host_time_ns", "exposure_time_us"):
            assert key in fr.metadata
        assert fr.metadata["focus_dioptres"] == pytest.approx(1.0)
        assert fr.focus_m == pytest.approx(1.0)
        assert fr.metadata["settled"] is True


def test_unknown_kind_and_options_are_rejected():
    with pytest.raises(ValueError, match="unknown camera kind"):
        open_camera("webcam")
    with pytest.raises(TypeError, match="unknown simulated-camera option"):
        open_camera("sim", realtime=False, colour="red")
    with pytest.raises(ValueError, match="fps"):
        open_camera("sim", realtime=False, fps=-1)


def test_focus_outside_range_raises_and_names_the_range():
    with sim() as cam:
        lo, hi = cam.focus_range_dioptres
        with pytest.raises(ValueError, match="outside"):
            cam.set_focus(hi + 1.0)
        with pytest.raises(ValueError):
            cam.set_focus(-0.5)
        with pytest.raises(TypeError):
            cam.set_focus("near")  # type: ignore[arg-type]
        cam.set_focus_distance(math.inf)
        assert cam.focus_dioptres == 0.0


def test_the_chart_is_sharpest_when_focused_at_its_distance():
    aif, depth = _chart(depth_m=2.0)
    with sim(scene=(aif, depth), breathing=False) as cam:
        s = {}
        for d in (0.8, 2.0, 6.0):
            cam.set_focus_distance(d)
            cam.wait_settled()
            s[d] = _sharpness(cam.capture().image)
    assert s[2.0] > 2 * s[0.8] and s[2.0] > 1.5 * s[6.0]


def test_set_scene_places_a_chart_at_a_new_distance():
    with sim(breathing=False) as cam:
        cam.set_scene(*_chart(depth_m=1.0))
        cam.set_focus_distance(1.0)
        cam.wait_settled()
        near_sharp = _sharpness(cam.capture().image)
        cam.set_scene(*_chart(depth_m=4.0))
        cam.wait_settled()
        far_blurred = _sharpness(cam.capture().image)
    assert near_sharp > 2 * far_blurred


def test_a_frame_taken_without_waiting_shows_the_lens_moving():
    with sim(slew_dpt_per_s=20.0, settle_time_s=0.05) as cam:
        cam.set_focus(0.0)
        cam.wait_settled()
        cam.capture()
        cam.set_focus(2.0)
        early = cam.capture()  # no wait: exposed while the lens travels
        assert early.metadata["settled"] is False
        assert abs(early.metadata["lens_dioptres_actual"] - 2.0) > 0.1
        cam.wait_settled()
        late = cam.capture()
        assert late.metadata["settled"] is True
        assert late.metadata["lens_dioptres_actual"] == pytest.approx(2.0, abs=0.01)
        assert late.timestamp_ns - early.timestamp_ns >= 0.1e9 - 1e6  # slew 2 dpt at 20 dpt/s


def test_noise_differs_between_frames_with_the_expected_size():
    aif = np.full((60, 80, 3), 0.5, np.float32)
    with sim(scene=(aif, np.full((60, 80), 3.0, np.float32)), noise=(0.0, 0.01), bits=None) as cam:
        cam.set_focus(0.3)
        cam.wait_settled()
        a, b = cam.capture().image, cam.capture().image
    assert not np.array_equal(a, b)
    assert float(np.std(a - b)) == pytest.approx(0.01 * math.sqrt(2), rel=0.1)


def test_breathing_magnifies_about_the_centre():
    h, w = 60, 80
    aif = np.zeros((h, w, 3), np.float32)
    aif[:, 10:12] = 1.0  # a bright line near the left edge
    with sim(scene=(aif, np.full((h, w), 1.0, np.float32)), size=(w, h), breathing=True) as cam:
        cam.set_focus(1.0)
        cam.wait_settled()
        img = cam.capture().image
    m = magnification(1.0, cam.optics)
    assert m > 1.0
    col = float(np.argmax(img[h // 2, :, 0] + img[h // 2, :, 1]))
    cx = (w - 1) / 2
    expected = cx + (10.5 - cx) * m
    assert col == pytest.approx(expected, abs=1.0)


def test_moving_objects_change_the_frames():
    with sim(moving_objects=2, object_speed_px_s=200.0, fps=30) as cam:
        cam.set_focus(0.5)
        cam.wait_settled()
        a = cam.capture().image
        for _ in range(5):
            b = cam.capture().image
        d0 = cam.depth_truth()
    assert np.abs(a - b).mean() > 1e-3
    assert d0.min() < cam.scene[1].min()  # the objects are in front of the static scene


def test_true_focus_mapping_can_differ_from_the_profile():
    lens = LensProfile(0.05, 8.0, 1.2e-5, image_size=(80, 60), focus_control=FocusControl(a=1.0, b=0.0))
    truth = FocusControl(a=0.8, b=0.1)
    with SimulatedCamera(lens=lens, true_focus_control=truth, realtime=False, size=(80, 60)) as cam:
        cam.set_focus_control(1.0)
        cam.wait_settled()
        fr = cam.capture()
    assert fr.metadata["focus_control"] == 1.0
    assert fr.metadata["lens_dioptres_actual"] == pytest.approx(0.9, abs=1e-3)


def test_close_is_idempotent_and_a_closed_camera_refuses_work():
    cam = sim()
    cam.close()
    cam.close()
    assert cam.closed
    with pytest.raises(CameraClosedError):
        cam.capture()
    with pytest.raises(CameraClosedError):
        cam.set_focus(1.0)
    assert issubclass(CameraClosedError, CameraError)


def test_fail_after_raises_a_camera_error():
    with sim(fail_after=2) as cam:
        cam.capture()
        cam.capture()
        with pytest.raises(CameraError, match="disconnected"):
            cam.capture()


def test_realtime_frames_arrive_at_the_frame_rate():
    """Real-time frames lie on the sensor's 10 ms grid and none is delivered before it was exposed.

    No upper bound on the gap: a loaded machine that captures late gets a later frame (a whole number
    of periods later), which is what a real sensor does too."""
    import time

    ts, back = [], []
    with open_camera("sim", size=(32, 24), fps=100, exposure_time_us=5000, noise=(0, 0), bits=None) as cam:
        for _ in range(4):
            ts.append(cam.capture().timestamp_ns)
            back.append(time.monotonic_ns())
    dts = np.diff(ts) / 1e6
    assert np.all(dts >= 10.0 - 1e-6)  # never faster than the frame rate
    assert np.allclose(dts / 10.0, np.round(dts / 10.0), atol=1e-6)  # whole frame periods
    assert all(t <= b for t, b in zip(ts, back))  # paced by the real clock: a frame exists once read out


def test_rgbd_scenes_load_from_skimage_and_from_a_stack_folder(tmp_path):
    from device.cameras.simulated import load_scene
    from model.formats import FocalStack, write_stack

    aif, depth = load_scene("motorcycle", (80, 60), (0.7, 10.0), np.random.default_rng(0))
    assert aif.shape == (60, 80, 3) and depth.shape == (60, 80)
    assert np.all(np.isfinite(depth)) and 1.0 < float(np.median(depth)) < 10.0  # Middlebury metric depth
    a2, d2 = _chart(60, 80, 3.0)
    lens = LensProfile(0.05, 8.0, 1.2e-5)
    write_stack(tmp_path / "s", FocalStack(images=a2[None], focus_m=np.array([3.0]), lens=lens, depth=d2, aif=a2))
    a3, d3 = load_scene(str(tmp_path / "s"), (80, 60), (0.7, 10.0), np.random.default_rng(0))
    assert np.allclose(d3, 3.0) and np.abs(a3 - a2).max() < 1 / 255 + 1e-6
    with pytest.raises(ValueError, match="procedural"):
        load_scene("nowhere", (80, 60), (0.7, 10.0), np.random.default_rng(0))
    with sim(scene="motorcycle") as cam:
        cam.set_focus_distance(2.0)
        cam.wait_settled()
        assert cam.capture().image.shape == (60, 80, 3)
