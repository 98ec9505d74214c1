"""Cameras with motorised focus behind one interface.

``open_camera(kind, lens=None, **opts)`` returns a :class:`Camera` (a context manager with an idempotent
``close()``): ``focus_range_dioptres``, ``set_focus(dioptres)``, ``wait_settled()``, ``capture() -> Frame``.

Backends (each imports its hardware library only when opened):

==============  ==============================================================================
``sim``         :class:`~device.cameras.simulated.SimulatedCamera`: scenes rendered through the lens
``picamera2``   Raspberry Pi camera modules with autofocus (``LensPosition`` in dioptres)
``jetson``      NVIDIA Jetson: ``nvarguscamerasrc`` through OpenCV, lens moved over I2C (VCM drivers)
``v4l2``        UVC / V4L2 cameras with ``focus_absolute``
``auto``        the first present of picamera2, jetson, v4l2; otherwise ``sim``
==============  ==============================================================================
"""

from __future__ import annotations

import logging
from typing import Any

from device.cameras.base import Camera, Frame, dioptres_to_distance_m, distance_to_dioptres
from device.errors import CameraClosedError, CameraError, CameraNotFoundError
from model.lens import LensProfile

__all__ = [
    "Camera",
    "Frame",
    "CameraError",
    "CameraNotFoundError",
    "CameraClosedError",
    "CAMERA_KINDS",
    "open_camera",
    "detect_camera",
    "dioptres_to_distance_m",
    "distance_to_dioptres",
]

log = logging.getLogger(__name__)

CAMERA_KINDS = ("auto", "sim", "picamera2", "jetson", "v4l2")


def detect_camera() -> str:
    """The kind of the first camera found on this machine (``"sim"`` when there is none).

    Checks, in order: a Raspberry Pi camera through picamera2, a Jetson with an Argus camera and an I2C
    bus, a V4L2 device that has ``focus_absolute``. Never raises.
    """
    from device.cameras import jetson, pi, v4l2

    for kind, probe in (("picamera2", pi.is_available), ("jetson", jetson.is_available), ("v4l2", v4l2.is_available)):
        try:
            if probe():
                return kind
        except Exception as e:  # noqa: BLE001 - a probe must never stop detection
            log.debug("probe %s failed: %s", kind, e)
    return "sim"


def open_camera(kind: str = "sim", lens: LensProfile | None = None, **opts: Any) -> Camera:
    """Open a camera.

    Args:
        kind: one of :data:`CAMERA_KINDS`.
        lens: the lens profile (focus mapping ``focus_control``, ``settle_time_s``); ``None`` uses the
            backend's nominal mapping (and, for ``sim``, the shipped model's lens).
        **opts: backend options (see each backend's config dataclass); unknown keys raise ``TypeError``.

    Raises:
        ValueError: unknown kind or bad option values.
        TypeError: unknown options.
        CameraNotFoundError: the hardware or its library is absent.
        CameraError: the camera is present but failed to start.
    """
    if kind not in CAMERA_KINDS:
        raise ValueError(f"unknown camera kind {kind!r}; choose one of {', '.join(CAMERA_KINDS)}")
    if kind == "auto":
        kind = detect_camera()
        log.info("camera: auto-detected %s", kind)
    if kind == "sim":
        from device.cameras.simulated import SimulatedCamera

        return SimulatedCamera(lens=lens, **opts)
    if kind == "picamera2":
        from device.cameras.pi import Picamera2Camera

        return Picamera2Camera(lens=lens, **opts)
    if kind == "jetson":
        from device.cameras.jetson import JetsonCamera

        return JetsonCamera(lens=lens, **opts)
    from device.cameras.v4l2 import V4L2Camera

    return V4L2Camera(lens=lens, **opts)
