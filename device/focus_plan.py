"""Focus distances of a capture planned from the lens (``python -m device.capture --range NEAR FAR``).

The plan itself is :func:`model.sweep_plan.plan_focus_distances` (the same as ``python -m calibration
plan`` and the wizard's ``--range``); this module checks the planned distances against the camera (can
it focus there) and the depth model (does it predict depth over the range), and words the result for
the terminal. The planned distances then replace the model's own focus distances: they are what the
camera sweeps and what reaches the model's input with every stack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from model.lens import LensProfile
from model.sweep_plan import SweepPlan, plan_focus_distances

__all__ = ["CaptureFocusPlan", "plan_capture_focus"]


@dataclass(frozen=True)
class CaptureFocusPlan:
    """The focus sweep a capture will use.

    Attributes:
        plan: the full :class:`model.sweep_plan.SweepPlan` (depth uncertainty against distance, ...).
        focus_m: ``S`` focus distances, metres, nearest first: the ones swept and given to the model.
        control_values: the camera's raw focus values for them (the lens profile's ``focus_control``),
            or ``None`` when the profile has no mapping.
        control_name: the name of that control (e.g. ``LensPosition``), or ``None``.
        warnings: one line each: the lens's (what it cannot resolve and what helps) and the model's
            (a range reaching outside the depths it predicts).
    """

    plan: SweepPlan
    focus_m: list[float]
    control_values: list[float] | None
    control_name: str | None
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The plan for the terminal: one line with the focus distances (and control values), then the
        typical depth error, then one line per warning (prefixed ``warning:``)."""
        p = self.plan
        focus = ", ".join(f"{f:.3g}" for f in self.focus_m)
        head = f"sweep plan for {p.near_m:g}-{p.far_m:g} m, {len(self.focus_m)} frames: focus {focus} m"
        if self.control_values is not None:
            head += f" ({self.control_name or 'control'} " + ", ".join(f"{v:.4g}" for v in self.control_values) + ")"
        out = [head,
               f"  blur {p.blur_per_dioptre_px:.3g} px per dioptre at the model's input; typical depth error "
               f"{100 * p.rms_rel_err:.3g}% (even in dioptres {100 * p.even_dioptre_rel_err:.3g}%, even in metres "
               f"{100 * p.even_metre_rel_err:.3g}%; `python -m calibration plan` shows it against distance)"]
        out += [f"warning: {w}" for w in self.warnings]
        return out

    def against_model(self, model_range_m: Sequence[float]) -> "CaptureFocusPlan":
        """This plan with a warning added when the working range reaches outside ``model_range_m =
        (near, far)`` metres, the depths the model predicts (for a lens-aware model: once it has the lens)."""
        m_near, m_far = float(model_range_m[0]), float(model_range_m[1])
        p = self.plan
        if p.near_m >= m_near * (1 - 1e-6) and p.far_m <= m_far * (1 + 1e-6):
            return self
        w = (f"the model predicts depth only in {m_near:.3g}-{m_far:.3g} m for this lens: depths of the range "
             f"{p.near_m:g}-{p.far_m:g} m outside that come out as {m_near:.3g} or {m_far:.3g} m")
        return replace(self, warnings=[*self.warnings, w])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary for output metadata: the range, focus distances, control values, warnings."""
        return {"range_m": [self.plan.near_m, self.plan.far_m], "focus_m": list(self.focus_m),
                "control_values": None if self.control_values is None else list(self.control_values),
                "control": self.control_name, "warnings": list(self.warnings)}


def _fmt_m(x: float) -> str:
    return "infinity" if math.isinf(x) else f"{x:.3g} m"


def plan_capture_focus(
    lens: LensProfile,
    near_m: float,
    far_m: float,
    frames: int,
    camera: Any | None = None,
    model_range_m: Sequence[float] | None = None,
) -> CaptureFocusPlan:
    """Plan ``frames`` focus distances for depth over ``[near_m, far_m]`` metres and check them.

    Args:
        lens: the camera's lens profile at the resolution the model sees (its pixel pitch sets the blur
            in pixels; its ``focus_control``, if any, gives the control values).
        near_m, far_m: the working range, metres.
        frames: focus distances per stack (2-64).
        camera: an open camera (``device.cameras``); the planned distances must lie in its focus range.
        model_range_m: ``(near, far)`` metres the depth model predicts in; a working range reaching
            outside it adds a warning.

    Returns:
        A :class:`CaptureFocusPlan`.

    Raises:
        ValueError: a bad range or frame count (one line, from the planner), or a planned distance the
            camera cannot focus at (naming the distance, the camera's range and the fix).
    """
    plan = plan_focus_distances(lens, near_m, far_m, frames)
    focus = [float(x) for x in plan.focus_m]
    if camera is not None:
        lo, hi = camera.focus_range_dioptres
        nearest, farthest = camera.focus_range_m
        tol = 1e-9 + 1e-6 * max(abs(lo), abs(hi))
        bad = [f for f in focus if not lo - tol <= 1.0 / f <= hi + tol]
        if bad:
            raise ValueError(
                f"the working range {plan.near_m:g}-{plan.far_m:g} m needs focus at {', '.join(f'{f:.3g} m' for f in bad)}, "
                f"outside this {camera.kind} camera's focus range {_fmt_m(nearest)} to {_fmt_m(farthest)}; "
                "choose a range the lens can focus over (or check the lens profile's focus_control)"
            )
    controls = None if plan.control_values is None else [float(v) for v in plan.control_values]
    out = CaptureFocusPlan(plan=plan, focus_m=focus, control_values=controls, control_name=plan.control_name,
                           warnings=list(plan.warnings))
    return out if model_range_m is None else out.against_model(model_range_m)
