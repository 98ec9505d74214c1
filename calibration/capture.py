"""The capture loop (camera-agnostic): settle time, preview checks, focus sweeps of the chart.

Works with any camera that satisfies :class:`calibration.camera_protocol.CalibrationCamera`
(every ``device`` backend, and the chart simulator). No prompts here: the wizard asks the person; this
module captures and checks, and says in plain words what is wrong.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from calibration.camera_protocol import command_focus, frame_control, sweep_axis
from calibration.chart import ChartSpec
from calibration.fit import FitConfig, Sweep, check_sweep
from calibration.measure import FrameMeasurement, MeasureConfig, measure_frame

__all__ = [
    "CaptureError",
    "CaptureConfig",
    "SettleResult",
    "SweepCapture",
    "measure_settle",
    "preview",
    "capture_sweep",
]

log = logging.getLogger(__name__)


class CaptureError(RuntimeError):
    """A capture step failed in a way the person must fix (the message says how)."""


@dataclass(frozen=True)
class CaptureConfig:
    """Options of the capture loop.

    Attributes:
        frames: focus values per sweep (spread evenly over the camera's range).
        sweep_range: ``(lo, hi)`` raw values to sweep instead of the camera's whole range.
        settle_frames: frames to drop after each move and settle wait (``None``: what
            :func:`measure_settle` found, else 0).
        max_motion_px: the chart may move at most this much (pixels) between two frames at the same focus.
        min_found_fraction: the chart must be found in at least this fraction of a sweep's frames.
        max_tilt_keystone: warn when the chart's keystone (relative spacing difference) exceeds this.
        bit_depth: frames are quantised to this (8 or 16, as they are saved) before they are measured;
            ``None`` keeps them as captured.
        measure: chart measurement options.
    """

    frames: int = 15
    sweep_range: tuple[float, float] | None = None
    settle_frames: int | None = None
    max_motion_px: float = 0.6
    min_found_fraction: float = 0.7
    max_tilt_keystone: float = 0.02
    bit_depth: int | None = 8
    measure: MeasureConfig = MeasureConfig()

    def __post_init__(self) -> None:
        if self.frames < 6:
            raise ValueError(f"a sweep needs at least 6 frames, got {self.frames}")
        if self.settle_frames is not None and self.settle_frames < 0:
            raise ValueError("settle_frames must be >= 0")


@dataclass(frozen=True)
class SettleResult:
    """How long the focus actuator takes to settle after a full-range move.

    Attributes:
        settle_frames: frames after the move command until the image stops changing (the worst of the
            moves tried); the first frame after a command counts as frame 0.
        settle_time_s: the same as time: from the first frame after the command to the first settled one.
        frame_interval_s: median time between frames.
        changes: per move, the per-frame image change (mean absolute difference to the settled image).
        noise: the change between two frames of a still image (the threshold's base).
    """

    settle_frames: int
    settle_time_s: float
    frame_interval_s: float
    changes: tuple[tuple[float, ...], ...]
    noise: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "settle_frames": self.settle_frames,
            "settle_time_s": self.settle_time_s,
            "frame_interval_s": self.frame_interval_s,
            "noise": self.noise,
            "changes": [list(c) for c in self.changes],
        }


def _signature(image: np.ndarray) -> np.ndarray:
    """A small grey version of a frame for change detection."""
    import cv2

    g = np.asarray(image, np.float32)
    g = g.mean(axis=2) if g.ndim == 3 else g
    h, w = g.shape
    f = max(1, min(h, w) // 60)  # about 60 px high: averages the noise down, keeps the blur's effect
    return cv2.resize(g, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)


def _timestamp_s(frame: Any) -> float | None:
    t = frame.metadata.get("timestamp_ns") if isinstance(frame.metadata, dict) else None
    return None if t is None else float(t) / 1e9


def measure_settle(camera: Any, max_frames: int = 30, moves: int = 2) -> SettleResult:
    """Measure the focus actuator's settle time: after a full-range move, count frames until the image
    stops changing.

    The lens is parked at one end of the range (with the camera's own settle wait and a few extra
    frames), then commanded to the other end, and frames are captured back to back with no wait. The
    image is "settled" from the first frame after which every frame differs from the final image by no
    more than a still image's noise allows. Done in both directions (``moves``); the worst counts.

    Raises:
        CaptureError: the image never settles within ``max_frames`` frames (a moving scene?).
    """
    axis, lo, hi = sweep_axis(camera)
    ends = [(lo, hi), (hi, lo)][: max(1, moves)]
    all_changes: list[tuple[float, ...]] = []
    worst = 0
    worst_t = 0.0
    intervals: list[float] = []
    noise_all: list[float] = []
    for start, stop in ends:
        command_focus(camera, axis, start)
        camera.wait_settled()
        steady = [camera.capture() for _ in range(6)]
        sig_steady = [_signature(f.image) for f in steady[-3:]]
        noise = float(np.mean([np.mean(np.abs(a - b)) for a, b in zip(sig_steady[:-1], sig_steady[1:])]))
        noise_all.append(noise)
        command_focus(camera, axis, stop)
        frames = [camera.capture() for _ in range(max_frames)]
        sigs = [_signature(f.image) for f in frames]
        final = np.mean(sigs[-3:], axis=0)
        change = [float(np.mean(np.abs(s - final))) for s in sigs]
        thr = 2.5 * noise + 1e-4
        moved = max(change) > 4 * thr
        if not moved:
            log.warning("focus move %g -> %g changed the image by only %.2g: is the chart in view?", start, stop, max(change))
        settled_at = None
        for i in range(len(change) - 3):
            if all(c <= thr for c in change[i:-3]):
                settled_at = i
                break
        if settled_at is None:
            raise CaptureError(
                f"the image did not stop changing within {max_frames} frames after a focus move: keep the camera and "
                "the chart still (and the light steady) while the settle time is measured"
            )
        ts = [_timestamp_s(f) for f in frames]
        if all(t is not None for t in ts):
            tt = np.array(ts, dtype=np.float64)
            intervals.extend(np.diff(tt).tolist())
            t_settle = float(tt[settled_at] - tt[0])
        else:
            t_settle = math.nan
        all_changes.append(tuple(change))
        if settled_at >= worst:
            worst = settled_at
            worst_t = t_settle
    interval = float(np.median(intervals)) if intervals else math.nan
    if not math.isfinite(worst_t) and math.isfinite(interval):
        worst_t = worst * interval
    return SettleResult(int(worst), float(worst_t), interval, tuple(all_changes), float(np.mean(noise_all)))


@dataclass
class PreviewResult:
    """What a quick look at the chart says: usable or not, and why."""

    measurement: FrameMeasurement
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def preview(camera: Any, spec: ChartSpec, config: CaptureConfig = CaptureConfig(), focus_value: float | None = None,
            distance_m: float | None = None) -> PreviewResult:
    """Capture two frames at one focus setting and check the chart: found, not over-exposed, not moving,
    facing the camera.

    Args:
        camera: the camera.
        spec: the chart.
        config: options.
        focus_value: raw focus value to look at (default: the middle of the range).
        distance_m: the chart distance (for the tilt estimate in messages).
    """
    axis, lo, hi = sweep_axis(camera)
    v = 0.5 * (lo + hi) if focus_value is None else focus_value
    command_focus(camera, axis, v)
    camera.wait_settled()
    for _ in range(config.settle_frames or 0):
        camera.capture()
    f1, f2 = camera.capture(), camera.capture()
    m1 = measure_frame(f1.image, spec, config.measure)
    m2 = measure_frame(f2.image, spec, config.measure)
    out = PreviewResult(m1)
    if not m1.found:
        out.problems.append(m1.problem)
        return out
    if m1.over_exposed:
        out.problems.append(m1.problem)
    if not m2.found:
        out.problems.append("the chart was found in one frame but not the next: is it moving, or the light flickering?")
    else:
        d = math.hypot(m1.centre_px[0] - m2.centre_px[0], m1.centre_px[1] - m2.centre_px[1])
        if d > config.max_motion_px:
            out.problems.append(f"the chart moved {d:.1f} px between two frames: fix the chart and the camera so neither moves")
    kx, ky = m1.keystone
    if max(abs(kx), abs(ky)) > config.max_tilt_keystone:
        tilt = ""
        if distance_m is not None:
            span = spec.pitch_m[0] * (spec.columns - 1) * spec.scale
            deg = math.degrees(math.atan(max(abs(kx), abs(ky)) * distance_m / span))
            tilt = f" (about {deg:.0f} degrees)"
        out.warnings.append(f"the chart looks tilted{tilt}: turn it to face the camera squarely")
    return out


@dataclass
class SweepCapture:
    """One captured sweep and what the checks say about it.

    Attributes:
        distance_m: the measured chart distance.
        controls: ``(S,)`` raw focus values of the frames (from the frame metadata).
        images: ``(S, H, W, 3)`` float32 frames.
        measurements: per frame.
        timestamps_ns: per frame, where the camera gives them.
        problems: reasons to refuse this capture (empty: accepted).
        warnings: things to mention.
        metadata: the first frame's metadata and the camera description, for the ``capture`` block.
    """

    distance_m: float
    controls: np.ndarray
    images: np.ndarray
    measurements: list[FrameMeasurement]
    timestamps_ns: list[int | None]
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def sweep(self) -> Sweep:
        """The measurements as a :class:`calibration.fit.Sweep`."""
        ok = [m.usable for m in self.measurements]
        return Sweep(
            distance_m=self.distance_m,
            control=self.controls,
            scale_px_per_m=np.array([m.scale_px_per_m if u else math.nan for m, u in zip(self.measurements, ok)]),
            sigma_px=np.array([m.sigma_px if u else math.nan for m, u in zip(self.measurements, ok)]),
            scale_rel_err=np.array([m.scale_rel_err for m in self.measurements]),
            sigma_err_px=np.array([m.sigma_err_px for m in self.measurements]),
            label=f"{self.distance_m:.3g} m",
            problems=tuple(dict.fromkeys(m.problem for m in self.measurements if m.problem)),
        )


def _trajectory_residual(meas: Sequence[FrameMeasurement]) -> float:
    """How far the chart centre strays from pure focus breathing (scaling about a fixed point), pixels."""
    pts = [(m.centre_px, m.scale_px_per_m) for m in meas if m.found]
    if len(pts) < 5:
        return 0.0
    c = np.array([p[0] for p in pts])
    s = np.array([p[1] for p in pts])
    r = s / s.mean()
    A = np.column_stack([np.ones_like(r), r])
    res = []
    for k in range(2):
        coef, *_ = np.linalg.lstsq(A, c[:, k], rcond=None)
        res.append(c[:, k] - A @ coef)
    return float(np.sqrt(np.mean(np.square(res)) * len(r) / max(1, len(r) - 2)))


def capture_sweep(
    camera: Any,
    spec: ChartSpec,
    distance_m: float,
    config: CaptureConfig = CaptureConfig(),
    settle_frames: int = 0,
    progress: bool = True,
    on_frame: Callable[[int, FrameMeasurement], None] | None = None,
) -> SweepCapture:
    """Sweep the focus over the camera's range with the chart at ``distance_m`` and check the result.

    Each focus value is commanded, the camera's settle wait is done, ``settle_frames`` frames are dropped
    (the measured actuator settle), and one frame is kept. At the end the first focus value is visited
    again: the chart must look the same (not moved). The capture is refused (``problems``) when the
    chart is missing from too many frames, over-exposed, moved, or the sweep never passes through focus.
    """
    axis, lo, hi = sweep_axis(camera)
    if config.sweep_range is not None:
        lo, hi = config.sweep_range
    values = np.linspace(lo, hi, config.frames)
    drop = config.settle_frames if config.settle_frames is not None else settle_frames
    images, controls, meas, stamps = [], [], [], []
    first_meta: dict[str, Any] = {}
    it: Any = range(len(values))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(values) + 1, desc=f"sweep at {distance_m:.3g} m", unit="frame", leave=False, disable=None)
    try:
        for i in it:
            v = float(values[i])
            command_focus(camera, axis, v)
            camera.wait_settled()
            for _ in range(drop):
                camera.capture()
            fr = camera.capture()
            if not first_meta and isinstance(fr.metadata, dict):
                first_meta = {k: val for k, val in fr.metadata.items() if isinstance(val, (int, float, str, bool)) or val is None}
            controls.append(frame_control(fr, axis, v) if axis == "control" else frame_control(fr, "dioptres", v))
            img = np.asarray(fr.image, np.float32)
            if config.bit_depth:
                # measured exactly as it will be stored, so that an offline re-fit gives the same lens
                top = float(2**config.bit_depth - 1)
                img = (np.round(np.clip(img, 0.0, 1.0) * top) / top).astype(np.float32)
            images.append(img)
            stamps.append(fr.metadata.get("timestamp_ns") if isinstance(fr.metadata, dict) else None)
            m = measure_frame(img, spec, config.measure)
            meas.append(m)
            if on_frame is not None:
                on_frame(i, m)
            if bar is not None:
                bar.set_postfix_str(f"blur {m.sigma_px:.2f} px" if m.found else "chart not found")
                bar.update(1)
        # back to the first focus value: the chart must not have moved
        command_focus(camera, axis, float(values[0]))
        camera.wait_settled()
        for _ in range(drop):
            camera.capture()
        again = measure_frame(camera.capture().image, spec, config.measure)
        if bar is not None:
            bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    cap = SweepCapture(
        distance_m=float(distance_m),
        controls=np.asarray(controls, np.float64),
        images=np.stack(images),
        measurements=meas,
        timestamps_ns=stamps,
        metadata=first_meta,
    )
    _check(cap, again, config)
    return cap


def _check(cap: SweepCapture, again: FrameMeasurement, config: CaptureConfig) -> None:
    meas = cap.measurements
    found = [m.found for m in meas]
    n_found = sum(found)
    if n_found < config.min_found_fraction * len(meas):
        why = next((m.problem for m in meas if not m.found), "")
        cap.problems.append(
            f"the chart was found in only {n_found} of {len(meas)} frames ({why}). Put the whole chart in view, "
            "evenly lit, and try again"
        )
        return
    over = sum(m.over_exposed for m in meas if m.found)
    if over > 0.2 * n_found:
        cap.problems.append(f"{over} frames are over-exposed: lower the exposure or the light and capture again")
    first = meas[0]
    if first.found and again.found:
        d = math.hypot(first.centre_px[0] - again.centre_px[0], first.centre_px[1] - again.centre_px[1])
        ds = abs(again.scale_px_per_m / first.scale_px_per_m - 1)
        if d > config.max_motion_px or ds > 20 * max(first.scale_rel_err, 1e-4):
            cap.problems.append(
                f"the chart or the camera moved during the sweep (the first frame taken again is off by {d:.1f} px, "
                f"{ds * 100:.2f}% in scale): fix both in place and capture again"
            )
    traj = _trajectory_residual(meas)
    if traj > config.max_motion_px:
        cap.problems.append(f"the chart wandered {traj:.1f} px during the sweep (more than focus breathing explains): keep it still")
    why = check_sweep(cap.sweep(), FitConfig(min_frames=max(4, int(config.min_found_fraction * len(meas) * 0.8))))
    if why:
        cap.problems.append(why)
    kx = [max(abs(m.keystone[0]), abs(m.keystone[1])) for m in meas if m.found]
    if kx and float(np.median(kx)) > config.max_tilt_keystone:
        cap.warnings.append("the chart looks tilted: turn it to face the camera squarely")
