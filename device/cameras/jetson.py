"""NVIDIA Jetson cameras: frames from ``nvarguscamerasrc`` through OpenCV's GStreamer backend, the lens
moved by writing the VCM driver over I2C with smbus2 (:mod:`device.cameras.vcm`).

The Argus pipeline has no focus control of its own, so the lens is driven directly, as Arducam's Jetson
examples do (Nano: CAM0 on I2C bus 7, CAM1 on bus 8). After a move the backend waits ``settle_time_s``
(15-45 ms is typical), polls the driver's busy flag where it has one, and drops ``flush_frames`` frames
that were already queued in the pipeline (2-4 is typical).

OpenCV from PyPI is built without GStreamer: on a Jetson use JetPack's ``python3-opencv`` (a venv made
with ``--system-site-packages``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.cameras.base import Camera
from device.cameras.options import from_opts
from device.cameras.vcm import VCM_DRIVERS, VcmDriver, make_driver
from device.errors import CameraError, CameraNotFoundError
from model.lens import FocusControl, LensProfile

__all__ = ["JetsonConfig", "JetsonCamera", "gstreamer_pipeline", "is_available", "default_i2c_bus"]

log = logging.getLogger(__name__)


def is_available() -> bool:
    """True on a Jetson (``/etc/nv_tegra_release``) with an I2C bus device."""
    return Path("/etc/nv_tegra_release").exists() and any(Path("/dev").glob("i2c-*"))


def default_i2c_bus(sensor_id: int) -> int:
    """The I2C bus of the camera connector on a Jetson Nano carrier: CAM0 -> 7, CAM1 -> 8."""
    return 7 + int(sensor_id)


@dataclass
class JetsonConfig:
    """Options of the Jetson backend.

    Attributes:
        sensor_id: ``nvarguscamerasrc sensor-id``.
        vcm: VCM driver chip (``dw9714``, ``dw9807``, ``dw9817``, ``ak7375``).
        i2c_bus: bus number (``None``: 7 + sensor_id, the Nano's CAM0/CAM1).
        i2c_address: VCM address.
        capture_size: sensor mode ``(width, height)`` requested from Argus.
        size: ``(width, height)`` frames are scaled to by ``nvvidconv``.
        frame_rate: frames per second.
        flip_method: ``nvvidconv flip-method``.
        flush_frames: frames dropped after a move (queued before the lens settled).
        exposure_time_us: fix the exposure (``exposuretimerange``); ``None``: auto until :meth:`lock_exposure`.
        gain: fix the analogue gain (``gainrange``) together with ``exposure_time_us``.
        nominal_max_dioptres: the uncalibrated mapping's dioptres at the largest code (code 0 = infinity).
        pipeline: a full GStreamer pipeline to use instead of the built one (must end in ``appsink``).
    """

    sensor_id: int = 0
    vcm: str = "ak7375"
    i2c_bus: int | None = None
    i2c_address: int = 0x0C
    capture_size: tuple[int, int] = (1280, 720)
    size: tuple[int, int] = (640, 360)
    frame_rate: int = 60
    flip_method: int = 0
    flush_frames: int = 2
    exposure_time_us: float | None = None
    gain: float | None = None
    nominal_max_dioptres: float = 10.0
    pipeline: str | None = None

    def validate(self) -> None:
        if self.vcm.lower() not in VCM_DRIVERS:
            raise ValueError(f"vcm must be one of {', '.join(VCM_DRIVERS)}, got {self.vcm!r}")
        if int(self.flush_frames) < 0:
            raise ValueError(f"flush_frames must be >= 0, got {self.flush_frames}")
        if not self.nominal_max_dioptres > 0:
            raise ValueError("nominal_max_dioptres must be positive")
        if (self.exposure_time_us is None) != (self.gain is None):
            raise ValueError("give exposure_time_us and gain together (or neither)")


def gstreamer_pipeline(cfg: JetsonConfig, ae_lock: bool = False) -> str:
    """The ``nvarguscamerasrc ... ! appsink`` pipeline for ``cfg`` (BGR frames for OpenCV)."""
    if cfg.pipeline:
        return cfg.pipeline
    src = [f"nvarguscamerasrc sensor-id={int(cfg.sensor_id)}"]
    if cfg.exposure_time_us is not None and cfg.gain is not None:
        ns = int(round(cfg.exposure_time_us * 1000))
        src.append(f'exposuretimerange="{ns} {ns}" gainrange="{cfg.gain} {cfg.gain}" ispdigitalgainrange="1 1"')
    if ae_lock:
        src.append("aelock=true awblock=true")
    cw, ch = cfg.capture_size
    w, h = cfg.size
    return (
        " ".join(src)
        + f" ! video/x-raw(memory:NVMM), width=(int){cw}, height=(int){ch}, framerate=(fraction){int(cfg.frame_rate)}/1, format=(string)NV12"
        + f" ! nvvidconv flip-method={int(cfg.flip_method)} ! video/x-raw, width=(int){w}, height=(int){h}, format=(string)BGRx"
        + " ! videoconvert ! video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=2 sync=false"
    )


def _video_capture(pipeline: str) -> Any:
    import cv2

    return cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)


class JetsonCamera(Camera):
    """A Jetson CSI camera whose lens is a VCM driven over I2C."""

    kind = "jetson"

    def __init__(self, lens: LensProfile | None = None, settle_time_s: float | None = None, **opts: Any) -> None:
        cfg = from_opts(JetsonConfig, opts, "jetson")
        self.config = cfg
        try:
            from smbus2 import SMBus
        except ImportError:
            raise CameraNotFoundError("smbus2 is not installed: pip install 'daif-depth[jetson]' (or smbus2)") from None
        bus_no = cfg.i2c_bus if cfg.i2c_bus is not None else default_i2c_bus(cfg.sensor_id)
        self.i2c_bus = bus_no
        probe_cls = VCM_DRIVERS[cfg.vcm.lower()]
        max_code = (1 << probe_cls.bits) - 1
        nominal = FocusControl("dioptre-linear", f"{cfg.vcm.lower()}_code", cfg.nominal_max_dioptres / max_code, 0.0)
        super().__init__(lens, nominal, settle_time_s, default_settle_s=0.03)
        try:
            self._bus = SMBus(bus_no)
        except (OSError, FileNotFoundError) as e:
            raise CameraNotFoundError(f"cannot open I2C bus /dev/i2c-{bus_no}: {e} (is the user in the i2c group?)") from None
        self._driver: VcmDriver = make_driver(cfg.vcm, self._bus, cfg.i2c_address)
        try:
            self._driver.power_up()
        except OSError as e:
            self._bus.close()
            raise CameraNotFoundError(
                f"no {cfg.vcm} VCM answers at 0x{cfg.i2c_address:02x} on /dev/i2c-{bus_no}: {e}"
                " (check vcm=, i2c_bus= and that the camera is connected)"
            ) from None
        self._cap = None
        self._ae_locked = False
        self._size = (int(cfg.size[0]), int(cfg.size[1]))
        self._open_pipeline(ae_lock=False)

    def _open_pipeline(self, ae_lock: bool) -> None:
        if self._cap is not None:
            self._cap.release()
        pipe = gstreamer_pipeline(self.config, ae_lock=ae_lock)
        log.debug("jetson: %s", pipe)
        cap = _video_capture(pipe)
        if not cap.isOpened():
            cap.release()
            self._bus.close()
            raise CameraNotFoundError(
                "nvarguscamerasrc did not open (no camera on sensor-id "
                f"{self.config.sensor_id}, nvargus-daemon not running, or OpenCV built without GStreamer: "
                "use JetPack's python3-opencv)"
            )
        self._cap = cap
        self._ae_locked = ae_lock

    @property
    def control_range(self) -> tuple[float, float]:
        return (0.0, float(self._driver.max_code))

    @property
    def image_size(self) -> tuple[int, int]:
        return self._size

    def _apply_focus_control(self, value: float, previous: float | None) -> None:
        try:
            self._driver.write_code(int(round(value)))
        except OSError as e:
            raise CameraError(f"jetson: writing the VCM over I2C failed: {e}") from None

    def wait_settled(self, timeout_s: float | None = None) -> None:
        """Wait ``settle_time_s``, until the driver is no longer busy, then drop ``flush_frames`` frames."""
        self._check_open()
        if self._command_ns is None or self._settled:
            return
        limit = time.monotonic() + (timeout_s if timeout_s is not None else max(1.0, 10 * self.settle_time_s))
        remaining = (self._settle_deadline_ns() - time.monotonic_ns()) / 1e9
        if remaining > 0:
            time.sleep(remaining)
        if self._driver.has_busy_flag:
            try:
                while self._driver.busy() and time.monotonic() < limit:
                    time.sleep(0.002)
            except OSError as e:
                raise CameraError(f"jetson: reading the VCM status failed: {e}") from None
        assert self._cap is not None  # noqa: S101 - opened in __init__
        for _ in range(int(self.config.flush_frames)):
            if not self._cap.grab():
                raise CameraError("jetson: the camera stopped delivering frames")
        self._settled = True

    def _capture(self) -> tuple[np.ndarray, dict[str, Any]]:
        assert self._cap is not None  # noqa: S101
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            raise CameraError("jetson: no frame from nvarguscamerasrc (camera disconnected or nvargus-daemon failed)")
        image = np.ascontiguousarray(bgr[:, :, ::-1], dtype=np.float32) / 255.0
        self._size = (int(image.shape[1]), int(image.shape[0]))
        meta: dict[str, Any] = {"timestamp_ns": time.monotonic_ns(), "vcm": self.config.vcm, "i2c_bus": self.i2c_bus,
                                "exposure_locked": self._ae_locked or self.config.exposure_time_us is not None}
        if self.config.exposure_time_us is not None:
            meta["exposure_time_us"] = float(self.config.exposure_time_us)
            meta["analogue_gain"] = float(self.config.gain)  # type: ignore[arg-type]
        return image, meta

    def lock_exposure(self) -> dict[str, Any]:
        """Restart the pipeline with ``aelock``/``awblock`` (Argus reads them only at start), unless fixed."""
        self._check_open()
        if self.config.exposure_time_us is not None:
            return {"exposure_time_us": self.config.exposure_time_us, "analogue_gain": self.config.gain}
        if not self._ae_locked:
            self._open_pipeline(ae_lock=True)
            for _ in range(int(self.config.flush_frames)):
                self._cap.grab()  # type: ignore[union-attr]
        return {"ae_lock": True, "awb_lock": True}

    def unlock_exposure(self) -> None:
        if not self._closed and self._ae_locked:
            self._open_pipeline(ae_lock=False)

    def _close(self) -> None:
        try:
            if self._cap is not None:
                self._cap.release()
        finally:
            try:
                self._driver.power_down()
            except OSError:
                pass
            self._bus.close()

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update({"vcm": self.config.vcm, "i2c_bus": self.i2c_bus, "i2c_address": self.config.i2c_address,
                  "sensor_id": self.config.sensor_id})
        return d

