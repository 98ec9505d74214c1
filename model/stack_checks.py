"""Does a focal stack carry any depth evidence? Checks shared by ``model.predict`` and ``device``.

Depth from defocus reads depth from how the blur *changes* between frames focused at different
distances. A stack whose frames are identical, constant (all black, all white, a lens cap) or taken at
the same focus distance has no such change: any depth predicted from it comes from the network's prior,
not from the scene. :func:`check_stack_evidence` finds these cases so that callers can say so (a
warning naming the stack and why, the reason in the output's metadata) and set the confidence to 0
where there is no evidence, never a confident depth from no evidence.

Thresholds are in units of one 8-bit grey level (1/255 of the [0, 1] range), so they hold for 8- and
16-bit frames alike:

- a frame is *constant* when its pixels' standard deviation is below ``CONSTANT_STD`` (black when,
  in addition, its brightest pixel is below ``BLACK_MAX``);
- two frames are *identical* when no pixel differs by more than ``IDENTICAL_MAX_DIFF`` (what 8-bit
  rounding of one and the same image gives; two real exposures differ by their noise);
- two focus distances *repeat* when they differ by less than ``REPEAT_DPT`` dioptres.

The stack has **no depth evidence** when fewer than two of its frames are usable, distinct images taken
at distinct focus distances.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from model.errors import FormatError

__all__ = [
    "StackEvidence",
    "check_stack_evidence",
    "check_frame_count",
    "no_evidence_confidence",
    "CONSTANT_STD",
    "BLACK_MAX",
    "IDENTICAL_MAX_DIFF",
    "REPEAT_DPT",
]

CONSTANT_STD = 0.5 / 255
BLACK_MAX = 2.0 / 255
IDENTICAL_MAX_DIFF = 1.0 / 255 + 1e-6
REPEAT_DPT = 1e-3


@dataclass
class StackEvidence:
    """What :func:`check_stack_evidence` found.

    Attributes:
        has_evidence: ``False`` when the stack cannot tell depth at all (set the confidence to 0).
        problems: one sentence per finding (empty for a good stack), e.g. ``"frames 2 and 3 are
            identical"``; a finding may reduce the evidence without removing it.
        reason: why there is no evidence (``None`` when there is some).
        constant_frames: indices (in the given order) of constant frames.
        identical_pairs: ``(i, j)`` index pairs of identical, non-constant frames.
        repeated_focus: ``(i, j)`` index pairs whose focus distances repeat.
    """

    has_evidence: bool = True
    problems: list[str] = field(default_factory=list)
    reason: str | None = None
    constant_frames: list[int] = field(default_factory=list)
    identical_pairs: list[tuple[int, int]] = field(default_factory=list)
    repeated_focus: list[tuple[int, int]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able numbers and strings (for the prediction's metadata)."""
        return {
            "has_evidence": self.has_evidence,
            "reason": self.reason,
            "problems": list(self.problems),
            "constant_frames": list(self.constant_frames),
            "identical_frames": [list(p) for p in self.identical_pairs],
            "repeated_focus": [list(p) for p in self.repeated_focus],
        }

    def summary(self) -> str:
        """One line: the reason there is no evidence, or the problems found, or ``"ok"``."""
        if self.reason:
            return self.reason
        return "; ".join(self.problems) if self.problems else "ok"


def _groups(pairs: list[tuple[int, int]], n: int) -> list[list[int]]:
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return [g for g in groups.values()]


def _names(idx: Sequence[int], names: Sequence[str] | None) -> str:
    if names is not None:
        return ", ".join(names[i] for i in idx)
    return ", ".join(str(i) for i in idx)


def check_stack_evidence(
    images: np.ndarray,
    focus_m: Sequence[float] | np.ndarray | None,
    frame_names: Sequence[str] | None = None,
) -> StackEvidence:
    """Find constant frames, identical frames and repeated focus distances in a stack.

    Args:
        images: ``(S, H, W, C)`` or ``(S, H, W)`` frames, float in [0, 1] (or uint8/uint16, scaled).
        focus_m: ``(S,)`` focus distances in metres (``None``: not known, not checked).
        frame_names: optional names of the frames (file names), used in the messages.

    Returns:
        A :class:`StackEvidence`; ``has_evidence`` is ``False`` when fewer than two frames are
        usable (non-constant), distinct images at distinct focus distances.

    Raises:
        ValueError: ``images`` is not a stack of frames, or ``focus_m`` has another length.
    """
    arr = np.asarray(images)
    if arr.ndim not in (3, 4) or arr.shape[0] < 1:
        raise ValueError(f"images must be (S, H, W[, C]), got {arr.shape}")
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        arr = arr.astype(np.float32) / 65535.0
    s = int(arr.shape[0])
    ev = StackEvidence()
    frames = arr.reshape(s, -1)

    constant: list[int] = []
    for i in range(s):
        f = frames[i]
        if float(np.nanstd(f)) < CONSTANT_STD:
            constant.append(i)
    ev.constant_frames = constant
    if constant:
        black = [i for i in constant if float(np.nanmax(frames[i])) < BLACK_MAX]
        rest = [i for i in constant if i not in black]
        if black:
            ev.problems.append(f"{'all frames are' if len(black) == s else 'frame(s) ' + _names(black, frame_names) + ' are'} black")
        if rest:
            ev.problems.append(f"{'all frames are' if len(rest) == s else 'frame(s) ' + _names(rest, frame_names) + ' are'} "
                               "one flat colour (no texture)")

    usable = [i for i in range(s) if i not in constant]
    identical: list[tuple[int, int]] = []
    for a_pos, i in enumerate(usable):
        for j in usable[a_pos + 1:]:
            if float(np.nanmax(np.abs(frames[i] - frames[j]))) <= IDENTICAL_MAX_DIFF:
                identical.append((i, j))
    ev.identical_pairs = identical
    image_groups = [g for g in _groups(identical, s) if g[0] in usable]
    for g in image_groups:
        if len(g) > 1:
            ev.problems.append(f"frames {_names(g, frame_names)} are identical (no change of defocus between them)")

    distinct_focus_groups: list[list[int]] | None = None
    if focus_m is not None:
        fm = np.asarray(focus_m, dtype=np.float64).reshape(-1)
        if fm.shape[0] != s:
            raise ValueError(f"{fm.shape[0]} focus distances for {s} frames")
        dpt = 1.0 / fm
        rep = [(i, j) for i in range(s) for j in range(i + 1, s) if abs(dpt[i] - dpt[j]) < REPEAT_DPT]
        ev.repeated_focus = rep
        distinct_focus_groups = _groups(rep, s)
        for g in distinct_focus_groups:
            if len(g) > 1:
                ev.problems.append(f"frames {_names(g, frame_names)} share the focus distance {fm[g[0]]:g} m")

    # evidence: two usable frames that are different images AND at different focus distances
    def same(groups: list[list[int]] | None, i: int, j: int) -> bool:
        return groups is not None and any(i in g and j in g for g in groups)

    pairs = [(i, j) for a_pos, i in enumerate(usable) for j in usable[a_pos + 1:]]
    ev.has_evidence = any(not same(image_groups, i, j) and not same(distinct_focus_groups, i, j) for i, j in pairs)
    if not ev.has_evidence:
        if s < 2:
            ev.reason = "a single frame: depth from defocus needs two or more"
        elif not usable:
            ev.reason = "no frame has any texture (" + "; ".join(ev.problems) + ")"
        elif len(usable) == 1:
            ev.reason = f"only frame {_names(usable, frame_names)} has any texture (" + "; ".join(ev.problems) + ")"
        elif all(same(image_groups, i, j) for i, j in pairs):
            ev.reason = "the frames are identical: the focus sweep never changed the image"
        elif all(same(distinct_focus_groups, i, j) for i, j in pairs):
            ev.reason = "every usable frame was taken at the same focus distance"
        else:
            ev.reason = "no two usable frames differ both in image and in focus distance"
    return ev


def no_evidence_confidence(shape: tuple[int, int]) -> np.ndarray:
    """A confidence map of zeros, ``(H, W)`` float32: what a stack without depth evidence gets."""
    return np.zeros(shape, np.float32)


def check_frame_count(n_frames: int, stack_json: str | os.PathLike[str], frame_files: Sequence[str] = ()) -> None:
    """Raise :class:`FormatError` naming ``stack_json`` (and the frame file) when a stack has fewer than 2 frames."""
    if n_frames >= 2:
        return
    what = f" ({', '.join(frame_files)})" if frame_files else ""
    raise FormatError(Path(stack_json), "frames",
                      f"{n_frames} frame{what}: depth from defocus needs a stack of 2 or more frames at different focus distances")
