"""The simulated camera's moving objects are blurred like the scene: the thin lens's uniform disc (a hard
edge at the blur radius), not a Gaussian (whose tails reach every pixel around)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from device.cameras.simulated import SimulatedCamera
from model.optics import coc_diameter_m


def _camera(n_objects: int) -> SimulatedCamera:
    return SimulatedCamera(size=(96, 72), realtime=False, seed=4, moving_objects=n_objects, object_speed_px_s=0.0,
                           breathing=False, noise=(0.0, 0.0), bits=None)


def test_moving_object_blur_is_the_disc_of_the_scene() -> None:
    with _camera(1) as cam, _camera(0) as still:
        lo, hi = cam.focus_range_dioptres
        for dpt in (lo, hi):  # far focus and near focus: the object is blurred by different discs
            for c in (cam, still):
                c.set_focus(dpt)
                c.wait_settled()
            frame = cam.capture().image
            scene = still.capture().image
            true_dpt = cam.lens_dioptres_at(cam.clock_ns)
            focus_m = 1.0 / true_dpt if true_dpt > 1e-6 else 1e6
            sprite = cam.depth_truth() < still.depth_truth() - 1e-6  # the object's pixels
            assert sprite.any()
            depth = float(cam.depth_truth()[sprite].max())
            diam = float(coc_diameter_m(depth, focus_m, cam.optics)) / cam.optics.pixel_pitch_m
            dist = ndimage.distance_transform_edt(~sprite)
            far = dist > diam / 2 + 1.5  # beyond the disc's reach (its anti-aliased edge included)
            near = (dist > 0) & (dist <= max(1.0, diam / 2 - 1))  # inside the reach of the blurred edge
            np.testing.assert_array_equal(frame[far], scene[far])
            assert np.abs(frame[near] - scene[near]).max() > 1e-3
