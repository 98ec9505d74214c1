"""The joint fit of focal length, f-number, pixel pitch and focus mapping (pure: no I/O).

Model (derivation in ``calibration/README.md``). A frame taken at raw focus control value ``v`` is
focused at ``1/d_f = a v + b`` dioptres; the sensor sits at ``s`` with ``1/s = 1/f - (a v + b)``.
A fronto-parallel chart at measured distance ``D`` (plus an optional common offset ``delta`` between
where the user measures from and the lens) images at

    scale  m(v, D) = s / ((D + delta) p)                                   pixels per metre of chart
    blur   sigma(v, D) = sqrt( (A s |a v + b - 1/(D + delta)| / (4 p))^2 + sigma0^2 )    pixels

with ``A = f / N``; ``A s |1/d_f - 1/D|`` equals the circle of confusion ``A f |D - d_f| / (D (d_f - f))``
of ``shared/FORMATS.md``. The fit minimises robust (soft-L1) residuals of both over all frames of all
distances, the two kinds weighted by their own scatter (iteratively re-weighted), starting from a
closed-form first guess. Why ``f, N, p, a, b`` are all determined only with two or more distances,
each swept through focus: scale gives ``s/p`` per frame (``p a`` and ``p (1/f - b)``); blur gives
``A a`` and, per distance, the control value ``v0`` that focuses at ``D`` (``a v0 + b = 1/D``); two
distances separate ``a`` from ``b`` and then everything else follows.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from model.lens import FocusControl, LensProfile

__all__ = [
    "CalibrationError",
    "Sweep",
    "LensGuess",
    "FitConfig",
    "FitResult",
    "model_scale_px_per_m",
    "model_sigma_px",
    "check_sweep",
    "initial_guess",
    "fit_lens",
    "suggest_distances",
]

log = logging.getLogger(__name__)

METHOD = "calibration/thin-lens-breathing-1"


class CalibrationError(ValueError):
    """The captures cannot give a trustworthy fit; the message says what to capture next."""


@dataclass(frozen=True)
class Sweep:
    """The measurements of one focus sweep of the chart at one distance.

    Attributes:
        distance_m: measured chart distance ``D``, metres.
        control: ``(n,)`` raw focus control values.
        scale_px_per_m: ``(n,)`` measured image scale (NaN where the chart was not found).
        sigma_px: ``(n,)`` measured blur, pixels (NaN where not found).
        scale_rel_err: ``(n,)`` 1-sigma relative errors of the scale (optional).
        sigma_err_px: ``(n,)`` 1-sigma errors of the blur (optional).
        label: a name for messages and the plot (e.g. the stack folder).
        problems: per-frame notes (why a frame was not usable), for messages.
    """

    distance_m: float
    control: np.ndarray
    scale_px_per_m: np.ndarray
    sigma_px: np.ndarray
    scale_rel_err: np.ndarray | None = None
    sigma_err_px: np.ndarray | None = None
    label: str = ""
    problems: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not (isinstance(self.distance_m, (int, float)) and math.isfinite(self.distance_m) and self.distance_m > 0):
            raise ValueError(f"distance_m must be a positive number of metres, got {self.distance_m!r}")
        c = np.asarray(self.control, np.float64).reshape(-1)
        n = c.size
        object.__setattr__(self, "control", c)
        for key in ("scale_px_per_m", "sigma_px", "scale_rel_err", "sigma_err_px"):
            v = getattr(self, key)
            if v is None:
                continue
            a = np.asarray(v, np.float64).reshape(-1)
            if a.size != n:
                raise ValueError(f"{key}: {a.size} values for {n} control values")
            object.__setattr__(self, key, a)
        if not np.all(np.isfinite(c)):
            raise ValueError("control values must be finite")

    @property
    def valid(self) -> np.ndarray:
        """``(n,)`` frames with a finite, positive scale and blur."""
        return self.valid_scale & np.isfinite(self.sigma_px) & (self.sigma_px >= 0)

    @property
    def valid_scale(self) -> np.ndarray:
        """``(n,)`` frames with a finite, positive scale (the chart was found)."""
        return np.isfinite(self.scale_px_per_m) & (self.scale_px_per_m > 0)

    @property
    def name(self) -> str:
        return self.label or f"{self.distance_m:.3g} m"


@dataclass(frozen=True)
class LensGuess:
    """Optional first guesses (from a preset or the user), used to check the fit, not to start it."""

    focal_length_m: float | None = None
    f_number: float | None = None
    pixel_pitch_m: float | None = None
    focus_control: FocusControl | None = None
    name: str = ""


@dataclass(frozen=True)
class FitConfig:
    """Options of :func:`fit_lens`.

    Attributes:
        fit_distance_offset: also fit a common offset ``delta`` added to every measured distance (where
            the tape was held against the camera vs the lens's principal plane). Determined by how the
            image scale changes between distances at the same focus setting.
        distance_offset_prior_m: 1-sigma prior on ``delta`` (keeps it near 0 when the data say little).
        loss: robust loss of :func:`scipy.optimize.least_squares` (``"soft_l1"``, ``"huber"``, ``"linear"``).
        loss_scale: residual (in units of the estimated scatter) beyond which the loss turns robust.
        min_distances: fewest sweeps through focus the fit accepts.
        min_dioptre_separation: the chart distances must span at least this, in dioptres (1/m).
        min_frames: fewest usable frames a sweep needs.
        max_rel_stderr: a fit whose ``f``, ``N`` or ``p`` is less certain than this (relative) is refused.
        control_name: the name of the raw control value (written into ``focus_control``).
    """

    fit_distance_offset: bool = True
    distance_offset_prior_m: float = 0.01
    loss: str = "soft_l1"
    loss_scale: float = 2.5
    min_distances: int = 2
    min_dioptre_separation: float = 0.4
    min_frames: int = 6
    max_rel_stderr: float = 0.05
    control_name: str = "LensPosition"


@dataclass
class FitResult:
    """The fitted lens and how well the model explains the measurements.

    Attributes:
        lens: the ``lens/1`` profile (``fit`` block filled in).
        params: fitted values ``f_m, N, p_m, a, b, sigma0_px, delta_m``.
        stderr: 1-sigma standard errors of the same (from the Jacobian at the solution).
        sweeps: the sweeps used (in the order given).
        used: per sweep, ``(n,)`` frames that entered the fit (their scale; their blur where measured).
        inlier: per sweep, ``(n,)`` frames whose blur the robust loss did not down-weight.
        scale_residual_rel: per sweep, ``(n,)`` relative scale residuals (measured / model - 1).
        sigma_residual_px: per sweep, ``(n,)`` blur residuals, pixels.
        warnings: things a person should know about the fit.
        dropped: ``(sweep name, why)`` for sweeps left out of the fit.
        focus_crossings: per used sweep, the control value that focuses at its distance.
    """

    lens: LensProfile
    params: dict[str, float]
    stderr: dict[str, float]
    sweeps: list[Sweep]
    used: list[np.ndarray]
    inlier: list[np.ndarray]
    scale_residual_rel: list[np.ndarray]
    sigma_residual_px: list[np.ndarray]
    warnings: list[str] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)
    focus_crossings: dict[str, float] = field(default_factory=dict)

    def model_scale(self, control: np.ndarray, distance_m: float) -> np.ndarray:
        """Model scale (pixels per metre) at the fitted parameters."""
        return model_scale_px_per_m(_vec(self.params), np.asarray(control, np.float64), distance_m)

    def model_sigma(self, control: np.ndarray, distance_m: float) -> np.ndarray:
        """Model blur (pixels) at the fitted parameters."""
        return model_sigma_px(_vec(self.params), np.asarray(control, np.float64), distance_m)

    def summary(self) -> str:
        """A few lines for a terminal."""
        p, e = self.params, self.stderr
        lines = [
            f"focal length  f = {p['f_m'] * 1e3:.4g} mm  (+/- {e['f_m'] * 1e3:.2g})",
            f"f-number      N = {p['N']:.4g}  (+/- {e['N']:.2g});  aperture {p['f_m'] / p['N'] * 1e3:.3g} mm",
            f"pixel pitch   p = {p['p_m'] * 1e6:.4g} um at {self.lens.image_size[0]}x{self.lens.image_size[1]}" if self.lens.image_size else
            f"pixel pitch   p = {p['p_m'] * 1e6:.4g} um",
            f"focus mapping 1/d = {p['a']:.5g} * v + {p['b']:.4g}  (+/- {e['a']:.2g}, {e['b']:.2g})",
            f"intrinsic blur {p['sigma0_px']:.3g} px;  distance offset {p['delta_m'] * 1e3:+.1f} mm",
            f"residuals: blur rms {self.lens.fit['rms_residual_px']:.3g} px, scale rms {self.lens.fit['scale_rms_rel'] * 1e6:.0f} ppm, "
            f"{self.lens.fit['samples']} frames at {len(self.used)} distances",
        ]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


# ----------------------------------------------------------------------------- the model

_NAMES = ("f_m", "N", "p_m", "a", "b", "sigma0_px", "delta_m")


def _vec(params: dict[str, float]) -> np.ndarray:
    return np.array([params[k] for k in _NAMES], np.float64)


def model_scale_px_per_m(theta: np.ndarray, control: np.ndarray, distance_m: float | np.ndarray) -> np.ndarray:
    """``s / ((D + delta) p)`` for ``theta = (f, N, p, a, b, sigma0, delta)``; NaN where ``1/s <= 0``."""
    f, _, p, a, b, _, delta = theta
    inv_s = 1.0 / f - (a * control + b)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(inv_s > 0, 1.0 / inv_s, np.nan)
    return s / ((np.asarray(distance_m) + delta) * p)


def model_sigma_px(theta: np.ndarray, control: np.ndarray, distance_m: float | np.ndarray) -> np.ndarray:
    """``sqrt((A s |a v + b - 1/(D + delta)| / (4 p))^2 + sigma0^2)`` pixels for ``theta``."""
    f, n, p, a, b, s0, delta = theta
    inv_s = 1.0 / f - (a * control + b)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(inv_s > 0, 1.0 / inv_s, np.nan)
    defocus = (f / n) * s * np.abs(a * control + b - 1.0 / (np.asarray(distance_m) + delta)) / (4.0 * p)
    return np.sqrt(defocus**2 + s0**2)


# ----------------------------------------------------------------------------- checks and first guess


@dataclass(frozen=True)
class _Vee:
    """A quadratic fit of the normalised blur squared over one sweep: ``q^2 = c2 v^2 + c1 v + c0``."""

    v0: float
    slope: float  # |A a| / 4, from sqrt(c2)
    floor: float  # sqrt(c0 - c1^2 / (4 c2)) in normalised units (px * p / s)
    inside: bool  # v0 inside the swept range, with frames on both sides
    inliers: np.ndarray  # (n,) bool over the sweep's frames: in `mask` and consistent with the vee


def _vee(sw: Sweep, mask: np.ndarray) -> _Vee | None:
    """Fit the vee robustly: the least-median-of-squares quadratic over triples of frames (every
    triple for short sweeps, a fixed sample for long ones), then frames whose blur departs from it by
    far more than the others' scatter (a mis-measured frame, e.g. a badly blurred end of the sweep
    read as sharp) are left out, at most a quarter of them, and the fit repeated by weighted least
    squares on the rest."""
    idx = np.flatnonzero(mask)
    v_all = sw.control[idx]
    q_all = sw.sigma_px[idx] / (sw.scale_px_per_m[idx] * sw.distance_m)
    n = idx.size
    if n < 4 or np.ptp(v_all) <= 0:
        return None
    floor = float(np.median(q_all))

    def rel_resid(coef: np.ndarray) -> np.ndarray:
        pred = np.sqrt(np.clip(coef[..., 0:1] * v_all**2 + coef[..., 1:2] * v_all + coef[..., 2:3], 0.0, None))
        return (q_all - pred) / (pred + floor)  # relative to the blur (plus a floor)

    # least median of squares over triples of frames (exact quadratics through three points)
    tri = np.array(list(itertools.combinations(range(n), 3)))
    if tri.shape[0] > 3000:
        tri = tri[np.random.default_rng(0).choice(tri.shape[0], 3000, replace=False)]
    V = np.stack([v_all[tri] ** 2, v_all[tri], np.ones(tri.shape)], axis=-1)  # (T, 3, 3)
    ok = np.abs(np.linalg.det(V)) > 1e-12 * max(1.0, float(np.max(np.abs(v_all)))) ** 3
    keep = np.ones(n, bool)
    if ok.any():
        coefs = np.linalg.solve(V[ok], (q_all[tri[ok]] ** 2)[..., None])[..., 0]  # (T', 3)
        med = np.median(np.abs(rel_resid(coefs)), axis=1)
        r0 = rel_resid(coefs[int(np.argmin(med))])
        scatter = 1.4826 * float(np.median(np.abs(r0)))
        keep = np.abs(r0) <= max(5.0 * scatter, 0.08)
        if keep.sum() < max(4, int(math.ceil(0.75 * n))):
            keep = np.ones(n, bool)
    coef = None
    for _round in range(4):
        v, q = v_all[keep], q_all[keep]
        if v.size < 4 or np.ptp(v) <= 0:
            return None
        A = np.column_stack([v * v, v, np.ones_like(v)])
        w = 1.0 / (q + floor)  # larger blur is measured with larger absolute error
        try:
            coef, *_ = np.linalg.lstsq(A * w[:, None], q * q * w, rcond=None)
        except np.linalg.LinAlgError:
            return None
        r = rel_resid(np.asarray(coef))
        scatter = 1.4826 * float(np.median(np.abs(r[keep] - np.median(r[keep]))))
        new_keep = np.abs(r) <= max(5.0 * scatter, 0.08)
        if new_keep.sum() < max(4, int(math.ceil(0.75 * n))) or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    assert coef is not None  # noqa: S101 - the loop ran
    c2, c1, c0 = coef
    if not c2 > 0:
        return None
    v = v_all[keep]
    v0 = -c1 / (2 * c2)
    floor2 = c0 - c1 * c1 / (4 * c2)
    n_lo, n_hi = int(np.sum(v < v0)), int(np.sum(v > v0))
    span = np.ptp(v)
    inside = v.min() + 0.02 * span < v0 < v.max() - 0.02 * span and n_lo >= 2 and n_hi >= 2
    inl = np.zeros(sw.control.size, bool)
    inl[idx[keep]] = True
    return _Vee(float(v0), float(math.sqrt(c2)), float(math.sqrt(max(floor2, 0.0))), bool(inside), inl)


def check_sweep(sw: Sweep, config: FitConfig = FitConfig()) -> str:
    """Why ``sw`` cannot anchor the fit (empty string if it can): too few frames with the chart found,
    or a sweep that never passes through focus."""
    ok = sw.valid
    n_ok = int(ok.sum())
    if n_ok < config.min_frames:
        why = f"; e.g. {sw.problems[0]}" if sw.problems else ""
        return (
            f"the chart was measured in only {n_ok} of {sw.control.size} frames{why}. Capture this distance again "
            "with the whole chart in view, evenly lit, not over-exposed"
        )
    vee = _vee(sw, ok)
    if vee is not None:  # judge the sweep by the frames that agree with each other (see `_vee`)
        ok = vee.inliers
    q = sw.sigma_px[ok]
    v = sw.control[ok]
    i = int(np.argmin(q))
    # sharpest at an end of the sweep, or no clear minimum inside it: the sweep never passes through focus
    if i in (0, q.size - 1) or vee is None or not vee.inside:
        end = "first" if i == 0 else "last" if i == q.size - 1 else None
        if end:
            where = f"the sharpest frame is the {end} one (control {v[i]:.4g})"
        elif i <= 1 or i >= q.size - 2:
            where = f"the blur has no clear minimum: the sharpest frame is next to the {'start' if i <= 1 else 'end'} of the sweep"
        else:
            where = "the blur has no clear minimum"
        return (
            f"the sweep never passes through focus ({where}): the chart at {sw.distance_m:.3g} m is outside the "
            "swept focus range. Move the chart to a distance the camera can focus on, or widen the sweep"
        )
    # blur that hardly changes over the sweep shows no focus crossing worth the name
    if not (q.max() - q.min() > max(0.25, 0.5 * q.min()) and q[i] < 0.8 * max(q[0], q[-1])):
        return (
            f"the blur hardly changes over the sweep at {sw.distance_m:.3g} m (from {q.min():.2f} to {q.max():.2f} px): "
            "the chart is too far to show defocus; move it closer"
        )
    return ""


def suggest_distances(
    have_m: Sequence[float],
    focus_range_dioptres: tuple[float, float] | None = None,
    count: int = 3,
    limits_m: tuple[float, float] | None = None,
) -> list[float]:
    """Chart distances (metres) worth capturing next, spread in dioptres away from those captured.

    With a known focus range, the suggestions lie inside its inner 76 % (so that the sweep passes
    through focus on both sides); otherwise between 0.25 and 1.5 m. ``limits_m = (near, far)`` keeps
    them where the chart fits in the frame and its squares are large enough.
    """
    lo, hi = (1 / 1.5, 4.0) if focus_range_dioptres is None else focus_range_dioptres
    span = hi - lo
    lo_in, hi_in = max(lo + 0.12 * span, 1 / 3.0), hi - 0.12 * span
    if hi_in <= lo_in:
        lo_in, hi_in = lo + 0.1 * span, hi - 0.1 * span
    if limits_m is not None:
        near, far = limits_m
        a, b = max(lo_in, 1.0 / far), min(hi_in, 1.0 / near)
        if b > a:
            lo_in, hi_in = a, b
        else:  # no overlap: the chart's own limits win (the focus range is only nominal)
            lo_in, hi_in = 1.0 / far, 1.0 / near
    cands = np.linspace(lo_in, hi_in, 25)
    have = [1.0 / d for d in have_m if d > 0]
    out: list[float] = []
    for _ in range(count):
        taken = have + [1.0 / d for d in out]
        if not taken:
            pick = cands[len(cands) // 3]
        else:
            gaps = np.array([min(abs(c - t) for t in taken) for c in cands])
            pick = cands[int(np.argmax(gaps))]
        out.append(round(1.0 / float(pick), 2))
    return out


def initial_guess(sweeps: Sequence[Sweep], masks: Sequence[np.ndarray]) -> np.ndarray:
    """Closed-form first guess ``(f, N, p, a, b, sigma0, 0)`` from sweeps that pass through focus.

    Scale: ``1/(m D) = p/s = p (1/f - b) - p a v`` (a straight line, pooled over the sweeps).
    Blur: per sweep, ``(sigma/(m D))^2`` is a quadratic in ``v`` whose vertex ``v0`` satisfies
    ``a v0 + b = 1/D`` and whose curvature is ``(A a / 4)^2``.

    Raises:
        CalibrationError: fewer than two usable focus crossings, or an unphysical result.
    """
    vs, ys, v0s, invd, slopes, floors = [], [], [], [], [], []
    for sw, m in zip(sweeps, masks):
        ms = sw.valid_scale
        vs.append(sw.control[ms])
        ys.append(1.0 / (sw.scale_px_per_m[ms] * sw.distance_m))
        vee = _vee(sw, m)
        if vee is None or not vee.inside:
            continue
        v0s.append(vee.v0)
        invd.append(1.0 / sw.distance_m)
        slopes.append(vee.slope)
        floors.append(vee.floor * float(np.median(sw.scale_px_per_m[m])) * sw.distance_m)
    if len(v0s) < 2:
        raise CalibrationError("need at least two distances whose sweeps pass through focus")
    v_all, y_all = np.concatenate(vs), np.concatenate(ys)
    beta, alpha = np.polyfit(v_all, y_all, 1)  # y = alpha + beta v
    a, b = np.polyfit(np.array(v0s), np.array(invd), 1) if len(v0s) >= 2 else (math.nan, math.nan)
    if not (math.isfinite(a) and a != 0):
        raise CalibrationError("the focus crossings of the sweeps do not determine the focus mapping")
    p = -beta / a
    if not p > 0:
        raise CalibrationError(
            "image scale and focus disagree: the image should grow as the lens focuses nearer (focus "
            "breathing); check that the chart did not move during the sweeps and the distances are right"
        )
    inv_f = alpha / p + b
    if not inv_f > 0:
        raise CalibrationError("the first guess gives a negative focal length; the distances may be wrong")
    f = 1.0 / inv_f
    aperture = 4.0 * float(np.median(slopes)) / abs(a)
    n_num = f / aperture if aperture > 0 else 2.0
    sigma0 = float(np.median(floors)) if floors else 0.5
    return np.array([f, n_num, p, a, b, max(sigma0, 0.05), 0.0])


# ----------------------------------------------------------------------------- the fit


def _prepare(sweeps: Sequence[Sweep], config: FitConfig) -> tuple[list[Sweep], list[np.ndarray], list[tuple[str, str]]]:
    good, masks, dropped = [], [], []
    for sw in sweeps:
        why = check_sweep(sw, config)
        if why:
            dropped.append((sw.name, why))
            continue
        good.append(sw)
        vee = _vee(sw, sw.valid)
        masks.append(vee.inliers.copy() if vee is not None else sw.valid.copy())
    return good, masks, dropped


def _refuse(sweeps: Sequence[Sweep], good: Sequence[Sweep], dropped: Sequence[tuple[str, str]], config: FitConfig,
            focus_range_dioptres: tuple[float, float] | None, limits: tuple[float, float] | None = None) -> None:
    """Raise :class:`CalibrationError` when the usable sweeps cannot determine the lens."""
    have = [sw.distance_m for sw in good]
    lines = []
    for name, why in dropped:
        lines.append(f"  - {name}: {why}")
    distinct = sorted({round(1.0 / d, 2) for d in have})
    next_d = suggest_distances(have or [sw.distance_m for sw in sweeps], focus_range_dioptres, 2, limits)
    if len(good) < config.min_distances:
        head = (
            f"cannot fit the lens: {len(good)} usable distance{'s' if len(good) != 1 else ''} "
            f"({', '.join(f'{d:.3g} m' for d in have) or 'none'}); the focus mapping and the aperture need at least "
            f"{config.min_distances} chart distances, each swept through focus."
        )
        raise CalibrationError("\n".join([head] + lines + [f"Capture next: the chart at about {' and '.join(f'{d:g} m' for d in next_d)}."]))
    if len(distinct) >= 1 and (max(distinct) - min(distinct)) < config.min_dioptre_separation:
        raise CalibrationError(
            "cannot fit the lens: the chart distances "
            f"({', '.join(f'{d:.3g} m' for d in have)}) are too close together (they span "
            f"{max(distinct) - min(distinct):.2f} dioptres, need {config.min_dioptre_separation:g}).\n"
            f"Capture next: the chart at about {' and '.join(f'{d:g} m' for d in next_d)}."
        )


def fit_lens(
    sweeps: Sequence[Sweep],
    image_size: tuple[int, int],
    config: FitConfig = FitConfig(),
    guess: LensGuess | None = None,
    name: str = "calibrated",
    focus_range_dioptres: tuple[float, float] | None = None,
    distance_limits_m: tuple[float, float] | None = None,
) -> FitResult:
    """Fit ``f, N, p, a, b`` (and the intrinsic blur, and optionally a distance offset) to the sweeps.

    Args:
        sweeps: one per chart distance (see :class:`Sweep`).
        image_size: ``(width, height)`` of the frames (the pitch refers to it).
        config: options.
        guess: expected values (a preset); only used to warn when the fit is far from them.
        name: the profile's name.
        focus_range_dioptres: the camera's nominal focus range, for suggestions in messages.
        distance_limits_m: ``(near, far)`` where the chart is usable with this camera, for suggestions.

    Returns:
        A :class:`FitResult` whose ``lens`` is the ``lens/1`` profile.

    Raises:
        CalibrationError: the sweeps cannot determine the lens (one distance, the chart never found,
            a sweep that never passes through focus, distances too close, a fit that does not converge
            or is too uncertain); the message says what to capture next.
    """
    from scipy.optimize import least_squares

    if not sweeps:
        raise CalibrationError("no sweeps to fit: capture the chart at two or more distances")
    good, masks, dropped = _prepare(sweeps, config)
    _refuse(sweeps, good, dropped, config, focus_range_dioptres, distance_limits_m)
    theta0 = initial_guess(good, masks)
    log.debug("first guess %s", dict(zip(_NAMES, theta0)))

    smasks = [sw.valid_scale for sw in good]  # frames with a scale (blur frames: `masks`)
    v_s = np.concatenate([sw.control[m] for sw, m in zip(good, smasks)])
    d_s = np.concatenate([np.full(int(m.sum()), sw.distance_m) for sw, m in zip(good, smasks)])
    m_meas = np.concatenate([sw.scale_px_per_m[m] for sw, m in zip(good, smasks)])
    v_b = np.concatenate([sw.control[m] for sw, m in zip(good, masks)])
    d_b = np.concatenate([np.full(int(m.sum()), sw.distance_m) for sw, m in zip(good, masks)])
    s_meas = np.concatenate([sw.sigma_px[m] for sw, m in zip(good, masks)])

    # a-priori relative weights: the measurement's own error estimate where there is one, bounded
    def _errs(sw: Sweep, m: np.ndarray, key: str, default: np.ndarray) -> np.ndarray:
        e = getattr(sw, key)
        return default if e is None else np.where(np.isfinite(e[m]) & (e[m] > 0), e[m], default)

    e_scale0 = np.concatenate([_errs(sw, m, "scale_rel_err", np.full(int(m.sum()), 2e-4)) for sw, m in zip(good, smasks)])
    e_sigma0 = np.concatenate([_errs(sw, m, "sigma_err_px", 0.01 + 0.01 * sw.sigma_px[m]) for sw, m in zip(good, masks)])
    # floors keep one frame from dominating: 20 ppm in scale, 0.005 px + 0.5 % in blur
    e_scale0 = np.maximum(e_scale0, 2e-5)
    e_sigma0 = np.maximum(e_sigma0, 0.005 + 0.005 * s_meas)

    # parameters: log f, log N, log p, a, b, log sigma0, delta
    def unpack(x: np.ndarray) -> np.ndarray:
        e = np.exp(np.clip(x[[0, 1, 2, 5]], -60.0, 30.0))
        return np.array([e[0], e[1], e[2], x[3], x[4], e[3], x[6] if config.fit_distance_offset else 0.0])

    def pack(th: np.ndarray) -> np.ndarray:
        return np.array([math.log(th[0]), math.log(th[1]), math.log(th[2]), th[3], th[4], math.log(max(th[5], 1e-3)), th[6]])

    ks, kb = 1.0, 1.0  # group scatter multipliers (re-weighting)

    def residuals(x: np.ndarray) -> np.ndarray:
        th = unpack(x)
        rs = (m_meas / model_scale_px_per_m(th, v_s, d_s) - 1.0) / (e_scale0 * ks)
        rb = (s_meas - model_sigma_px(th, v_b, d_b)) / (e_sigma0 * kb)
        out = [rs, rb]
        if config.fit_distance_offset:
            out.append(np.array([x[6] / config.distance_offset_prior_m]))
        r = np.concatenate(out)
        return np.where(np.isfinite(r), r, 1e6)

    x = pack(theta0)
    result = None
    for _ in range(3):
        result = least_squares(residuals, x, method="trf", loss=config.loss, f_scale=config.loss_scale, x_scale="jac", max_nfev=400)
        x = result.x
        th = unpack(x)
        rs = (m_meas / model_scale_px_per_m(th, v_s, d_s) - 1.0) / e_scale0
        rb = (s_meas - model_sigma_px(th, v_b, d_b)) / e_sigma0
        # robust scatter of each group (MAD), so that both kinds of residual count by their own noise
        ks_new = max(1.4826 * float(np.median(np.abs(rs - np.median(rs)))), 1e-3)
        kb_new = max(1.4826 * float(np.median(np.abs(rb - np.median(rb)))), 1e-3)
        if abs(ks_new / ks - 1) < 0.05 and abs(kb_new / kb - 1) < 0.05:
            ks, kb = ks_new, kb_new
            break
        ks, kb = ks_new, kb_new
    assert result is not None  # noqa: S101 - the loop runs at least once
    result = least_squares(residuals, x, method="trf", loss=config.loss, f_scale=config.loss_scale, x_scale="jac", max_nfev=400)
    x = result.x
    th = unpack(x)
    if not result.success or not np.all(np.isfinite(th)):
        raise CalibrationError(f"the fit did not converge ({result.message}); capture a third distance and check the measured distances")

    # standard errors from the Jacobian of the (robustly weighted) residuals
    J = result.jac
    dof = max(1, result.fun.size - x.size)
    chi2 = 2.0 * float(result.cost) / dof
    try:
        cov_x = np.linalg.pinv(J.T @ J) * max(chi2, 1.0)
    except np.linalg.LinAlgError:
        cov_x = np.full((x.size, x.size), np.inf)
    sx = np.sqrt(np.clip(np.diag(cov_x), 0, None))
    stderr = {
        "f_m": th[0] * sx[0],
        "N": th[1] * sx[1],
        "p_m": th[2] * sx[2],
        "a": sx[3],
        "b": sx[4],
        "sigma0_px": th[5] * sx[5],
        "delta_m": sx[6] if config.fit_distance_offset else 0.0,
    }
    params = dict(zip(_NAMES, (float(t) for t in th)))
    if not config.fit_distance_offset:
        params["delta_m"] = 0.0

    # per-sweep residuals and inliers
    used, inlier, res_s, res_b = [], [], [], []
    crossings: dict[str, float] = {}
    good_ids = [id(g) for g in good]
    for sw in sweeps:
        m = smasks[good_ids.index(id(sw))] if id(sw) in good_ids else np.zeros(sw.control.size, bool)
        with np.errstate(invalid="ignore", divide="ignore"):
            rs = sw.scale_px_per_m / model_scale_px_per_m(th, sw.control, sw.distance_m) - 1.0
            rb = sw.sigma_px - model_sigma_px(th, sw.control, sw.distance_m)
        res_s.append(rs)
        res_b.append(rb)
        used.append(m)
        e_b = (0.005 + 0.005 * np.nan_to_num(sw.sigma_px)) * kb
        with np.errstate(invalid="ignore"):
            inlier.append(m & np.isfinite(rb) & (np.abs(rb) < 3 * config.loss_scale * np.maximum(e_b, 1e-3)))
        if m.any():
            crossings[sw.name] = float((1.0 / (sw.distance_m + params["delta_m"]) - params["b"]) / params["a"])

    warnings: list[str] = []
    rel = {"focal length": stderr["f_m"] / params["f_m"], "f-number": stderr["N"] / params["N"], "pixel pitch": stderr["p_m"] / params["p_m"]}
    bad = {k: r for k, r in rel.items() if not r < config.max_rel_stderr}
    if bad:
        next_d = suggest_distances([sw.distance_m for sw in good], focus_range_dioptres, 2, distance_limits_m)
        raise CalibrationError(
            "the fit is too uncertain: "
            + ", ".join(f"{k} +/- {100 * r:.1f}%" for k, r in bad.items())
            + f" (limit {100 * config.max_rel_stderr:.0f}%). Capture more distances, spread out: about "
            + " and ".join(f"{d:g} m" for d in next_d)
            + "."
        )
    f, n_num, p = params["f_m"], params["N"], params["p_m"]
    if not (0.2 <= n_num <= 64):
        warnings.append(f"f-number {n_num:.3g} is outside the usual 0.7-32; check the chart distances")
    if not (0.3e-6 <= p * max(image_size) / 4000 <= 20e-6):
        warnings.append(f"pixel pitch {p * 1e6:.3g} um at {image_size[0]}x{image_size[1]} looks implausible")
    if abs(params["delta_m"]) > 3 * config.distance_offset_prior_m:
        warnings.append(
            f"the distances look offset by {params['delta_m'] * 1000:+.0f} mm from the lens (measure from the front of the lens)"
        )
    if guess is not None:
        for label, got, exp in (
            ("focal length", f, guess.focal_length_m),
            ("f-number", n_num, guess.f_number),
            ("pixel pitch", p, guess.pixel_pitch_m),
        ):
            if exp and abs(got / exp - 1) > 0.25:
                warnings.append(f"{label} {got:.4g} differs from the {guess.name or 'expected'} value {exp:.4g} by {100 * (got / exp - 1):+.0f}%")
    if dropped:
        warnings += [f"left out {nm}: {why}" for nm, why in dropped]

    used_all = np.concatenate([u for u in used])
    rb_used = np.concatenate([r[u & np.isfinite(r)] for r, u in zip(res_b, used)])
    rs_used = np.concatenate([r[u] for r, u in zip(res_s, used)])
    fit_block: dict[str, Any] = {
        "method": METHOD,
        "rms_residual_px": float(np.sqrt(np.mean(rb_used**2))),
        "scale_rms_rel": float(np.sqrt(np.mean(rs_used**2))),
        "samples": int(used_all.sum()),
        "distances_m": [float(sw.distance_m) for sw in good],
        "stderr": {k: float(v) for k, v in stderr.items()},
        "intrinsic_blur_px": params["sigma0_px"],
        "distance_offset_m": params["delta_m"],
        "control_range": [float(min(sw.control.min() for sw in good)), float(max(sw.control.max() for sw in good))],
    }
    fc = FocusControl(model="dioptre-linear", control=config.control_name, a=params["a"], b=params["b"])
    lens = LensProfile(
        focal_length_m=f,
        f_number=n_num,
        pixel_pitch_m=p,
        name=name,
        image_size=(int(image_size[0]), int(image_size[1])),
        focus_control=fc,
        fit=fit_block,
    )
    return FitResult(
        lens=lens,
        params=params,
        stderr={k: float(v) for k, v in stderr.items()},
        sweeps=list(sweeps),
        used=used,
        inlier=inlier,
        scale_residual_rel=res_s,
        sigma_residual_px=res_b,
        warnings=warnings,
        dropped=list(dropped),
        focus_crossings=crossings,
    )
