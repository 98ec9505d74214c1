"""The V4L2 backend (focus_absolute through control ioctls) against a fake UVC device."""

from __future__ import annotations

import ctypes

import pytest

import fake_hw
from device.cameras import CameraError, CameraNotFoundError, open_camera, v4l2


@pytest.fixture
def uvc(monkeypatch):
    dev = fake_hw.FakeV4L2Device("/dev/video0")
    caps: list[fake_hw.FakeV4L2Capture] = []

    def cap(path):
        c = fake_hw.FakeV4L2Capture(dev, path)
        caps.append(c)
        return c

    monkeypatch.setattr(v4l2, "_ioctl", dev.ioctl)
    monkeypatch.setattr(v4l2, "_open", dev.open)
    monkeypatch.setattr(v4l2, "_close", dev.close)
    monkeypatch.setattr(v4l2, "_video_capture", cap)
    dev.caps = caps
    return dev


def test_ioctl_numbers_and_struct_sizes_match_the_kernel():
    assert v4l2.VIDIOC_G_CTRL == 0xC008561B
    assert v4l2.VIDIOC_S_CTRL == 0xC008561C
    assert v4l2.VIDIOC_QUERYCTRL == 0xC0445624
    assert ctypes.sizeof(v4l2.v4l2_queryctrl) == 68 and ctypes.sizeof(v4l2.v4l2_control) == 8
    assert v4l2.CID["focus_absolute"] == 0x009A090A and v4l2.CID["focus_automatic_continuous"] == 0x009A090C


def test_open_disables_autofocus_and_maps_the_range(uvc):
    with open_camera("v4l2", device="/dev/video0", settle_time_s=0.0) as cam:
        assert uvc.value("focus_automatic_continuous") == 0
        assert cam.control_range == (0.0, 250.0)
        assert cam.focus_range_dioptres == (0.0, 10.0)
        cam.set_focus(4.0)  # 100 on the nominal mapping
        cam.wait_settled()
        fr = cam.capture()
        assert uvc.value("focus_absolute") == 100
        assert fr.image[0, 0, 0] == pytest.approx(200 / 255) and fr.image[0, 0, 2] == pytest.approx(100 / 255)
        assert fr.metadata["focus_control"] == 100 and fr.metadata["exposure_time_us"] == 31200
        assert uvc.caps[-1].grabs == 2
    assert uvc.open_count == 0


def test_commands_snap_to_the_control_step(uvc):
    with open_camera("v4l2", settle_time_s=0.0) as cam:
        cam.set_focus_control(52)
        assert uvc.value("focus_absolute") == 50 and cam.control_value == 50
        with pytest.raises(ValueError):
            cam.set_focus_control(300)


def test_lock_exposure_goes_manual_and_close_restores_auto(uvc):
    cam = open_camera("v4l2", settle_time_s=0.0)
    locked = cam.lock_exposure()
    assert uvc.value("auto_exposure") == 1 and uvc.value("auto_white_balance") == 0
    assert locked["exposure_time_us"] == 31200 and locked["white_balance_temperature"] == 4600
    cam.close()
    assert uvc.value("auto_exposure") == 3 and uvc.value("auto_white_balance") == 1
    cam.close()


def test_camera_without_focus_is_refused(monkeypatch):
    dev = fake_hw.FakeV4L2Device("/dev/video0", with_focus=False)
    monkeypatch.setattr(v4l2, "_ioctl", dev.ioctl)
    monkeypatch.setattr(v4l2, "_open", dev.open)
    monkeypatch.setattr(v4l2, "_close", dev.close)
    with pytest.raises(CameraNotFoundError, match="no focus_absolute"):
        open_camera("v4l2")
    assert dev.open_count == 0
    with pytest.raises(CameraNotFoundError, match="cannot open /dev/video5"):
        open_camera("v4l2", device=5)


def test_unplugged_camera_raises_camera_error(uvc):
    with open_camera("v4l2", settle_time_s=0.0) as cam:
        uvc.caps[-1].unplugged = True
        with pytest.raises(CameraError, match="unplugged"):
            cam.capture()
