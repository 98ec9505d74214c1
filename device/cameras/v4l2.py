"""UVC / V4L2 cameras with a motorised lens: ``focus_absolute`` through V4L2 control ioctls.

Controls are read and written with ``VIDIOC_QUERYCTRL`` / ``VIDIOC_G_CTRL`` / ``VIDIOC_S_CTRL`` on the
device node (no ``v4l2-ctl`` needed); frames come through OpenCV's V4L2 backend. Continuous autofocus
(``focus_automatic_continuous``) is switched off at open. The unit of ``focus_absolute`` is not defined
by the standard, so the nominal mapping (the whole range onto 0..``nominal_max_dioptres``) is only a
placeholder until calibration measures the real one.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from device.cameras.base import Camera
from device.cameras.options import from_opts
from device.errors import CameraError, CameraNotFoundError
from model.lens import FocusControl, LensProfile

__all__ = [
    "V4L2Config",
    "V4L2Camera",
    "V4L2Controls",
    "ControlInfo",
    "is_available",
    "VIDIOC_G_CTRL",
    "VIDIOC_S_CTRL",
    "VIDIOC_QUERYCTRL",
    "CID",
]

log = logging.getLogger(__name__)


def _iowr(nr: int, size: int) -> int:
    """``_IOWR('V', nr, size)`` from ``<linux/ioctl.h>``."""
    return (3 << 30) | (size << 16) | (ord("V") << 8) | nr


class v4l2_control(ctypes.Structure):  # noqa: N801 - the kernel's name
    _fields_ = [("id", ctypes.c_uint32), ("value", ctypes.c_int32)]


class v4l2_queryctrl(ctypes.Structure):  # noqa: N801
    _fields_ = [
        ("id", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("name", ctypes.c_char * 32),
        ("minimum", ctypes.c_int32),
        ("maximum", ctypes.c_int32),
        ("step", ctypes.c_int32),
        ("default_value", ctypes.c_int32),
        ("flags", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32 * 2),
    ]


VIDIOC_G_CTRL = _iowr(27, ctypes.sizeof(v4l2_control))  # 0xc008561b
VIDIOC_S_CTRL = _iowr(28, ctypes.sizeof(v4l2_control))  # 0xc008561c
VIDIOC_QUERYCTRL = _iowr(36, ctypes.sizeof(v4l2_queryctrl))  # 0xc0445624

_USER_BASE = 0x00980900  # V4L2_CID_BASE
_CAMERA_BASE = 0x009A0900  # V4L2_CID_CAMERA_CLASS_BASE

#: Control ids used here (``<linux/v4l2-controls.h>``).
CID = {
    "auto_white_balance": _USER_BASE + 12,
    "gain": _USER_BASE + 19,
    "white_balance_temperature": _USER_BASE + 26,
    "auto_exposure": _CAMERA_BASE + 1,  # menu: 0 auto, 1 manual, 2 shutter priority, 3 aperture priority
    "exposure_time_absolute": _CAMERA_BASE + 2,  # units of 100 us
    "focus_absolute": _CAMERA_BASE + 10,
    "focus_automatic_continuous": _CAMERA_BASE + 12,
}
V4L2_CTRL_FLAG_DISABLED = 0x0001
V4L2_CTRL_FLAG_INACTIVE = 0x0010
V4L2_EXPOSURE_MANUAL = 1


@dataclass(frozen=True)
class ControlInfo:
    """What ``VIDIOC_QUERYCTRL`` says about a control."""

    id: int
    type: int
    name: str
    minimum: int
    maximum: int
    step: int
    default: int
    flags: int


# The ioctl and open functions, module attributes so tests can put a fake V4L2 device behind them.
_ioctl: Callable[..., Any] = fcntl.ioctl
_open: Callable[..., int] = os.open
_close: Callable[[int], None] = os.close


class V4L2Controls:
    """V4L2 controls of an open device node (``fd``)."""

    def __init__(self, fd: int, path: str = "") -> None:
        self.fd = fd
        self.path = path

    def query(self, cid: int) -> ControlInfo | None:
        """The control's description, or ``None`` when the device has no such (enabled) control."""
        q = v4l2_queryctrl(id=cid)
        try:
            _ioctl(self.fd, VIDIOC_QUERYCTRL, q)
        except OSError as e:
            if e.errno == errno.EINVAL:
                return None
            raise
        if q.flags & V4L2_CTRL_FLAG_DISABLED:
            return None
        return ControlInfo(int(q.id), int(q.type), q.name.decode("ascii", "replace"), int(q.minimum), int(q.maximum),
                           int(q.step), int(q.default_value), int(q.flags))

    def get(self, cid: int) -> int:
        c = v4l2_control(id=cid)
        _ioctl(self.fd, VIDIOC_G_CTRL, c)
        return int(c.value)

    def set(self, cid: int, value: int) -> None:
        c = v4l2_control(id=cid, value=int(value))
        _ioctl(self.fd, VIDIOC_S_CTRL, c)


def _device_path(device: str | int) -> str:
    return f"/dev/video{device}" if isinstance(device, int) else str(device)


def is_available() -> bool:
    """True when some ``/dev/video*`` node has an enabled ``focus_absolute`` control."""
    for node in sorted(Path("/dev").glob("video*")):
        try:
            fd = _open(str(node), os.O_RDWR | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            if V4L2Controls(fd).query(CID["focus_absolute"]) is not None:
                return True
        except OSError:
            pass
        finally:
            _close(fd)
    return False


@dataclass
class V4L2Config:
    """Options of the V4L2 backend.

    Attributes:
        device: device node (``/dev/video0``) or index.
        size: ``(width, height)`` requested; ``None`` keeps the driver's default.
        frame_rate: frames per second requested, or ``None``.
        fourcc: pixel format requested from the driver (``MJPG`` reaches higher rates on USB 2).
        flush_frames: frames dropped after a move (already queued in the driver's buffers).
        nominal_max_dioptres: the uncalibrated mapping's dioptres at the largest ``focus_absolute``.
    """

    device: str | int = "/dev/video0"
    size: tuple[int, int] | None = (640, 480)
    frame_rate: float | None = 30.0
    fourcc: str | None = "MJPG"
    flush_frames: int = 2
    nominal_max_dioptres: float = 10.0

    def validate(self) -> None:
        if int(self.flush_frames) < 0:
            raise ValueError(f"flush_frames must be >= 0, got {self.flush_frames}")
        if self.fourcc is not None and len(self.fourcc) != 4:
            raise ValueError(f"fourcc must have 4 characters, got {self.fourcc!r}")
        if not self.nominal_max_dioptres > 0:
            raise ValueError("nominal_max_dioptres must be positive")


def _video_capture(device: str) -> Any:
    import cv2

    return cv2.VideoCapture(device, cv2.CAP_V4L2)


class V4L2Camera(Camera):
    """A UVC / V4L2 camera with ``focus_absolute``."""

    kind = "v4l2"

    def __init__(self, lens: LensProfile | None = None, settle_time_s: float | None = None, **opts: Any) -> None:
        cfg = from_opts(V4L2Config, opts, "v4l2")
        self.config = cfg
        path = _device_path(cfg.device)
        self.path = path
        try:
            self._fd = _open(path, os.O_RDWR | os.O_NONBLOCK)
        except OSError as e:
            raise CameraNotFoundError(f"cannot open {path}: {e.strerror or e}") from None
        self._ctl = V4L2Controls(self._fd, path)
        self._cap: Any = None
        try:
            info = self._ctl.query(CID["focus_absolute"])
            if info is None:
                raise CameraNotFoundError(f"{path} has no focus_absolute control: its lens cannot be moved")
            self._focus_info = info
            span = max(1, info.maximum - info.minimum)
            a = cfg.nominal_max_dioptres / span
            nominal = FocusControl("dioptre-linear", "focus_absolute", a, -a * info.minimum)
            super().__init__(lens, nominal, settle_time_s, default_settle_s=0.15)
            if self._ctl.query(CID["focus_automatic_continuous"]) is not None:
                self._ctl.set(CID["focus_automatic_continuous"], 0)
            self._saved_auto: dict[str, int] = {}
            self._cap = _video_capture(path)
            if not self._cap.isOpened():
                raise CameraNotFoundError(f"OpenCV cannot stream from {path}")
            self._configure_stream()
        except OSError as e:
            self._cleanup()
            raise CameraError(f"{path}: V4L2 control ioctl failed: {e.strerror or e}") from None
        except BaseException:
            self._cleanup()
            raise

    def _configure_stream(self) -> None:
        import cv2

        cfg = self.config
        if cfg.fourcc:
            self._cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*cfg.fourcc))
        if cfg.size is not None:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, int(cfg.size[0]))
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, int(cfg.size[1]))
        if cfg.frame_rate is not None:
            self._cap.set(cv2.CAP_PROP_FPS, float(cfg.frame_rate))
        w = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH) or (cfg.size or (0, 0))[0])
        h = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or (cfg.size or (0, 0))[1])
        self._size = (w, h)

    def _cleanup(self) -> None:
        if getattr(self, "_cap", None) is not None:
            self._cap.release()
        if getattr(self, "_fd", None) is not None:
            try:
                _close(self._fd)
            except OSError:
                pass
            self._fd = None  # type: ignore[assignment]

    @property
    def control_range(self) -> tuple[float, float]:
        return (float(self._focus_info.minimum), float(self._focus_info.maximum))

    @property
    def image_size(self) -> tuple[int, int]:
        return self._size

    def _apply_focus_control(self, value: float, previous: float | None) -> None:
        info = self._focus_info
        step = max(1, info.step)
        v = info.minimum + int(round((value - info.minimum) / step)) * step
        v = min(max(v, info.minimum), info.maximum)
        try:
            self._ctl.set(info.id, v)
        except OSError as e:
            raise CameraError(f"{self.path}: setting focus_absolute={v} failed: {e.strerror or e}") from None

    def set_focus_control(self, value: float) -> None:
        """Command ``focus_absolute`` (rounded to the control's step; the commanded value is what is reported)."""
        info = self._focus_info
        step = max(1, info.step)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
            value = info.minimum + round((float(value) - info.minimum) / step) * step
        super().set_focus_control(value)

    def wait_settled(self, timeout_s: float | None = None) -> None:
        """Sleep ``settle_time_s`` after the command, then drop ``flush_frames`` queued frames."""
        super().wait_settled(timeout_s)
        for _ in range(int(self.config.flush_frames)):
            if not self._cap.grab():
                raise CameraError(f"{self.path}: the camera stopped delivering frames")

    def _capture(self) -> tuple[np.ndarray, dict[str, Any]]:
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            raise CameraError(f"{self.path}: no frame (camera unplugged?)")
        if bgr.ndim == 2:
            bgr = np.repeat(bgr[:, :, None], 3, axis=2)
        image = np.ascontiguousarray(bgr[:, :, 2::-1], dtype=np.float32) / 255.0
        self._size = (int(image.shape[1]), int(image.shape[0]))
        meta: dict[str, Any] = {"timestamp_ns": time.monotonic_ns(), "device": self.path}
        try:
            if self._ctl.query(CID["exposure_time_absolute"]) is not None:
                meta["exposure_time_us"] = 100.0 * self._ctl.get(CID["exposure_time_absolute"])
            if self._ctl.query(CID["gain"]) is not None:
                meta["gain"] = float(self._ctl.get(CID["gain"]))
            meta["focus_absolute_readback"] = self._ctl.get(self._focus_info.id)
        except OSError as e:
            raise CameraError(f"{self.path}: reading controls failed: {e.strerror or e}") from None
        return image, meta

    def lock_exposure(self) -> dict[str, Any]:
        """Switch exposure and white balance to manual at their current values."""
        self._check_open()
        locked: dict[str, Any] = {}
        try:
            if self._ctl.query(CID["auto_exposure"]) is not None and self._ctl.query(CID["exposure_time_absolute"]) is not None:
                exp = self._ctl.get(CID["exposure_time_absolute"])
                self._saved_auto.setdefault("auto_exposure", self._ctl.get(CID["auto_exposure"]))
                self._ctl.set(CID["auto_exposure"], V4L2_EXPOSURE_MANUAL)
                self._ctl.set(CID["exposure_time_absolute"], exp)
                locked["exposure_time_us"] = 100.0 * exp
            if self._ctl.query(CID["auto_white_balance"]) is not None:
                self._saved_auto.setdefault("auto_white_balance", self._ctl.get(CID["auto_white_balance"]))
                temp = None
                if self._ctl.query(CID["white_balance_temperature"]) is not None:
                    temp = self._ctl.get(CID["white_balance_temperature"])
                self._ctl.set(CID["auto_white_balance"], 0)
                if temp is not None:
                    self._ctl.set(CID["white_balance_temperature"], temp)
                    locked["white_balance_temperature"] = temp
            if self._ctl.query(CID["gain"]) is not None:
                locked["gain"] = self._ctl.get(CID["gain"])
        except OSError as e:
            raise CameraError(f"{self.path}: locking exposure failed: {e.strerror or e}") from None
        return locked

    def unlock_exposure(self) -> None:
        if self._closed:
            return
        for name, value in self._saved_auto.items():
            try:
                self._ctl.set(CID[name], value)
            except OSError as e:
                log.warning("%s: restoring %s failed: %s", self.path, name, e)
        self._saved_auto.clear()

    def _close(self) -> None:
        try:
            self.unlock_exposure_quiet()
        finally:
            self._cleanup()

    def unlock_exposure_quiet(self) -> None:
        try:
            for name, value in self._saved_auto.items():
                self._ctl.set(CID[name], value)
        except OSError:
            pass
        self._saved_auto.clear()

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update({"device": self.path, "focus_absolute": {"min": self._focus_info.minimum, "max": self._focus_info.maximum,
                                                         "step": self._focus_info.step}})
        return d
