"""What the calibration capture loop needs from a camera, and how it opens one.

The loop is written against :class:`CalibrationCamera`, a small structural protocol that
``device.cameras.base.Camera`` (every backend of the ``device`` package) satisfies, and so does the
chart simulator :class:`calibration.simulate.ChartSimCamera`. Focus is swept in the camera's *raw*
control value when the camera offers :meth:`set_focus_control` and :attr:`control_range` (the mapping
from raw value to dioptres is what calibration measures); otherwise in the dioptres of the camera's
nominal mapping, recording the raw value the frame metadata reports (``focus_control``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from model.lens import LensProfile

__all__ = ["FrameLike", "CalibrationCamera", "Frame", "SIM_KIND", "sweep_axis", "command_focus", "frame_control", "open_calibration_camera"]

#: The chart simulator of this package (a camera that sees the printed chart at a chosen distance).
SIM_KIND = "chart-sim"


@runtime_checkable
class FrameLike(Protocol):
    """A captured frame: ``image`` ``(H, W, 3)`` float32 RGB in ``[0, 1]`` and a ``metadata`` dict with at
    least ``focus_control`` (raw value commanded for the frame) and ``timestamp_ns``."""

    image: np.ndarray
    metadata: dict[str, Any]


@runtime_checkable
class CalibrationCamera(Protocol):
    """The camera interface the calibration loop uses (a subset of ``device.cameras.base.Camera``)."""

    @property
    def focus_range_dioptres(self) -> tuple[float, float]:
        """``(lo, hi)`` dioptres reachable under the camera's current (nominal) mapping."""
        ...

    def set_focus(self, dioptres: float) -> None:
        """Command focus in dioptres (non-blocking)."""
        ...

    def wait_settled(self, timeout_s: float | None = None) -> None:
        """Block until a frame exposed after the lens arrived can be read."""
        ...

    def capture(self) -> FrameLike:
        """The next frame."""
        ...

    def close(self) -> None:
        """Release the camera (idempotent)."""
        ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> None: ...


@dataclass(frozen=True)
class Frame:
    """A frame as returned by :class:`calibration.simulate.ChartSimCamera` (same fields as
    ``device.cameras.base.Frame``)."""

    image: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)


def sweep_axis(camera: Any) -> tuple[str, float, float]:
    """How to sweep this camera: ``("control", lo, hi)`` in raw control values when it has
    ``set_focus_control`` and ``control_range``, else ``("dioptres", lo, hi)``."""
    rng = getattr(camera, "control_range", None)
    if rng is not None and callable(getattr(camera, "set_focus_control", None)):
        lo, hi = float(rng[0]), float(rng[1])
        return ("control", lo, hi)
    lo, hi = camera.focus_range_dioptres
    return ("dioptres", float(lo), float(hi))


def command_focus(camera: Any, axis: str, value: float) -> None:
    """Command ``value`` on ``axis`` (``"control"`` or ``"dioptres"``)."""
    if axis == "control":
        camera.set_focus_control(float(value))
    else:
        camera.set_focus(float(value))


def frame_control(frame: FrameLike, axis: str, commanded: float) -> float:
    """The raw control value of a frame: its metadata ``focus_control`` when present, else ``commanded``
    (which is then a raw value only if ``axis == "control"``)."""
    v = frame.metadata.get("focus_control") if isinstance(frame.metadata, dict) else None
    if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v):
        return float(v)
    return float(commanded)


def open_calibration_camera(kind: str, lens: LensProfile | None = None, **opts: Any) -> Any:
    """Open a camera for calibration.

    ``kind == "chart-sim"`` opens :class:`calibration.simulate.ChartSimCamera` (options: see its
    constructor); any other kind goes to ``device.cameras.open_camera(kind, lens=lens, **opts)``.

    Raises:
        ValueError: unknown kind or bad options (the message lists what is known).
    """
    if kind == SIM_KIND:
        from calibration.simulate import ChartSimCamera

        return ChartSimCamera(**opts)
    try:
        from device.cameras import open_camera  # type: ignore[attr-defined]
    except ImportError as e:
        raise ValueError(f"camera kind {kind!r} needs the device package ({e}); '{SIM_KIND}' is always available") from None
    return open_camera(kind, lens=lens, **opts)
