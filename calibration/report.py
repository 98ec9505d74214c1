"""The picture of a fit: measured against modelled blur and image scale over the focus values, per
distance, with residuals (matplotlib, Agg backend; no display needed)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from calibration.fit import FitResult
from model.atomic import atomic_write_bytes

__all__ = ["plot_fit", "render_fit_png", "coverage_text"]


def render_fit_png(result: FitResult, title: str | None = None, dpi: int = 110) -> bytes:
    """Draw the fit and return PNG bytes.

    Panels: blur (pixels) against the raw focus value, measured points and model curve per distance
    (hollow points were left out or down-weighted); image scale times distance (``s / p``: the focus
    breathing) against the focus value; the residuals of both.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 7.5))
    axes = fig.subplots(2, 2, gridspec_kw={"height_ratios": [2.2, 1]}, sharex="col")
    (ax_b, ax_s), (ax_rb, ax_rs) = axes
    colours = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, max(2, len(result.sweeps))))
    delta = result.params["delta_m"]
    for i, sw in enumerate(result.sweeps):
        c = colours[i]
        valid = sw.valid
        vscale = sw.valid_scale
        used = result.used[i]
        inl = result.inlier[i]
        lo, hi = float(sw.control.min()), float(sw.control.max())
        vv = np.linspace(lo, hi, 300)
        label = f"{sw.distance_m:.3g} m" + ("" if used.any() else " (not used)")
        # blur
        ax_b.plot(vv, result.model_sigma(vv, sw.distance_m), "-", color=c, lw=1.5)
        ax_b.plot(sw.control[inl], sw.sigma_px[inl], "o", color=c, ms=5, label=label)
        out = valid & ~inl
        if out.any():
            ax_b.plot(sw.control[out], sw.sigma_px[out], "o", mfc="none", mec=c, ms=6)
        if sw.name in result.focus_crossings:
            ax_b.axvline(result.focus_crossings[sw.name], color=c, lw=0.8, ls=":")
        # scale x distance = s / p
        dd = sw.distance_m + delta
        ax_s.plot(vv, result.model_scale(vv, sw.distance_m) * dd, "-", color=c, lw=1.5)
        ax_s.plot(sw.control[vscale], sw.scale_px_per_m[vscale] * dd, "o", color=c, ms=5, mfc=c if used.any() else "none", label=label)
        # residuals
        ax_rb.plot(sw.control[valid], result.sigma_residual_px[i][valid], "o", color=c, ms=4, mfc=c if used.any() else "none")
        ax_rs.plot(sw.control[vscale], 1e6 * result.scale_residual_rel[i][vscale], "o", color=c, ms=4, mfc=c if used.any() else "none")
    for ax in (ax_rb, ax_rs):
        ax.axhline(0, color="0.4", lw=0.8)
        ax.set_xlabel(f"focus control value v ({result.lens.focus_control.control if result.lens.focus_control else 'raw'})")
        ax.grid(alpha=0.3)
    ax_b.set_ylabel("blur sigma (px)")
    ax_b.set_title("blur: measured (points) and model (lines); dotted: in focus")
    ax_b.legend(title="chart distance", fontsize=8)
    ax_b.grid(alpha=0.3)
    ax_s.set_ylabel("image scale x distance = s / p  (px)")
    ax_s.set_title("focus breathing: image scale over the sweep")
    ax_s.grid(alpha=0.3)
    ax_rb.set_ylabel("blur residual (px)")
    ax_rs.set_ylabel("scale residual (ppm)")
    p, e = result.params, result.stderr
    fc = result.lens.focus_control
    head = title or result.lens.name
    fig.suptitle(
        f"{head}:  f = {p['f_m'] * 1e3:.3f} ± {e['f_m'] * 1e3:.3f} mm,  N = {p['N']:.3f} ± {e['N']:.3f},  "
        f"p = {p['p_m'] * 1e6:.3f} ± {e['p_m'] * 1e6:.3f} µm"
        + (f" at {result.lens.image_size[0]}x{result.lens.image_size[1]}" if result.lens.image_size else "")
        + (f"\n1/d = {fc.a:.4f} v + {fc.b:.4f}  (± {e['a']:.4f}, ± {e['b']:.4f});" if fc else "\n")
        + f"  blur rms {result.lens.fit['rms_residual_px']:.3f} px, scale rms {result.lens.fit['scale_rms_rel'] * 1e6:.0f} ppm"
        + (f",  distance offset {p['delta_m'] * 1e3:+.1f} mm" if p["delta_m"] else ""),
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def plot_fit(result: FitResult, path: str | os.PathLike[str], title: str | None = None) -> Path:
    """Write the picture of ``result`` to ``path`` (PNG, atomically)."""
    return atomic_write_bytes(path, render_fit_png(result, title))


def coverage_text(distances_m: list[float], focus_range_dioptres: tuple[float, float] | None, width: int = 50) -> str:
    """A one-line text picture of the captured chart distances over the focus range (in dioptres)."""
    if focus_range_dioptres is None or not focus_range_dioptres[1] > focus_range_dioptres[0]:
        have = [1 / d for d in distances_m]
        lo, hi = 0.0, max(have + [4.0]) * 1.1
    else:
        lo, hi = focus_range_dioptres
    cells = ["-"] * width
    for d in distances_m:
        x = 1.0 / d
        i = int(round((x - lo) / (hi - lo) * (width - 1)))
        if 0 <= i < width:
            cells[i] = "#"
    far = "inf" if lo <= 0 else f"{1 / lo:.2g} m"
    near = f"{1 / hi:.2g} m" if hi > 0 else "?"
    return f"far {far} |{''.join(cells)}| {near} near   (# = captured; {len(distances_m)} distance{'s' if len(distances_m) != 1 else ''})"

