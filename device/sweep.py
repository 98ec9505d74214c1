"""The sweep scheduler: turns a camera into a stream of focal stacks.

The focus distances are the ones the model was trained for (``runner.focus_m``), mapped to control
values through the camera's focus mapping (the lens profile's ``focus_control``). Sweeps alternate
direction (near to far, then far to near: a ping-pong that never jumps the lens back across the whole
range; the end position is reused at once, without travel). Each move is followed by a settle wait
(:meth:`Camera.wait_settled`). Frames are aligned for focus breathing on arrival (:mod:`device.align`).

Two modes:

- ``"stack"``: one stack per sweep (``S`` frames), every frame new.
- ``"sliding"``: after the first sweep, a stack with every frame: the newest frame at each focus
  distance (so a stack is never older than one sweep, and the rate is the frame rate).
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from device.align import align_frame
from device.cameras.base import Camera, Frame
from model.formats import FocalStack
from model.lens import LensProfile
from model.optics import check_focus_distances

__all__ = ["SweepConfig", "CapturedStack", "SweepScheduler", "ping_pong_order", "check_focus_reachable"]

log = logging.getLogger(__name__)


def ping_pong_order(n: int, sweeps: int) -> list[int]:
    """Slot order of ``sweeps`` alternating sweeps over ``n`` focus slots: ``0..n-1, n-1..0, 0..n-1, ...``."""
    out: list[int] = []
    for k in range(sweeps):
        out.extend(range(n) if k % 2 == 0 else range(n - 1, -1, -1))
    return out


def check_focus_reachable(camera: Camera, focus_m: Sequence[float]) -> list[float]:
    """Raise ``ValueError`` naming the distance and the camera's range if a focus distance cannot be reached."""
    fs = check_focus_distances(list(focus_m), what="focus_m")
    lo, hi = camera.focus_range_dioptres
    near, far = camera.focus_range_m
    bad = [f for f in fs if not lo - 1e-9 <= 1.0 / f <= hi + 1e-9]
    if bad:
        far_s = "infinity" if math.isinf(far) else f"{far:.3g} m"
        raise ValueError(
            f"the model needs focus at {', '.join(f'{f:.3g} m' for f in bad)}, outside this {camera.kind} camera's "
            f"focus range {near:.3g} m to {far_s} ({lo:.3g}..{hi:.3g} dioptres); use a model trained for this "
            "camera's focus range or check the lens profile's focus_control"
        )
    return fs


@dataclass
class SweepConfig:
    """How to sweep.

    Attributes:
        mode: ``"stack"`` (a stack per sweep) or ``"sliding"`` (a stack per frame).
        align: undo focus breathing (needs a lens profile on the camera or given to the scheduler).
        reference_m: the focus distance frames are aligned to (``None``: the nearest).
        lock_exposure: lock exposure and white balance before the first sweep.
        settle: wait for the lens after every move (turn off only to measure what waiting buys).
    """

    mode: str = "stack"
    align: bool = True
    reference_m: float | None = None
    lock_exposure: bool = True
    settle: bool = True

    def validate(self) -> None:
        if self.mode not in ("stack", "sliding"):
            raise ValueError(f"mode must be 'stack' or 'sliding', got {self.mode!r}")


@dataclass
class CapturedStack:
    """A focal stack from the camera.

    Attributes:
        index: running number (0, 1, ...).
        images: ``(S, H, W, 3)`` float32, nearest focus first (aligned when ``aligned_to_m`` is set).
        focus_m: ``(S,)`` commanded focus distances, metres, nearest first.
        frames: per-frame metadata (as the camera gave it), nearest first.
        direction: ``"near-to-far"``, ``"far-to-near"`` or ``"sliding"``.
        full_sweep: every frame is new since the previous full-sweep stack (what the recorder keeps).
        aligned_to_m: the reference focus of the breathing alignment, or ``None``.
        exposure: the locked exposure values, if any.
    """

    index: int
    images: np.ndarray
    focus_m: np.ndarray
    frames: list[dict[str, Any]]
    direction: str
    full_sweep: bool = True
    aligned_to_m: float | None = None
    exposure: dict[str, Any] = field(default_factory=dict)
    camera: dict[str, Any] = field(default_factory=dict)

    @property
    def t_first_ns(self) -> int:
        """Host time the oldest frame arrived (``time.monotonic_ns``)."""
        return min(int(m["host_time_ns"]) for m in self.frames)

    @property
    def t_last_ns(self) -> int:
        """Host time the newest frame arrived (``time.monotonic_ns``)."""
        return max(int(m["host_time_ns"]) for m in self.frames)

    @property
    def focus_control(self) -> np.ndarray:
        return np.array([float(m["focus_control"]) for m in self.frames], np.float64)

    def capture_block(self) -> dict[str, Any]:
        """The ``capture`` block of ``stack.json``: camera, exposure, control values, timestamps."""
        keep = ("focus_control", "focus_dioptres", "timestamp_ns", "host_time_ns", "exposure_time_us", "analogue_gain",
                "digital_gain", "colour_gains", "gain", "settled", "frame_index", "lens_position_metadata")
        frames = [{k: _plain(m[k]) for k in keep if k in m and m[k] is not None} for m in self.frames]
        return {
            "camera": _plain(self.camera),
            "stack_index": self.index,
            "direction": self.direction,
            "exposure_locked": _plain(self.exposure),
            "aligned_to_m": self.aligned_to_m,
            "frames": frames,
        }

    def to_focal_stack(self, lens: LensProfile) -> FocalStack:
        """As a :class:`model.formats.FocalStack` (with the ``capture`` block) for ``write_stack``."""
        return FocalStack(images=self.images, focus_m=self.focus_m, lens=lens, focus_control=self.focus_control,
                          capture=self.capture_block())


def _plain(v: Any) -> Any:
    """JSON-friendly copy (tuples to lists, NumPy scalars to Python)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class SweepScheduler:
    """Sweeps ``camera`` over ``focus_m`` and yields :class:`CapturedStack` objects.

    Args:
        camera: an open camera.
        focus_m: the focus distances (metres) of a stack, any order (stacks are nearest first).
        config: a :class:`SweepConfig`.
        lens: the lens for breathing alignment (default: ``camera.lens``); without one, no alignment.
    """

    def __init__(self, camera: Camera, focus_m: Sequence[float], config: SweepConfig | None = None,
                 lens: LensProfile | None = None) -> None:
        self.config = config or SweepConfig()
        self.config.validate()
        fs = sorted(check_focus_reachable(camera, focus_m))
        if len(fs) < 2:
            raise ValueError(f"a focal stack needs at least 2 focus distances, got {fs}")
        self.camera = camera
        self.focus_m = fs
        self.controls = [camera.control_for_dioptres(1.0 / f) for f in fs]
        self.lens = lens if lens is not None else camera.lens
        if self.config.align and self.lens is None:
            log.warning("no lens profile: frames are not aligned for focus breathing")
        self.reference_m = (self.config.reference_m if self.config.reference_m is not None else fs[0]) if self.config.align and self.lens is not None else None
        self.frames_captured = 0
        self._exposure: dict[str, Any] = {}

    def _capture_slot(self, slot: int) -> Frame:
        cam = self.camera
        cam.set_focus_control(self.controls[slot])
        if self.config.settle:
            cam.wait_settled()
        fr = cam.capture()
        self.frames_captured += 1
        return fr

    def _prepare(self, fr: Frame, slot: int) -> np.ndarray:
        if self.reference_m is None or self.lens is None:
            return fr.image
        fd = fr.metadata.get("focus_dioptres")
        focus = 1.0 / fd if fd else self.focus_m[slot]
        return align_frame(fr.image, focus, self.reference_m, self.lens)

    def stacks(self, max_stacks: int | None = None, stop: threading.Event | None = None) -> Iterator[CapturedStack]:
        """Yield stacks until ``max_stacks`` or ``stop`` is set (checked between frames).

        Raises whatever the camera raises (:class:`CameraError` when it fails).
        """
        n = len(self.focus_m)
        if self.config.lock_exposure:
            self._exposure = self.camera.lock_exposure()
        camera_desc = self.camera.describe()
        images: list[np.ndarray | None] = [None] * n
        metas: list[dict[str, Any] | None] = [None] * n
        focus = [0.0] * n
        fresh = [False] * n
        emitted = 0
        sweep = 0
        while True:
            order = range(n) if sweep % 2 == 0 else range(n - 1, -1, -1)
            direction = "near-to-far" if sweep % 2 == 0 else "far-to-near"
            for slot in order:
                if stop is not None and stop.is_set():
                    return
                if max_stacks is not None and emitted >= max_stacks:
                    return
                fr = self._capture_slot(slot)
                images[slot] = self._prepare(fr, slot)
                meta = dict(fr.metadata)
                metas[slot] = meta
                fd = meta.get("focus_dioptres")
                focus[slot] = 1.0 / fd if fd else self.focus_m[slot]
                fresh[slot] = True
                if any(m is None for m in metas):
                    continue
                full = all(fresh)
                if self.config.mode == "stack" and not full:
                    continue
                stack = CapturedStack(
                    index=emitted,
                    images=np.stack(images),  # type: ignore[arg-type]
                    focus_m=np.array(focus, np.float64),
                    frames=[dict(m) for m in metas],  # type: ignore[arg-type]
                    direction=direction if self.config.mode == "stack" else "sliding",
                    full_sweep=full,
                    aligned_to_m=self.reference_m,
                    exposure=dict(self._exposure),
                    camera=camera_desc,
                )
                if full:
                    fresh = [False] * n
                emitted += 1
                yield stack
            sweep += 1

