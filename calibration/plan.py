"""Show a sweep plan (:func:`model.sweep_plan.plan_focus_distances`): a table for the terminal and a plot.

Used by ``python -m calibration plan`` and by the wizard's ``--range``.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np

from model.atomic import atomic_write_bytes
from model.sweep_plan import SweepPlan

__all__ = ["format_plan", "plot_plan"]


def _depth_rows(plan: SweepPlan, rows: int) -> list[int]:
    """Indices of ``rows`` depths spread evenly in dioptres over the plan's grid."""
    n = plan.depth_grid_m.size
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, rows)})


def format_plan(plan: SweepPlan, rows: int = 9) -> str:
    """The plan as lines of text: focus distances (and control values), the expected depth uncertainty
    against distance, the unresolved range and the warnings."""
    n = plan.noise
    lines = [
        f"sweep plan: {plan.frames} frames for {plan.near_m:g}-{plan.far_m:g} m "
        f"(blur {plan.blur_per_dioptre_px:.3g} px per dioptre; blur noise {n.noise_px:g} px + {100 * n.rel_noise:.0f}% of the blur, "
        f"lens blur at focus {n.sigma0_px:g} px)",
    ]
    head = f"  {'frame':>5} {'focus m':>9} {'dioptres':>9}"
    if plan.control_values is not None:
        head += f" {plan.control_name or 'control':>14}"
    lines.append(head)
    for i, fm in enumerate(plan.focus_m):
        row = f"  {i:>5} {fm:9.4g} {1.0 / fm:9.4g}"
        if plan.control_values is not None:
            row += f" {plan.control_values[i]:14.5g}"
        lines.append(row)
    lines.append("expected depth uncertainty (1 sigma):")
    lines.append(f"  {'depth m':>9} {'+/- m':>9} {'+/- %':>7}")
    for j in _depth_rows(plan, rows):
        d, sd, r = plan.depth_grid_m[j], plan.depth_std_m[j], plan.rel_std[j]
        flag = "  unresolved" if r > plan.resolve_rel_std else ""
        sd_txt = f"{sd:9.3g}" if math.isfinite(sd) else f"{'inf':>9}"
        pct = f"{100 * r:7.1f}" if math.isfinite(r) and r < 100 else f"{'>1e4':>7}"
        lines.append(f"  {d:9.3g} {sd_txt} {pct}{flag}")
    lines.append(
        f"typical relative depth error: {100 * plan.rms_rel_err:.3g}% (even in dioptres {100 * plan.even_dioptre_rel_err:.3g}%, "
        f"even in metres {100 * plan.even_metre_rel_err:.3g}%)"
    )
    if plan.unresolved_m:
        lines.append("cannot tell depth apart (above {:.0f}%): ".format(100 * plan.resolve_rel_std)
                     + ", ".join(f"{a:.3g}-{b:.3g} m" for a, b in plan.unresolved_m))
    else:
        lines.append(f"depth is resolved (better than {100 * plan.resolve_rel_std:.0f}%) over the whole range")
    lines += [f"warning: {w}" for w in plan.warnings]
    return "\n".join(lines)


def plot_plan(plan: SweepPlan, path: str | os.PathLike[str]) -> Path:
    """Save a PNG of the expected depth uncertainty against distance, the focus distances and the
    unresolved range (written atomically). Returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.2), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    d = plan.depth_grid_m
    pct = np.where(np.isfinite(plan.rel_std), 100 * plan.rel_std, np.nan)
    ax.plot(d, pct, color="C0", lw=2, label=f"this plan ({plan.frames} frames)")
    for a, b in plan.unresolved_m:
        ax.axvspan(a, b, color="C3", alpha=0.12, lw=0)
    ax.axhline(100 * plan.resolve_rel_std, color="C3", ls="--", lw=1,
               label=f"unresolved above {100 * plan.resolve_rel_std:.0f}%")
    for fm in plan.focus_m:
        ax.axvline(fm, color="0.4", lw=0.8, ls=":")
    ax.set_xlabel("depth, m (dotted: focus distances; shaded: cannot tell depth apart)")
    ax.set_ylabel("depth uncertainty, % of depth (1 sigma)")
    ax.set_yscale("log")
    ax.set_xlim(plan.near_m, plan.far_m)
    ax.set_title(f"sweep plan {plan.near_m:g}-{plan.far_m:g} m: {plan.blur_per_dioptre_px:.2g} px/dioptre, "
                 f"noise {plan.noise.noise_px:g} px", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(path, buf.getvalue())
