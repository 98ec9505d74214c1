"""The picamera2 backend against a faithful fake of picamera2/libcamera (see fake_hw.py)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import fake_hw
from device.cameras import CameraClosedError, CameraError, CameraNotFoundError, open_camera
from model.lens import FocusControl, LensProfile


@pytest.fixture
def fake_pi(monkeypatch):
    import device.cameras.base as base_mod
    import device.cameras.pi as pi_mod

    clock = fake_hw.VirtualClock()  # frame timing follows the code's own waits, not the machine's speed
    for mod in (fake_hw, base_mod, pi_mod):
        monkeypatch.setattr(mod, "time", clock)
    monkeypatch.setitem(sys.modules, "picamera2", fake_hw.make_picamera2_module())
    monkeypatch.setitem(sys.modules, "libcamera", fake_hw.make_libcamera_module())
    fake_hw.FakePicamera2.instances.clear()
    monkeypatch.setattr(fake_hw.FakePicamera2, "n_cameras", 1)
    yield fake_hw.FakePicamera2


def test_open_configures_manual_focus_and_reports_the_lens_range(fake_pi):
    with open_camera("picamera2", size=(64, 48)) as cam:
        hw = fake_pi.instances[-1]
        assert hw.started and hw.config["main"] == {"size": (64, 48), "format": "RGB888"}
        assert hw.controls["AfMode"] == fake_hw.AfModeEnum.Manual
        assert cam.control_range == (0.0, 15.0)
        assert cam.focus_range_dioptres == (0.0, 15.0)  # LensPosition is already dioptres
        assert cam.image_size == (64, 48)
    assert hw.closed and not hw.started


def test_capture_converts_bgr_bytes_to_rgb_floats_and_releases_the_request(fake_pi):
    with open_camera("picamera2", size=(32, 24)) as cam:
        fr = cam.capture()
        hw = fake_pi.instances[-1]
        assert hw.outstanding == 0
    assert fr.image.shape == (24, 32, 3) and fr.image.dtype == np.float32
    assert fr.image[0, 0, 0] == pytest.approx(200 / 255) and fr.image[0, 0, 1] == pytest.approx(100 / 255)
    md = fr.metadata
    assert md["timestamp_ns"] > 0 and md["exposure_time_us"] > 0 and md["analogue_gain"] > 0
    assert md["exposure_start_ns"] == md["timestamp_ns"] - 1000 * int(md["exposure_time_us"])


def test_settled_frame_was_exposed_after_the_lens_arrived(fake_pi):
    with open_camera("picamera2", size=(16, 16), settle_time_s=0.01) as cam:
        hw = fake_pi.instances[-1]
        cam.set_focus(1.0)
        cam.wait_settled()
        cam.capture()
        cam.set_focus(7.0)  # 6 dioptres: four frames of slew at 1.5 dpt/frame
        unsettled = cam.capture()  # a queued frame, exposed before the move
        cam.wait_settled()
        settled = cam.capture()
    assert hw.flush_calls[-1] is not None and hw.flush_calls[-2] is None
    # metadata LensPosition is the commanded value even on the frame exposed before the move
    assert unsettled.metadata["lens_position_metadata"] == 7.0
    assert unsettled.image[0, 0, 2] * 15.0 < 6.0  # the blue channel encodes the actual position
    assert settled.image[0, 0, 2] * 15.0 == pytest.approx(7.0, abs=0.1)
    assert settled.metadata["settled"] is True and unsettled.metadata["settled"] is False
    assert settled.metadata["focus_dioptres"] == 7.0


def test_lock_exposure_freezes_exposure_gain_and_colour_gains(fake_pi):
    with open_camera("picamera2", size=(16, 16)) as cam:
        before = {cam.capture().metadata["exposure_time_us"] for _ in range(8)}
        locked = cam.lock_exposure()
        after = [cam.capture().metadata for _ in range(8)]
        hw = fake_pi.instances[-1]
        assert hw.controls["AeEnable"] is False and hw.controls["AwbEnable"] is False
    assert len(before) > 1  # auto exposure was moving
    assert {m["exposure_time_us"] for m in after} == {locked["exposure_time_us"]}
    assert {m["analogue_gain"] for m in after} == {locked["analogue_gain"]}
    assert {tuple(m["colour_gains"]) for m in after} == {tuple(locked["colour_gains"])}


def test_lens_profile_mapping_is_used_for_dioptres(fake_pi):
    lens = LensProfile(0.00474, 1.8, 1.4e-6, focus_control=FocusControl(a=0.5, b=0.25))
    with open_camera("picamera2", lens=lens, size=(16, 16)) as cam:
        assert cam.focus_range_dioptres == (0.25, 7.75)
        cam.set_focus(2.25)  # (2.25 - 0.25) / 0.5 = 4.0
        assert fake_pi.instances[-1].controls["LensPosition"] == 4.0


def test_missing_camera_or_module_is_a_clear_not_found(fake_pi, monkeypatch):
    monkeypatch.setattr(fake_hw.FakePicamera2, "n_cameras", 1)
    with pytest.raises(CameraNotFoundError, match="no Raspberry Pi camera 3"):
        open_camera("picamera2", camera_num=3)
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(CameraNotFoundError, match="apt install python3-picamera2"):
        open_camera("picamera2")


def test_camera_without_lens_control_is_refused(fake_pi, monkeypatch):
    orig = fake_hw.FakePicamera2.__init__

    def no_af(self, camera_num=0, tuning=None):
        orig(self, camera_num, tuning)
        del self.camera_controls["LensPosition"]

    monkeypatch.setattr(fake_hw.FakePicamera2, "__init__", no_af)
    with pytest.raises(CameraNotFoundError, match="no motorised focus"):
        open_camera("picamera2")
    assert fake_pi.instances[-1].closed


def test_unknown_option_and_bad_format(fake_pi):
    with pytest.raises(TypeError, match="unknown picamera2 option"):
        open_camera("picamera2", shutter=1)
    with pytest.raises(ValueError, match="format"):
        open_camera("picamera2", format="YUV420")


def test_runtime_failure_becomes_camera_error_and_close_is_idempotent(fake_pi):
    cam = open_camera("picamera2", size=(16, 16))
    fake_pi.instances[-1].close()  # the camera vanished underneath
    with pytest.raises(CameraError):
        cam.capture()
    cam.close()
    cam.close()
    with pytest.raises(CameraClosedError):
        cam.capture()
