"""Real cameras. Marked ``hardware``; each test skips (with the reason) where its camera is absent.

Jetson tests also need ``DAIF_JETSON_VCM`` (the VCM driver: dw9714, dw9807, dw9817 or ak7375), because
writing the wrong chip's registers over I2C is not something to guess.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from device.cameras import jetson, open_camera, pi, v4l2
from device.sweep import SweepConfig, SweepScheduler

pytestmark = pytest.mark.hardware


def _sweep_checks(cam) -> None:
    lo, hi = cam.focus_range_dioptres
    dpts = np.linspace(lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo), 3)
    focus = sorted(1.0 / d for d in dpts if d > 0)
    stack = next(SweepScheduler(cam, focus, SweepConfig(align=False)).stacks(max_stacks=1))
    assert stack.images.shape[0] == len(focus)
    assert np.all(np.isfinite(stack.images)) and stack.images.max() > 0.02
    ts = [m["timestamp_ns"] for m in stack.frames]
    assert len(set(ts)) == len(ts)


@pytest.mark.skipif(not pi.is_available(), reason="no Raspberry Pi camera through picamera2 on this machine")
def test_picamera2_sweep():
    with open_camera("picamera2", size=(640, 480)) as cam:
        cam.lock_exposure()
        _sweep_checks(cam)


@pytest.mark.skipif(not (jetson.is_available() and os.environ.get("DAIF_JETSON_VCM")),
                    reason="not a Jetson, or DAIF_JETSON_VCM (the VCM driver name) is not set")
def test_jetson_sweep():
    with open_camera("jetson", vcm=os.environ["DAIF_JETSON_VCM"]) as cam:
        _sweep_checks(cam)


@pytest.mark.skipif(not v4l2.is_available(), reason="no V4L2 camera with focus_absolute on this machine")
def test_v4l2_sweep():
    import glob

    for node in sorted(glob.glob("/dev/video*")):
        try:
            cam = open_camera("v4l2", device=node)
        except Exception:  # noqa: BLE001 - metadata nodes and cameras without focus
            continue
        with cam:
            _sweep_checks(cam)
        return
    pytest.skip("no V4L2 node could be opened with focus_absolute")
