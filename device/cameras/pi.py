"""Raspberry Pi camera modules with autofocus, through picamera2.

Manual focus is ``set_controls({"AfMode": AfModeEnum.Manual, "LensPosition": dioptres})``; ``LensPosition`` is
already in dioptres (0 = infinity) and its range comes from ``camera_controls["LensPosition"]`` (Camera
Module 3 / imx708: 0..15). The frame metadata's ``LensPosition`` is the *commanded* value: the first frame
that reports a new value was exposed before the lens moved. So after a move this backend waits the settle
time plus the slew time (manual moves are slew-limited to about ``slew_dpt_per_frame`` dioptres per frame)
and then asks for a frame whose exposure *started* after that instant
(``capture_request(flush=t_ns)``, ``t_ns`` on the ``time.monotonic_ns`` clock that ``SensorTimestamp``
uses). Exposure and white balance are locked before a sweep (``AeEnable``/``AwbEnable`` off, the current
``ExposureTime``, ``AnalogueGain`` and ``ColourGains`` fixed) so the frames of a stack differ only by focus.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from device.cameras.base import Camera
from device.cameras.options import from_opts
from device.errors import CameraError, CameraNotFoundError
from model.lens import FocusControl, LensProfile

__all__ = ["Picamera2Config", "Picamera2Camera", "is_available"]

log = logging.getLogger(__name__)

#: picamera2 main-stream formats this backend reads, and the channel order of the array they give.
_FORMATS = {"RGB888": "bgr", "BGR888": "rgb", "XRGB8888": "bgrx", "XBGR8888": "rgbx"}


def is_available() -> bool:
    """True when picamera2 imports and reports at least one camera."""
    try:
        from picamera2 import Picamera2
    except Exception:  # noqa: BLE001 - missing module or a broken libcamera install
        return False
    return bool(Picamera2.global_camera_info())


@dataclass
class Picamera2Config:
    """Options of the picamera2 backend.

    Attributes:
        camera_num: camera index (``Picamera2(camera_num)``).
        size: ``(width, height)`` of the main stream.
        format: main-stream pixel format (``RGB888`` gives B, G, R bytes; converted to RGB here).
        frame_rate: frames per second (``FrameDurationLimits``), or ``None`` for the mode's default.
        buffer_count: number of buffers.
        slew_dpt_per_frame: how far a manual move gets per frame, dioptres (added to the settle wait).
    """

    camera_num: int = 0
    size: tuple[int, int] = (640, 480)
    format: str = "RGB888"
    frame_rate: float | None = None
    buffer_count: int = 4
    slew_dpt_per_frame: float = 1.5

    def validate(self) -> None:
        if self.format not in _FORMATS:
            raise ValueError(f"format must be one of {', '.join(_FORMATS)}, got {self.format!r}")
        w, h = self.size
        if int(w) < 8 or int(h) < 8:
            raise ValueError(f"size must be at least 8x8, got {self.size}")
        if self.frame_rate is not None and not (math.isfinite(self.frame_rate) and self.frame_rate > 0):
            raise ValueError(f"frame_rate must be positive, got {self.frame_rate}")
        if not self.slew_dpt_per_frame > 0:
            raise ValueError(f"slew_dpt_per_frame must be positive, got {self.slew_dpt_per_frame}")


class Picamera2Camera(Camera):
    """A Raspberry Pi camera with a motorised lens (Camera Module 3, Arducam imx519/64MP, ...)."""

    kind = "picamera2"

    def __init__(self, lens: LensProfile | None = None, settle_time_s: float | None = None, **opts: Any) -> None:
        cfg = from_opts(Picamera2Config, opts, "picamera2")
        super().__init__(lens, FocusControl("dioptre-linear", "LensPosition", 1.0, 0.0), settle_time_s, default_settle_s=0.02)
        self.config = cfg
        try:
            from picamera2 import Picamera2
        except ImportError as e:
            raise CameraNotFoundError(
                f"picamera2 is not importable ({e}); on Raspberry Pi OS install it with `sudo apt install python3-picamera2`"
                " and use a venv made with --system-site-packages"
            ) from None
        try:
            from libcamera import controls as lc_controls

            self._af_manual: Any = lc_controls.AfModeEnum.Manual
        except ImportError:  # pragma: no cover - libcamera ships with picamera2
            self._af_manual = 0
        try:
            self._cam = Picamera2(cfg.camera_num)
        except (RuntimeError, IndexError) as e:
            raise CameraNotFoundError(f"no Raspberry Pi camera {cfg.camera_num}: {e}") from None
        try:
            ctrls = self._cam.camera_controls
            if "LensPosition" not in ctrls:
                raise CameraNotFoundError(
                    f"camera {cfg.camera_num} has no motorised focus (no LensPosition control); it cannot sweep focus"
                )
            lo, hi, _default = ctrls["LensPosition"]
            self._range = (float(lo), float(hi))
            controls: dict[str, Any] = {}
            if cfg.frame_rate is not None:
                us = int(round(1e6 / cfg.frame_rate))
                controls["FrameDurationLimits"] = (us, us)
            config = self._cam.create_video_configuration(
                main={"size": (int(cfg.size[0]), int(cfg.size[1])), "format": cfg.format},
                buffer_count=int(cfg.buffer_count),
                controls=controls,
            )
            self._cam.configure(config)
            main = config["main"] if isinstance(config, dict) else config.main  # type: ignore[union-attr]
            size = main["size"] if isinstance(main, dict) else main.size
            self._size = (int(size[0]), int(size[1]))
            self._cam.start()
            self._cam.set_controls({"AfMode": self._af_manual})
        except CameraError:
            self._cam.close()
            raise
        except Exception as e:  # noqa: BLE001 - libcamera raises RuntimeError and others
            self._cam.close()
            raise CameraError(f"picamera2 camera {cfg.camera_num} failed to start: {e}") from None
        self._frame_duration_s = 1.0 / cfg.frame_rate if cfg.frame_rate else 1.0 / 30.0
        self._flush_ns: int | None = None
        self._move_dpt = 0.0

    @property
    def control_range(self) -> tuple[float, float]:
        return self._range

    @property
    def image_size(self) -> tuple[int, int]:
        return self._size

    def _apply_focus_control(self, value: float, previous: float | None) -> None:
        try:
            self._cam.set_controls({"AfMode": self._af_manual, "LensPosition": float(value)})
        except Exception as e:  # noqa: BLE001
            raise CameraError(f"picamera2: setting LensPosition failed: {e}") from None
        prev = previous if previous is not None else self._range[0]
        self._move_dpt = abs(self.focus_control.dioptres(value) - self.focus_control.dioptres(prev)) if previous is not None else abs(self._range[1] - self._range[0])
        self._flush_ns = None

    def settle_delay_s(self) -> float:
        """Seconds from the last command until the lens is at rest: slew frames plus ``settle_time_s``."""
        frames = math.ceil(self._move_dpt / self.config.slew_dpt_per_frame - 1e-9) if self._move_dpt > 0 else 0
        return self.settle_time_s + frames * self._frame_duration_s

    def wait_settled(self, timeout_s: float | None = None) -> None:
        """Sleep until the lens has arrived; the next :meth:`capture` then waits for a frame exposed after it."""
        self._check_open()
        if self._command_ns is None or self._settled:
            return
        deadline = self._command_ns + int(self.settle_delay_s() * 1e9)
        remaining = (deadline - time.monotonic_ns()) / 1e9
        if remaining > 0:
            time.sleep(min(remaining, timeout_s) if timeout_s is not None else remaining)
        self._flush_ns = deadline
        self._settled = True

    def _capture(self) -> tuple[np.ndarray, dict[str, Any]]:
        flush = self._flush_ns
        try:
            request = self._cam.capture_request(flush=flush) if flush else self._cam.capture_request()
        except Exception as e:  # noqa: BLE001
            raise CameraError(f"picamera2: capture failed: {e}") from None
        try:
            arr = request.make_array("main")
            md = dict(request.get_metadata())
        except Exception as e:  # noqa: BLE001
            raise CameraError(f"picamera2: reading the frame failed: {e}") from None
        finally:
            request.release()
        self._flush_ns = None
        order = _FORMATS[self.config.format]
        a = np.asarray(arr)
        if order in ("bgr", "bgrx"):
            a = a[:, :, 2::-1]
        else:
            a = a[:, :, :3]
        image = np.ascontiguousarray(a, dtype=np.float32) / 255.0
        if md.get("FrameDuration"):
            self._frame_duration_s = float(md["FrameDuration"]) / 1e6
        meta: dict[str, Any] = {
            "timestamp_ns": int(md["SensorTimestamp"]) if "SensorTimestamp" in md else time.monotonic_ns(),
            "exposure_time_us": _num(md.get("ExposureTime")),
            "analogue_gain": _num(md.get("AnalogueGain")),
            "digital_gain": _num(md.get("DigitalGain")),
            "colour_gains": [float(g) for g in md["ColourGains"]] if md.get("ColourGains") else None,
            "frame_duration_us": _num(md.get("FrameDuration")),
            "lens_position_metadata": _num(md.get("LensPosition")),
            "focus_fom": _num(md.get("FocusFoM")),
            "settled": bool(self._settled and flush is not None) or bool(self._settled and self._move_dpt == 0),
        }
        if "SensorTimestamp" in md and md.get("ExposureTime"):
            meta["exposure_start_ns"] = int(md["SensorTimestamp"]) - 1000 * int(md["ExposureTime"])
        return image, meta

    def lock_exposure(self) -> dict[str, Any]:
        """Fix exposure time, analogue gain and colour gains at the values the algorithms last chose."""
        self._check_open()
        try:
            md = self._cam.capture_metadata()
            locked = {
                "AeEnable": False,
                "AwbEnable": False,
                "ExposureTime": int(md["ExposureTime"]),
                "AnalogueGain": float(md["AnalogueGain"]),
            }
            if md.get("ColourGains"):
                locked["ColourGains"] = tuple(float(g) for g in md["ColourGains"])
            self._cam.set_controls(locked)
        except KeyError as e:
            raise CameraError(f"picamera2: metadata lacks {e} needed to lock exposure") from None
        except Exception as e:  # noqa: BLE001
            raise CameraError(f"picamera2: locking exposure failed: {e}") from None
        log.info("picamera2: exposure locked at %s us, gain %.2f", locked["ExposureTime"], locked["AnalogueGain"])
        return {
            "exposure_time_us": locked["ExposureTime"],
            "analogue_gain": locked["AnalogueGain"],
            "colour_gains": list(locked.get("ColourGains", ())) or None,
        }

    def unlock_exposure(self) -> None:
        if not self._closed:
            self._cam.set_controls({"AeEnable": True, "AwbEnable": True})

    def _close(self) -> None:
        try:
            self._cam.stop()
        finally:
            self._cam.close()

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update({"camera_num": self.config.camera_num, "format": self.config.format})
        return d


def _num(v: Any) -> float | None:
    return None if v is None else float(v)
