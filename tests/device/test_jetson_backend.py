"""The Jetson backend (VCM over I2C with smbus2, frames from GStreamer) against faithful fakes."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import fake_hw
from device.cameras import CameraError, CameraNotFoundError, jetson, open_camera
from device.cameras.vcm import AK7375, DW9714, DW9807, make_driver


@pytest.fixture
def bus(monkeypatch):
    monkeypatch.setitem(sys.modules, "smbus2", fake_hw.make_smbus2_module())
    fake_hw.FAKE_BUSES.clear()
    yield fake_hw.FAKE_BUSES
    fake_hw.FAKE_BUSES.clear()


@pytest.fixture
def gst(monkeypatch):
    made: list[fake_hw.FakeGstCapture] = []

    def factory(pipeline):
        chip = next((c for devs in fake_hw.FAKE_BUSES.values() for c in devs.values()), None)
        cap = fake_hw.FakeGstCapture(pipeline, chip)
        made.append(cap)
        return cap

    monkeypatch.setattr(jetson, "_video_capture", factory)
    return made


@pytest.mark.parametrize("cls,fake,code", [(DW9714, fake_hw.FakeDW9714, 613), (DW9807, fake_hw.FakeDW9807, 1023),
                                           (AK7375, fake_hw.FakeAK7375, 2748)])
def test_register_layouts_round_trip(bus, cls, fake, code):
    chip = fake()
    bus[1] = {0x0C: chip}
    smbus = sys.modules["smbus2"].SMBus(1)
    drv = cls(smbus)
    drv.power_up()
    assert chip.powered
    drv.write_code(code)
    assert chip.code == code
    assert drv.read_code() == code
    drv.power_down()
    assert not chip.powered
    with pytest.raises(ValueError):
        drv.write_code(drv.max_code + 1)


def test_register_bytes_match_the_datasheet_layouts(bus):
    dw, ak, d7 = fake_hw.FakeDW9714(), fake_hw.FakeAK7375(), fake_hw.FakeDW9807()
    bus[1] = {0x0C: dw}
    bus[2] = {0x0C: ak}
    bus[3] = {0x0C: d7}
    S = sys.modules["smbus2"].SMBus
    DW9714(S(1)).write_code(0x2A5)  # 10 bits: 10 1010 0101
    assert dw.writes[-1] == [0x2A, 0x50]
    AK7375(S(2)).write_code(0xABC)  # 12 bits << 4 = 0xABC0, big endian at 0x00
    assert ak.writes[-1] == [0x00, 0xAB, 0xC0]
    DW9807(S(3)).write_code(0x2A5)
    assert d7.writes[-1] == [0x03, 0x02, 0xA5]
    assert make_driver("dw9817", S(3)).read_code() == 0x2A5


def test_open_sweep_and_capture(bus, gst):
    chip = fake_hw.FakeAK7375()
    bus[7] = {0x0C: chip}  # Jetson Nano CAM0
    with open_camera("jetson", vcm="ak7375", settle_time_s=0.001, size=(64, 36)) as cam:
        assert chip.powered
        assert cam.control_range == (0.0, 4095.0)
        lo, hi = cam.focus_range_dioptres
        assert lo == 0.0 and hi == pytest.approx(10.0)
        cam.set_focus(5.0)
        cam.wait_settled()
        fr = cam.capture()
        assert chip.code == round(4095 / 2)
        assert fr.image.shape == (36, 64, 3)
        assert fr.image[0, 0, 0] == pytest.approx(220 / 255)  # BGR -> RGB
        assert fr.metadata["focus_control"] == pytest.approx(2047.5)
        assert gst[-1].grabs == 2  # flushed frames after the move
        pipe = gst[-1].pipeline
        assert pipe.startswith("nvarguscamerasrc sensor-id=0") and pipe.endswith("sync=false")
        assert "width=(int)64, height=(int)36" in pipe
    assert not chip.powered  # standby at close


def test_busy_flag_is_polled_on_dw9807(bus, gst):
    chip = fake_hw.FakeDW9807()
    bus[8] = {0x0C: chip}
    with open_camera("jetson", vcm="dw9807", sensor_id=1, settle_time_s=0.0) as cam:
        cam.set_focus_control(512)
        cam.wait_settled()
        assert getattr(chip, "status_reads", 0) >= fake_hw.FakeDW9807.busy_reads + 1
        assert chip.code == 512


def test_lock_exposure_restarts_argus_with_locks(bus, gst):
    bus[7] = {0x0C: fake_hw.FakeDW9714()}
    with open_camera("jetson", vcm="dw9714") as cam:
        cam.lock_exposure()
        assert "aelock=true awblock=true" in gst[-1].pipeline and not gst[0].opened
    with open_camera("jetson", vcm="dw9714", exposure_time_us=10000, gain=2.0) as cam:
        assert 'exposuretimerange="10000000 10000000"' in gst[-1].pipeline
        assert cam.capture().metadata["exposure_time_us"] == 10000


def test_missing_bus_device_or_pipeline(bus, gst, monkeypatch):
    with pytest.raises(CameraNotFoundError, match="/dev/i2c-7"):
        open_camera("jetson")
    bus[7] = {}
    with pytest.raises(CameraNotFoundError, match="no ak7375 VCM answers at 0x0c"):
        open_camera("jetson")
    bus[7] = {0x0C: fake_hw.FakeAK7375()}
    monkeypatch.setattr(jetson, "_video_capture", lambda p: fake_hw.FakeGstCapture("bad", None))
    with pytest.raises(CameraNotFoundError, match="GStreamer"):
        open_camera("jetson")
    with pytest.raises(ValueError, match="vcm"):
        open_camera("jetson", vcm="lc898")


def test_lost_camera_is_a_camera_error(bus, monkeypatch):
    bus[7] = {0x0C: fake_hw.FakeAK7375()}
    monkeypatch.setattr(jetson, "_video_capture", lambda p: fake_hw.FakeGstCapture(p, None, fail_after=1))
    with open_camera("jetson") as cam:
        cam.capture()
        with pytest.raises(CameraError, match="no frame"):
            cam.capture()
    assert np.isfinite(0.0)
