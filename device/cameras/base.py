"""The camera interface every backend implements, and the frame it returns.

A :class:`Camera` is a context manager with an idempotent :meth:`Camera.close`. Focus is commanded in
dioptres (``1 / focus distance in metres``; 0 is infinity) and mapped to the backend's raw control value
through the lens profile's ``focus_control`` (``1/d = a*v + b``, see ``shared/FORMATS.md``), or through the
backend's nominal mapping when the profile has none (an uncalibrated camera: calibration measures the
real one). :meth:`Camera.set_focus_control` sets the raw value directly (what the calibration wizard
sweeps before the mapping is known).

Commanding focus does not wait; :meth:`Camera.wait_settled` blocks until the lens has arrived and a frame
exposed after that can be read, and :meth:`Camera.capture` returns the next frame.
"""

from __future__ import annotations

import abc
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from device.errors import CameraClosedError
from model.lens import FocusControl, LensProfile

__all__ = ["Frame", "Camera", "dioptres_to_distance_m", "distance_to_dioptres"]

log = logging.getLogger(__name__)


def dioptres_to_distance_m(dioptres: float) -> float:
    """Focus distance in metres for ``dioptres`` (``inf`` at 0 or below)."""
    return math.inf if dioptres <= 0 else 1.0 / float(dioptres)


def distance_to_dioptres(distance_m: float) -> float:
    """Dioptres (1/m) for a focus distance in metres (``inf`` metres is 0 dioptres)."""
    d = float(distance_m)
    if math.isnan(d) or d <= 0:
        raise ValueError(f"focus distance must be a positive number of metres, got {distance_m!r}")
    return 0.0 if math.isinf(d) else 1.0 / d


@dataclass(frozen=True)
class Frame:
    """One captured frame.

    Attributes:
        image: ``(H, W, 3)`` float32 RGB in ``[0, 1]``.
        metadata: at least ``focus_control`` (the raw control value commanded for this frame),
            ``focus_dioptres`` (that value through the focus mapping in effect), ``timestamp_ns`` (the
            camera's timestamp of the frame, nanoseconds; ``time.monotonic_ns`` clock where the camera
            has no clock of its own), ``host_time_ns`` (``time.monotonic_ns()`` when the frame reached
            the host), ``camera`` (backend kind) and ``settled`` (whether a settle wait preceded it).
            Backends add what they know: ``exposure_time_us``, ``analogue_gain``, ``colour_gains``, ...
    """

    image: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def focus_dioptres(self) -> float:
        return float(self.metadata["focus_dioptres"])

    @property
    def focus_m(self) -> float:
        """Commanded focus distance in metres (``inf`` at 0 dioptres)."""
        return dioptres_to_distance_m(self.focus_dioptres)

    @property
    def timestamp_ns(self) -> int:
        return int(self.metadata["timestamp_ns"])


class Camera(abc.ABC):
    """A camera with motorised focus (base class of every backend).

    Args:
        lens: the lens profile (for the focus mapping and ``settle_time_s``), or ``None``.
        nominal_focus_control: the backend's mapping used when ``lens`` has no ``focus_control``.
        settle_time_s: extra wait after a focus move; ``None`` takes ``lens.extra["settle_time_s"]``
            (written by calibration) or ``default_settle_s``.
        default_settle_s: the backend's default settle time, seconds.
    """

    kind: ClassVar[str] = "abstract"

    def __init__(
        self,
        lens: LensProfile | None,
        nominal_focus_control: FocusControl,
        settle_time_s: float | None = None,
        default_settle_s: float = 0.03,
    ) -> None:
        if lens is not None and not isinstance(lens, LensProfile):
            raise TypeError(f"lens must be a LensProfile or None, got {type(lens).__name__}")
        self._lens = lens
        self._focus_control = lens.focus_control if lens is not None and lens.focus_control is not None else nominal_focus_control
        if settle_time_s is None and lens is not None and "settle_time_s" in lens.extra:
            settle_time_s = lens.extra["settle_time_s"]
        s = default_settle_s if settle_time_s is None else settle_time_s
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or s < 0:
            raise ValueError(f"settle_time_s must be a number of seconds >= 0, got {s!r}")
        self.settle_time_s = float(s)
        self._closed = False
        self._close_lock = threading.Lock()
        self._control: float | None = None  # last commanded raw value
        self._command_ns: int | None = None  # time.monotonic_ns() of the last command
        self._settled = True
        self._frame_index = 0

    # ------------------------------------------------------------------ properties

    @property
    def lens(self) -> LensProfile | None:
        """The lens profile given at open, or ``None``."""
        return self._lens

    @property
    def focus_control(self) -> FocusControl:
        """The control-value to dioptre mapping in effect (the profile's, else the backend's nominal one)."""
        return self._focus_control

    @property
    @abc.abstractmethod
    def control_range(self) -> tuple[float, float]:
        """``(min, max)`` of the raw focus control value."""

    @property
    @abc.abstractmethod
    def image_size(self) -> tuple[int, int]:
        """``(width, height)`` of captured frames, pixels."""

    @property
    def focus_range_dioptres(self) -> tuple[float, float]:
        """``(lo, hi)`` dioptres reachable over the control range, ``lo <= hi``."""
        lo, hi = self.control_range
        a, b = self._focus_control.dioptres(lo), self._focus_control.dioptres(hi)
        return (min(a, b), max(a, b))

    @property
    def focus_range_m(self) -> tuple[float, float]:
        """``(nearest, farthest)`` focus distance in metres (``inf`` when infinity is reachable)."""
        lo, hi = self.focus_range_dioptres
        return dioptres_to_distance_m(hi), dioptres_to_distance_m(lo)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def focus_dioptres(self) -> float | None:
        """Last commanded focus in dioptres, or ``None`` before the first command."""
        return None if self._control is None else self._focus_control.dioptres(self._control)

    @property
    def control_value(self) -> float | None:
        """Last commanded raw control value, or ``None``."""
        return self._control

    # ------------------------------------------------------------------ focus

    def _check_open(self) -> None:
        if self._closed:
            raise CameraClosedError(f"{self.kind} camera is closed")

    def control_for_dioptres(self, dioptres: float) -> float:
        """Raw control value for ``dioptres``; raises ``ValueError`` outside :attr:`focus_range_dioptres`."""
        if isinstance(dioptres, bool) or not isinstance(dioptres, (int, float, np.floating, np.integer)):
            raise TypeError(f"dioptres must be a number, got {type(dioptres).__name__}")
        dpt = float(dioptres)
        if not math.isfinite(dpt):
            raise ValueError(f"dioptres must be finite, got {dioptres!r}")
        lo, hi = self.focus_range_dioptres
        tol = 1e-9 + 1e-6 * max(abs(lo), abs(hi))
        if dpt < lo - tol or dpt > hi + tol:
            raise ValueError(
                f"focus {dpt:.4g} dioptres ({_fmt_m(dioptres_to_distance_m(dpt))}) is outside this {self.kind} "
                f"camera's range {lo:.4g}..{hi:.4g} dioptres ({_fmt_m(self.focus_range_m[0])} to "
                f"{_fmt_m(self.focus_range_m[1])})"
            )
        fc = self._focus_control
        if fc.a == 0:
            raise ValueError("focus_control.a is 0: the focus mapping cannot be inverted")
        v = (dpt - fc.b) / fc.a
        clo, chi = self.control_range
        return min(max(v, clo), chi)

    def set_focus(self, dioptres: float) -> None:
        """Command focus at ``dioptres`` (1/m; 0 = infinity). Returns at once; see :meth:`wait_settled`.

        Raises:
            ValueError: outside :attr:`focus_range_dioptres`.
            CameraClosedError: after ``close()``.
        """
        self._check_open()
        self.set_focus_control(self.control_for_dioptres(dioptres))

    def set_focus_distance(self, distance_m: float) -> None:
        """Command focus at ``distance_m`` metres (``math.inf`` for infinity)."""
        self.set_focus(distance_to_dioptres(distance_m))

    def set_focus_control(self, value: float) -> None:
        """Command the raw focus control value (e.g. ``LensPosition``, a VCM code, ``focus_absolute``).

        Raises:
            ValueError: outside :attr:`control_range`.
        """
        self._check_open()
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
            raise TypeError(f"focus control value must be a number, got {type(value).__name__}")
        v = float(value)
        lo, hi = self.control_range
        tol = 1e-9 + 1e-9 * max(abs(lo), abs(hi))
        if not math.isfinite(v) or v < lo - tol or v > hi + tol:
            raise ValueError(f"focus control value {value!r} is outside {lo:g}..{hi:g} for this {self.kind} camera")
        v = min(max(v, lo), hi)
        previous = self._control
        self._apply_focus_control(v, previous)
        self._control = v
        self._command_ns = time.monotonic_ns()
        self._settled = previous is not None and self._same_position(previous, v)

    def _same_position(self, a: float, b: float) -> bool:
        return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))

    @abc.abstractmethod
    def _apply_focus_control(self, value: float, previous: float | None) -> None:
        """Send the raw focus value to the hardware (non-blocking)."""

    def wait_settled(self, timeout_s: float | None = None) -> None:
        """Block until the lens has settled after the last command, so the next frame shows it.

        The base implementation sleeps until ``settle_time_s`` after the command; backends add what
        their hardware needs (flushed frames, slew time). ``timeout_s`` bounds the wait.
        """
        self._check_open()
        if self._command_ns is not None and not self._settled:
            remaining = self._settle_deadline_ns() - time.monotonic_ns()
            if remaining > 0:
                time.sleep(min(remaining / 1e9, timeout_s if timeout_s is not None else math.inf))
        self._settled = True

    def _settle_deadline_ns(self) -> int:
        assert self._command_ns is not None  # noqa: S101 - internal invariant, callers check
        return self._command_ns + int(self.settle_time_s * 1e9)

    # ------------------------------------------------------------------ capture

    def capture(self) -> Frame:
        """Return the next frame (blocking) with its metadata.

        Raises:
            CameraError: the camera failed or disappeared.
            CameraClosedError: after ``close()``.
        """
        self._check_open()
        image, meta = self._capture()
        if image.dtype != np.float32:
            image = image.astype(np.float32)
        meta.setdefault("camera", self.kind)
        meta.setdefault("frame_index", self._frame_index)
        if self._control is not None:
            meta.setdefault("focus_control", float(self._control))
            meta.setdefault("focus_dioptres", float(self._focus_control.dioptres(self._control)))
        else:
            meta.setdefault("focus_control", None)
            meta.setdefault("focus_dioptres", None)
        now = time.monotonic_ns()
        meta.setdefault("timestamp_ns", now)
        meta.setdefault("host_time_ns", now)
        meta.setdefault("settled", self._settled)
        self._frame_index += 1
        return Frame(image=image, metadata=meta)

    @abc.abstractmethod
    def _capture(self) -> tuple[np.ndarray, dict[str, Any]]:
        """Read one frame: ``(image (H, W, 3) float32 in [0, 1], metadata dict)``."""

    def lock_exposure(self) -> dict[str, Any]:
        """Freeze exposure, gain and white balance at their current values (before a sweep).

        Returns the locked values (empty where the backend cannot lock them).
        """
        self._check_open()
        return {}

    def unlock_exposure(self) -> None:
        """Return exposure and white balance to automatic control."""

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Release the camera. Safe to call more than once and from ``__exit__``."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._close()
        except Exception as e:  # noqa: BLE001 - closing must not raise over the original error
            log.warning("%s camera: error while closing: %s", self.kind, e)

    @abc.abstractmethod
    def _close(self) -> None:
        """Release the hardware (called once)."""

    def __enter__(self) -> "Camera":
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter shutdown
        try:
            if not self._closed:
                self.close()
        except Exception:  # noqa: BLE001
            pass

    def describe(self) -> dict[str, Any]:
        """A plain description for logs and the ``capture`` block of recorded stacks."""
        lo, hi = self.control_range
        return {
            "camera": self.kind,
            "image_size": list(self.image_size),
            "control": self._focus_control.control,
            "control_range": [lo, hi],
            "focus_control": self._focus_control.to_dict(),
            "settle_time_s": self.settle_time_s,
        }


def _fmt_m(d: float) -> str:
    return "infinity" if math.isinf(d) else f"{d:.3g} m"
