"""Faithful fakes of the hardware APIs the camera backends use, for tests without hardware.

- ``picamera2`` / ``libcamera``: ``Picamera2(camera_num)``, ``camera_controls`` ``{name: (min, max, default)}``,
  ``create_video_configuration``, ``configure``, ``start``, ``set_controls``, ``capture_request(flush=)``
  (``flush`` = a ``time.monotonic_ns`` instant: the first frame whose exposure *started* at or after it,
  exposure start = ``SensorTimestamp - 1000 * ExposureTime``), ``CompletedRequest.make_array/get_metadata/
  release``, ``capture_metadata``, ``stop``, ``close``. ``RGB888`` arrays are B, G, R bytes. The lens is
  slew-limited (``slew_dpt_per_frame``) and moves only from the frame after the command; metadata
  ``LensPosition`` is the commanded value. Auto exposure drifts until ``AeEnable`` is turned off.
- ``smbus2``: ``SMBus(bus)`` (``FileNotFoundError`` for a missing bus, ``OSError(121)`` for a missing
  device), ``write_byte_data``, ``read_byte_data``, ``write_i2c_block_data``, ``read_i2c_block_data``,
  ``i2c_rdwr`` with ``i2c_msg.read/write``; chips emulated at the byte level (DW9714, DW9807, AK7375).
- V4L2: an ioctl handler for ``VIDIOC_QUERYCTRL`` / ``G_CTRL`` / ``S_CTRL`` on ctypes structures
  (``EINVAL`` for unknown controls, ``ERANGE`` out of range), plus OpenCV ``VideoCapture`` stand-ins.
"""

from __future__ import annotations

import errno
import threading
import time
import time as _real_time
import types
from typing import Any

import numpy as np

# ============================================================================ clock


class VirtualClock:
    """A stand-in for the ``time`` module whose ``monotonic_ns`` moves only when someone sleeps.

    The fake sensor and the backend under test both read it (tests patch it over ``time`` in
    ``device.cameras.base``, ``device.cameras.pi`` and this module), so which frame was exposed when is
    decided by the code's own waits, never by how fast or how loaded the machine running the tests is.
    Attributes it does not define (``time.time``, ``perf_counter``, ...) come from the real module.
    """

    def __init__(self) -> None:
        self._ns = _real_time.monotonic_ns()
        self._lock = threading.Lock()

    def monotonic_ns(self) -> int:
        with self._lock:
            return self._ns

    def monotonic(self) -> float:
        return self.monotonic_ns() / 1e9

    def sleep(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        with self._lock:
            self._ns += int(round(seconds * 1e9))

    def __getattr__(self, name: str) -> Any:
        return getattr(_real_time, name)


# ============================================================================ picamera2


class AfModeEnum:
    Manual = 0
    Auto = 1
    Continuous = 2


def make_libcamera_module() -> types.ModuleType:
    mod = types.ModuleType("libcamera")
    mod.controls = types.SimpleNamespace(AfModeEnum=AfModeEnum)  # type: ignore[attr-defined]
    return mod


class FakeCompletedRequest:
    def __init__(self, owner: "FakePicamera2", array: np.ndarray, metadata: dict[str, Any]) -> None:
        self._owner = owner
        self._array = array
        self._md = metadata
        self.released = False
        owner.outstanding += 1

    def make_array(self, name: str) -> np.ndarray:
        if self.released:
            raise RuntimeError("request already released")
        if name != "main":
            raise KeyError(name)
        return self._array.copy()

    def get_metadata(self) -> dict[str, Any]:
        return dict(self._md)

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._owner.outstanding -= 1


class FakePicamera2:
    """A Camera Module 3 (imx708, LensPosition 0..15) on a 100 fps sensor, on ``time.monotonic_ns`` (the
    tests swap in a :class:`VirtualClock`)."""

    n_cameras = 1
    instances: list["FakePicamera2"] = []
    frame_period_ns = 10_000_000
    slew_dpt_per_frame = 1.5
    KNOWN_CONTROLS = {"AfMode", "LensPosition", "AeEnable", "AwbEnable", "ExposureTime", "AnalogueGain", "ColourGains",
                      "FrameDurationLimits"}

    def __init__(self, camera_num: int = 0, tuning: Any = None) -> None:
        if camera_num >= self.n_cameras:
            raise IndexError("list index out of range")
        self.camera_num = camera_num
        self.camera_controls = {
            "LensPosition": (0.0, 15.0, 1.0),
            "AfMode": (0, 2, 0),
            "ExposureTime": (26, 1_000_000, 20000),
            "AnalogueGain": (1.12, 16.0, 1.0),
        }
        self.controls: dict[str, Any] = {"AfMode": AfModeEnum.Continuous, "AeEnable": True, "AwbEnable": True}
        self.started = False
        self.closed = False
        self.config: dict[str, Any] | None = None
        self.outstanding = 0
        self.t0 = time.monotonic_ns()
        self.lens_moves: list[tuple[int, float, float]] = [(self.t0, 1.0, 1.0)]  # (start frame time, from, to)
        self.flush_calls: list[int | None] = []
        self._last_k = -1
        self.set_controls_log: list[dict[str, Any]] = []
        FakePicamera2.instances.append(self)

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        return [{"Model": "imx708", "Location": 2, "Rotation": 180, "Id": "/base/soc/i2c0mux/i2c@1/imx708@1a"}] * FakePicamera2.n_cameras

    # -- configuration
    def create_video_configuration(self, main: dict[str, Any] | None = None, lores: Any = None, raw: Any = None,
                                   transform: Any = None, colour_space: Any = None, buffer_count: int = 6,
                                   controls: dict[str, Any] | None = None, display: str = "main", encode: str = "main",
                                   queue: bool = True, sensor: Any = None, use_case: str = "video") -> dict[str, Any]:
        main = dict(main or {})
        main.setdefault("format", "XBGR8888")
        main.setdefault("size", (1280, 720))
        w, h = main["size"]
        main["size"] = (w - w % 2, h - h % 2)  # libcamera aligns sizes
        return {"use_case": use_case, "main": main, "buffer_count": buffer_count, "controls": dict(controls or {})}

    def configure(self, config: dict[str, Any]) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        self.config = config
        for k, v in config.get("controls", {}).items():
            self.controls[k] = v

    def start(self) -> None:
        if self.config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.started = False
        self.closed = True

    def set_controls(self, controls: dict[str, Any]) -> None:
        if self.closed:
            raise RuntimeError("Camera is closed")
        for k in controls:
            if k not in self.KNOWN_CONTROLS:
                raise RuntimeError(f"Control {k} is not advertised by libcamera")
        self.set_controls_log.append(dict(controls))
        if "LensPosition" in controls:
            lo, hi, _ = self.camera_controls["LensPosition"]
            v = float(controls["LensPosition"])
            if not lo <= v <= hi:
                raise RuntimeError(f"LensPosition {v} out of range")
            if self.controls.get("AfMode") != AfModeEnum.Manual and controls.get("AfMode") != AfModeEnum.Manual:
                raise RuntimeError("LensPosition needs AfMode Manual")
            now = time.monotonic_ns()
            next_frame = self._frame_start(self._index_at_or_after(now))
            self.lens_moves.append((next_frame, self.lens_actual(next_frame), v))
        self.controls.update(controls)

    # -- sensor timing
    def _frame_start(self, k: int) -> int:
        return self.t0 + k * self.frame_period_ns

    def _index_at_or_after(self, t: int) -> int:
        return max(0, -(-(t - self.t0) // self.frame_period_ns))

    def lens_actual(self, t: int) -> float:
        """Actual lens position (dioptres) at time ``t``: slew-limited from each command's next frame."""
        pos = self.lens_moves[0][2]
        for start, _frm, to in self.lens_moves:
            if t < start:
                break
            travelled = (t - start) / self.frame_period_ns * self.slew_dpt_per_frame
            frm = pos
            pos = to if abs(to - frm) <= travelled else frm + np.sign(to - frm) * travelled
        return float(pos)

    def _exposure_us(self, k: int) -> int:
        if self.controls.get("AeEnable", True):
            return 5000 + 500 * (k % 7)  # the AE algorithm keeps adjusting
        return int(self.controls["ExposureTime"])

    def _request_for(self, k: int) -> FakeCompletedRequest:
        start = self._frame_start(k)
        exp_us = min(self._exposure_us(k), self.frame_period_ns // 1000)
        ready = start + self.frame_period_ns
        wait = (ready - time.monotonic_ns()) / 1e9
        if wait > 0:
            time.sleep(wait)
        w, h = self.config["main"]["size"]  # type: ignore[index]
        fmt = self.config["main"]["format"]  # type: ignore[index]
        actual = self.lens_actual(start + exp_us * 500)
        rgb = np.empty((h, w, 3), np.uint8)
        rgb[..., 0], rgb[..., 1] = 200, 100
        rgb[..., 2] = int(round(actual / 15.0 * 255))  # blue encodes the lens position (for tests)
        if fmt == "RGB888":
            arr = rgb[..., ::-1]
        elif fmt == "BGR888":
            arr = rgb
        elif fmt == "XRGB8888":
            arr = np.concatenate([rgb[..., ::-1], np.full((h, w, 1), 255, np.uint8)], axis=2)
        else:
            arr = np.concatenate([rgb, np.full((h, w, 1), 255, np.uint8)], axis=2)
        md = {
            "SensorTimestamp": start + exp_us * 1000,
            "ExposureTime": exp_us,
            "AnalogueGain": float(self.controls.get("AnalogueGain", 2.0)) if not self.controls.get("AeEnable", True) else 2.0 + 0.1 * (k % 3),
            "DigitalGain": 1.0,
            "ColourGains": tuple(self.controls.get("ColourGains", (1.9, 1.6))) if not self.controls.get("AwbEnable", True) else (1.9 + 0.01 * (k % 5), 1.6),
            "FrameDuration": self.frame_period_ns // 1000,
            "LensPosition": float(self.controls.get("LensPosition", 1.0)),
            "FocusFoM": 1000,
        }
        return FakeCompletedRequest(self, np.ascontiguousarray(arr), md)

    def capture_request(self, wait: Any = None, signal_function: Any = None, flush: Any = None) -> FakeCompletedRequest:
        if self.closed or not self.started:
            raise RuntimeError("Camera is not running")
        self.flush_calls.append(flush)
        if flush is True:
            flush = time.monotonic_ns()
        now = time.monotonic_ns()
        # without flush: the oldest frame still queued (each frame is delivered once; the queue holds
        # ``buffer_count`` completed frames); with flush: the first frame whose exposure started at or
        # after ``flush``
        newest_done = (now - self.t0) // self.frame_period_ns - 1
        depth = int(self.config.get("buffer_count", 4)) if self.config else 4
        k = max(self._last_k + 1, newest_done - depth + 1, 0)
        if flush:
            while self._frame_start(k) < flush:
                k += 1
        self._last_k = k
        return self._request_for(k)

    def capture_metadata(self) -> dict[str, Any]:
        req = self.capture_request()
        try:
            return req.get_metadata()
        finally:
            req.release()


def make_picamera2_module() -> types.ModuleType:
    mod = types.ModuleType("picamera2")
    mod.Picamera2 = FakePicamera2  # type: ignore[attr-defined]
    return mod


# ============================================================================ smbus2


class i2c_msg:  # noqa: N801 - smbus2's name
    """smbus2.i2c_msg: ``read(address, length)`` / ``write(address, buf)``; iterating gives the bytes."""

    def __init__(self, addr: int, flags: int, data: list[int]) -> None:
        self.addr = addr
        self.flags = flags
        self.buf = list(data)
        self.len = len(data)

    @classmethod
    def read(cls, address: int, length: int) -> "i2c_msg":
        return cls(address, 1, [0] * length)

    @classmethod
    def write(cls, address: int, buf: Any) -> "i2c_msg":
        return cls(address, 0, list(buf))

    def __iter__(self):
        return iter(self.buf)

    def __len__(self) -> int:
        return self.len


class FakeChip:
    """Byte-level I2C device with a register file and auto-incrementing address pointer."""

    def __init__(self) -> None:
        self.regs = [0] * 256
        self.writes: list[list[int]] = []

    def raw_write(self, data: list[int]) -> None:
        self.writes.append(list(data))
        if not data:
            return
        reg = data[0]
        for i, b in enumerate(data[1:]):
            self.regs[(reg + i) & 0xFF] = b & 0xFF
        self.pointer = reg

    def read_from(self, reg: int, n: int) -> list[int]:
        return [self.regs[(reg + i) & 0xFF] for i in range(n)]

    def raw_read(self, n: int) -> list[int]:
        return self.read_from(getattr(self, "pointer", 0), n)


class FakeDW9714(FakeChip):
    """No registers: every write is two bytes ``[PD FLAG D9..D4] [D3..D0 S3..S0]``; a read returns them."""

    def __init__(self) -> None:
        super().__init__()
        self.last = [0x80, 0x00]  # powered down

    def raw_write(self, data: list[int]) -> None:
        self.writes.append(list(data))
        if len(data) != 2:
            raise OSError(errno.EIO, "Input/output error")
        self.last = list(data)

    def raw_read(self, n: int) -> list[int]:
        return (self.last * 2)[:n]

    @property
    def code(self) -> int:
        return ((self.last[0] & 0x3F) << 4) | (self.last[1] >> 4)

    @property
    def powered(self) -> bool:
        return not self.last[0] & 0x80


class FakeDW9807(FakeChip):
    """Registers 0x02 control, 0x03/0x04 code, 0x05 status (busy for ``busy_reads`` reads after a move)."""

    busy_reads = 2

    def __init__(self) -> None:
        super().__init__()
        self.regs[0x02] = 0x01
        self._busy = 0

    def raw_write(self, data: list[int]) -> None:
        super().raw_write(data)
        if data and data[0] in (0x03, 0x04) and len(data) > 1:
            self._busy = self.busy_reads

    def read_from(self, reg: int, n: int) -> list[int]:
        if reg == 0x05:
            b = 1 if self._busy else 0
            self._busy = max(0, self._busy - 1)
            self.status_reads = getattr(self, "status_reads", 0) + 1
            return [b] + [0] * (n - 1)
        return super().read_from(reg, n)

    @property
    def code(self) -> int:
        return ((self.regs[0x03] & 0x03) << 8) | self.regs[0x04]

    @property
    def powered(self) -> bool:
        return not self.regs[0x02] & 0x01


class FakeAK7375(FakeChip):
    def __init__(self) -> None:
        super().__init__()
        self.regs[0x02] = 0x40  # standby

    @property
    def code(self) -> int:
        return ((self.regs[0x00] << 8) | self.regs[0x01]) >> 4

    @property
    def powered(self) -> bool:
        return self.regs[0x02] == 0x00


#: bus number -> {address: chip}
FAKE_BUSES: dict[int, dict[int, FakeChip]] = {}


class SMBus:
    """smbus2.SMBus over :data:`FAKE_BUSES`."""

    def __init__(self, bus: int | None = None, force: bool = False) -> None:
        self.fd = None
        self.bus = bus
        if bus is not None:
            self.open(bus)

    def open(self, bus: int) -> None:
        if bus not in FAKE_BUSES:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", f"/dev/i2c-{bus}")
        self.bus = bus
        self.fd = 3

    def close(self) -> None:
        self.fd = None

    def __enter__(self) -> "SMBus":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _dev(self, addr: int) -> FakeChip:
        if self.fd is None:
            raise OSError(errno.EBADF, "Bad file descriptor")
        try:
            return FAKE_BUSES[self.bus][addr]  # type: ignore[index]
        except KeyError:
            raise OSError(121, "Remote I/O error") from None

    def write_byte_data(self, i2c_addr: int, register: int, value: int, force: bool | None = None) -> None:
        self._dev(i2c_addr).raw_write([register & 0xFF, value & 0xFF])

    def read_byte_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        return self._dev(i2c_addr).read_from(register, 1)[0]

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: list[int], force: bool | None = None) -> None:
        if len(data) > 32:
            raise ValueError("Data length cannot exceed 32 bytes")
        self._dev(i2c_addr).raw_write([register & 0xFF] + [b & 0xFF for b in data])

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int, force: bool | None = None) -> list[int]:
        if length > 32:
            raise ValueError("Desired block length over 32 bytes")
        return self._dev(i2c_addr).read_from(register, length)

    def i2c_rdwr(self, *i2c_msgs: i2c_msg) -> None:
        for m in i2c_msgs:
            dev = self._dev(m.addr)
            if m.flags & 1:
                m.buf = dev.raw_read(m.len)
            else:
                dev.raw_write(m.buf)


def make_smbus2_module() -> types.ModuleType:
    mod = types.ModuleType("smbus2")
    mod.SMBus = SMBus  # type: ignore[attr-defined]
    mod.i2c_msg = i2c_msg  # type: ignore[attr-defined]
    return mod


# ============================================================================ OpenCV captures


class FakeGstCapture:
    """cv2.VideoCapture(pipeline, CAP_GSTREAMER): frames whose blue channel encodes the VCM code."""

    def __init__(self, pipeline: str, chip: FakeChip | None, size: tuple[int, int] = (64, 36), fail_after: int | None = None) -> None:
        self.pipeline = pipeline
        self.chip = chip
        self.size = size
        self.opened = "nvarguscamerasrc" in pipeline and "appsink" in pipeline
        self.reads = 0
        self.grabs = 0
        self.fail_after = fail_after

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self.opened

    def grab(self) -> bool:
        self.grabs += 1
        return self.opened

    def read(self) -> tuple[bool, np.ndarray | None]:
        if not self.opened or (self.fail_after is not None and self.reads >= self.fail_after):
            return False, None
        self.reads += 1
        w, h = self.size
        bgr = np.zeros((h, w, 3), np.uint8)
        bgr[..., 2] = 220  # red
        code = getattr(self.chip, "code", 0)
        bgr[..., 0] = min(255, code // 16)
        return True, bgr

    def release(self) -> None:
        self.opened = False


# ============================================================================ V4L2


class FakeV4L2Device:
    """The control side of a UVC webcam (Logitech C920-like: focus_absolute 0..250 step 5)."""

    def __init__(self, path: str = "/dev/video0", with_focus: bool = True) -> None:
        from device.cameras.v4l2 import CID

        self.path = path
        self.fd = 42
        self.open_count = 0
        # id -> [type, name, min, max, step, default, flags, value]
        self.controls: dict[int, list[Any]] = {
            CID["auto_white_balance"]: [2, b"White Balance, Automatic", 0, 1, 1, 1, 0, 1],
            CID["gain"]: [1, b"Gain", 0, 255, 1, 0, 0, 37],
            CID["white_balance_temperature"]: [1, b"White Balance Temperature", 2000, 6500, 1, 4000, 0x10, 4600],
            CID["auto_exposure"]: [3, b"Auto Exposure", 0, 3, 1, 3, 0, 3],
            CID["exposure_time_absolute"]: [1, b"Exposure Time, Absolute", 3, 2047, 1, 250, 0x10, 312],
        }
        if with_focus:
            self.controls[CID["focus_absolute"]] = [1, b"Focus, Absolute", 0, 250, 5, 0, 0x10, 0]
            self.controls[CID["focus_automatic_continuous"]] = [2, b"Focus, Automatic Continuous", 0, 1, 1, 1, 0, 1]
        self.sets: list[tuple[int, int]] = []

    def open(self, path: str, flags: int, mode: int = 0o777) -> int:
        if path != self.path:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        self.open_count += 1
        return self.fd

    def close(self, fd: int) -> None:
        if fd != self.fd:
            raise OSError(errno.EBADF, "Bad file descriptor")
        self.open_count -= 1

    def ioctl(self, fd: int, request: int, arg: Any, mutate_flag: bool = True) -> int:
        from device.cameras import v4l2

        if fd != self.fd:
            raise OSError(errno.EBADF, "Bad file descriptor")
        if request == v4l2.VIDIOC_QUERYCTRL:
            c = self.controls.get(arg.id)
            if c is None:
                raise OSError(errno.EINVAL, "Invalid argument")
            arg.type, arg.name, arg.minimum, arg.maximum, arg.step, arg.default_value, arg.flags = c[:7]
            return 0
        if request == v4l2.VIDIOC_G_CTRL:
            c = self.controls.get(arg.id)
            if c is None:
                raise OSError(errno.EINVAL, "Invalid argument")
            arg.value = c[7]
            return 0
        if request == v4l2.VIDIOC_S_CTRL:
            c = self.controls.get(arg.id)
            if c is None:
                raise OSError(errno.EINVAL, "Invalid argument")
            if not c[2] <= arg.value <= c[3] or (arg.value - c[2]) % max(1, c[4]):
                raise OSError(errno.ERANGE, "Numerical result out of range")
            c[7] = int(arg.value)
            self.sets.append((int(arg.id), int(arg.value)))
            self._update_flags()
            return 0
        raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")

    def _update_flags(self) -> None:
        from device.cameras.v4l2 import CID

        # like uvcvideo: a manual control is inactive while its automatic partner is on
        pairs = [("focus_automatic_continuous", "focus_absolute", lambda v: v == 1),
                 ("auto_exposure", "exposure_time_absolute", lambda v: v != 1),
                 ("auto_white_balance", "white_balance_temperature", lambda v: v == 1)]
        for auto, manual, on in pairs:
            if CID[auto] in self.controls and CID[manual] in self.controls:
                c = self.controls[CID[manual]]
                c[6] = 0x10 if on(self.controls[CID[auto]][7]) else 0

    def value(self, name: str) -> int:
        from device.cameras.v4l2 import CID

        return int(self.controls[CID[name]][7])


class FakeV4L2Capture:
    """cv2.VideoCapture(path, CAP_V4L2): BGR frames whose blue channel encodes focus_absolute."""

    def __init__(self, dev: FakeV4L2Device, path: str) -> None:
        self.dev = dev
        self.opened = path == dev.path
        self.props: dict[int, float] = {}
        self.grabs = 0
        self.unplugged = False

    def isOpened(self) -> bool:  # noqa: N802
        return self.opened

    def set(self, prop: int, value: float) -> bool:
        self.props[prop] = value
        return True

    def get(self, prop: int) -> float:
        import cv2

        if prop == cv2.CAP_PROP_FRAME_WIDTH:
            return float(self.props.get(prop, 640))
        if prop == cv2.CAP_PROP_FRAME_HEIGHT:
            return float(self.props.get(prop, 480))
        return float(self.props.get(prop, 0.0))

    def grab(self) -> bool:
        self.grabs += 1
        return self.opened and not self.unplugged

    def read(self) -> tuple[bool, np.ndarray | None]:
        import cv2

        if not self.opened or self.unplugged:
            return False, None
        w, h = int(self.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.get(cv2.CAP_PROP_FRAME_HEIGHT))
        bgr = np.zeros((h, w, 3), np.uint8)
        bgr[..., 2] = 200
        bgr[..., 0] = self.dev.value("focus_absolute")
        return True, bgr

    def release(self) -> None:
        self.opened = False
