"""Calibration sessions on disk: one ``focal-stack/1`` folder per chart distance (``docs/FORMATS.md``,
"Calibration captures"), the chart description, and ``session.json``.

::

    SESSION/
      session.json      calibration-session/1: camera, guesses, settle time (what the wizard knew)
      chart.json        calibration-chart/1 (the stacks point at it: target.chart = "../chart.json")
      d0.400m/          stack.json (frames with focus_control, target.distance_m), frame_00.png, ...
      d0.800m/
      lens.json, fit.png   written by the fit

This module is the I/O layer: reading, writing, and turning stacks into :class:`calibration.fit.Sweep`
measurements (:func:`measure_session`).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from calibration.chart import ChartSpec, chart_dict_for_session, load_chart
from calibration.fit import LensGuess, Sweep
from calibration.measure import FrameMeasurement, MeasureConfig, measure_frame
from model.atomic import atomic_write_json
from model.errors import FormatError
from model.formats import FocalStack, find_stacks, read_stack, write_stack
from model.jsonfile import read_json_object
from model.lens import LensProfile

__all__ = [
    "SESSION_FORMAT",
    "SessionData",
    "stack_folder_name",
    "save_sweep",
    "read_session_info",
    "update_session_info",
    "write_session_chart",
    "measure_session",
]

log = logging.getLogger(__name__)

SESSION_FORMAT = "calibration-session/1"


def stack_folder_name(distance_m: float, session_dir: Path) -> str:
    """``d0.400m`` (with ``_2``, ``_3`` ... if taken)."""
    base = f"d{distance_m:.3f}m"
    name, i = base, 2
    while (session_dir / name).exists():
        name = f"{base}_{i}"
        i += 1
    return name


def write_session_chart(session_dir: str | os.PathLike[str], spec: ChartSpec) -> Path:
    """Write ``chart.json`` into the session folder (atomically)."""
    return atomic_write_json(Path(session_dir) / "chart.json", chart_dict_for_session(spec))


def read_session_info(session_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``session.json`` as a dict (empty if there is none)."""
    p = Path(session_dir) / "session.json"
    if not p.is_file():
        return {}
    d = read_json_object(p)
    if d.get("format", SESSION_FORMAT) != SESSION_FORMAT:
        raise FormatError(p, "format", f"expected {SESSION_FORMAT!r}, got {d.get('format')!r}")
    return d


def update_session_info(session_dir: str | os.PathLike[str], **changes: Any) -> Path:
    """Merge ``changes`` into ``session.json`` (atomically)."""
    d = read_session_info(session_dir)
    d["format"] = SESSION_FORMAT
    d.update(changes)
    return atomic_write_json(Path(session_dir) / "session.json", d)


def save_sweep(
    session_dir: str | os.PathLike[str],
    images: np.ndarray,
    controls: Sequence[float],
    distance_m: float,
    guess: LensProfile | None = None,
    capture: dict[str, Any] | None = None,
    bit_depth: int = 8,
) -> Path:
    """Write one sweep as a ``focal-stack/1`` calibration capture (atomically: temporary folder + rename).

    Args:
        session_dir: the session folder (its ``chart.json`` must exist: :func:`write_session_chart`).
        images: ``(S, H, W, 3)`` float32 frames in ``[0, 1]``, as captured (sRGB-encoded).
        controls: ``(S,)`` raw focus control values.
        distance_m: the measured chart distance.
        guess: the first guess of the lens (written as the stack's ``lens``); ``None`` writes a
            placeholder and says so under ``capture.lens_placeholder``.
        capture: capture metadata (camera, timestamps, checks).
        bit_depth: 8 or 16.

    Returns:
        The new stack folder.
    """
    session = Path(session_dir)
    if not (session / "chart.json").is_file():
        raise FileNotFoundError(f"{session / 'chart.json'}: missing (write the chart description first)")
    imgs = np.asarray(images, np.float32)
    cap = dict(capture or {})
    if guess is None:
        w = imgs.shape[2]
        guess = LensProfile(4e-3, 2.0, 1.4e-6 * 4000 / max(w, 1), name="placeholder")
        cap["lens_placeholder"] = True
    stack = FocalStack(
        images=imgs,
        focus_m=None,
        lens=guess,
        focus_control=np.asarray(controls, np.float64),
        target={"distance_m": float(distance_m), "chart": "../chart.json"},
        capture=cap,
    )
    folder = session / stack_folder_name(distance_m, session)
    return write_stack(folder, stack, bit_depth=bit_depth)


@dataclass
class SessionData:
    """A measured session.

    Attributes:
        sweeps: one per stack, in folder order.
        measurements: per stack, the per-frame measurements (frame order = sorted control values).
        stacks: the stack folders.
        image_size: ``(width, height)`` of the frames.
        info: ``session.json``.
        chart: the chart of the first stack.
        guess: the first guess (from ``session.json`` or the stacks' ``lens``), for warnings.
    """

    sweeps: list[Sweep]
    measurements: list[list[FrameMeasurement]]
    stacks: list[Path]
    image_size: tuple[int, int]
    info: dict[str, Any]
    chart: ChartSpec
    guess: LensGuess | None = None
    problems: list[str] = field(default_factory=list)


def _chart_for(stack: FocalStack, session_dir: Path) -> ChartSpec:
    assert stack.path is not None  # noqa: S101 - read_stack sets it
    sj = stack.path / "stack.json"
    target = stack.target or {}
    ref = target.get("chart")
    candidates = []
    if isinstance(ref, str) and ref:
        candidates.append(stack.path / ref)
    candidates += [stack.path / "chart.json", session_dir / "chart.json"]
    for c in candidates:
        if c.is_file():
            return load_chart(c)
    raise FormatError(sj, "target.chart", f"chart description not found (looked for {', '.join(str(c) for c in candidates)})")


def measure_session(
    session_dir: str | os.PathLike[str], config: MeasureConfig = MeasureConfig(), progress: bool = True
) -> SessionData:
    """Read every calibration capture under ``session_dir`` and measure the chart in every frame.

    Raises:
        FileNotFoundError: no such folder.
        FormatError: a stack without ``target.distance_m`` or ``focus_control``, an unreadable chart,
            frames of different sizes across stacks.
        CalibrationError: no stacks at all.
    """
    from calibration.fit import CalibrationError

    session = Path(session_dir)
    folders = find_stacks(session)
    if not folders:
        raise CalibrationError(
            f"{session}: no calibration captures (focal-stack/1 folders) found. Capture the chart at two or more "
            "distances with `python -m calibration.wizard`"
        )
    info = read_session_info(session)
    stacks = []
    total = 0
    for f in folders:
        st = read_stack(f, require_focus=False, load_images=False)
        sj = f / "stack.json"
        if st.focus_control is None:
            raise FormatError(sj, "frames[].focus_control", "missing: a calibration capture needs the raw focus value of every frame")
        if not st.target or "distance_m" not in st.target:
            raise FormatError(sj, "target.distance_m", "missing: the measured chart distance")
        stacks.append(st)
        total += len(st)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="measuring chart", unit="frame", leave=False, disable=None)
    sweeps: list[Sweep] = []
    all_meas: list[list[FrameMeasurement]] = []
    size: tuple[int, int] | None = None
    chart: ChartSpec | None = None
    guess: LensGuess | None = None
    try:
        for st in stacks:
            assert st.path is not None  # noqa: S101
            full = read_stack(st.path, require_focus=False)
            if size is None:
                size = full.size
            elif full.size != size:
                raise FormatError(st.path / "stack.json", "frames", f"frames are {full.size[0]}x{full.size[1]}, other stacks {size[0]}x{size[1]}")
            spec = _chart_for(full, session)
            chart = chart or spec
            if guess is None and not (full.capture or {}).get("lens_placeholder"):
                guess = LensGuess(full.lens.focal_length_m, full.lens.f_number, full.lens.pixel_pitch_m, name="session's first guess")
            meas = []
            for img in full.images:
                meas.append(measure_frame(img, spec, config))
                if bar is not None:
                    bar.update(1)
            all_meas.append(meas)
            assert full.focus_control is not None and full.target is not None  # noqa: S101 - checked above
            ok = [m.usable for m in meas]
            sweeps.append(
                Sweep(
                    distance_m=float(full.target["distance_m"]),
                    control=full.focus_control,
                    scale_px_per_m=np.array([m.scale_px_per_m if u else math.nan for m, u in zip(meas, ok)]),
                    sigma_px=np.array([m.sigma_px if u else math.nan for m, u in zip(meas, ok)]),
                    scale_rel_err=np.array([m.scale_rel_err for m in meas]),
                    sigma_err_px=np.array([m.sigma_err_px for m in meas]),
                    label=st.path.name,
                    problems=tuple(dict.fromkeys(m.problem for m in meas if m.problem)),
                )
            )
    finally:
        if bar is not None:
            bar.close()
    assert size is not None and chart is not None  # noqa: S101 - at least one stack
    g = info.get("guess")
    if isinstance(g, dict) and any(g.get(k) for k in ("focal_length_m", "f_number", "pixel_pitch_m")):
        guess = LensGuess(g.get("focal_length_m"), g.get("f_number"), g.get("pixel_pitch_m"), name=str(g.get("name", "expected")))
    return SessionData(sweeps, all_meas, list(folders), size, info, chart, guess)

