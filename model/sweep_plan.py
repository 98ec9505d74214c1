"""Plan a focus sweep from the lens: which focus distances make depth best determined over a range.

Pure optics and NumPy (``device``, ``calibration`` and the model may all use it).

**The physics.** Frame ``i``, focused at ``d_f,i``, blurs a point at depth ``d`` by

    sigma_i(d) = K_i |1/d_f,i - 1/d|          pixels,  K_i = A f d_f,i / (4 p (d_f,i - f))  (~ f^2 / (4 N p))

(:func:`model.optics.coc_sigma_px`; ``K_i`` is read from it, the formula is not repeated here). What a
depth estimator sees is the blur together with the lens's own blur at best focus ``sigma0`` (pixel
area, diffraction, demosaicing): ``s_i = sqrt(sigma_i^2 + sigma0^2)``.

**The noise model** (stated, so that the numbers can be read): a frame's blur at a textured pixel is
measured with standard deviation

    e_i(d) = noise_px + rel_noise * s_i(d)       pixels

(an absolute floor, and a part that grows with the blur: a strongly blurred texture keeps only low
frequencies, so its blur is measured relatively, not absolutely), and a frame whose blur exceeds
``max_blur_px`` carries no information (the texture is gone). Each frame then tells depth with Fisher
information ``(ds_i/dd)^2 / e_i^2`` with ``ds_i/dd = (sigma_i / s_i) K_i / d^2``; frames are independent,
so the depth's standard deviation (Cramér-Rao bound) is

    std(d) = 1 / sqrt(sum_i (ds_i/dd)^2 / e_i^2)        metres.

Near a frame's own focus its blur is below ``sigma0`` and hardly changes (the ``sigma_i / s_i``
factor); far from it the blur is large and measured poorly: a set of focus distances is good where,
at every depth, some frames blur it by a measurable but not overwhelming amount.

**The plan.** The focus distances are spread over the working range along a family of spacings
between even in metres and even in dioptres (and beyond): ``d_i`` is the power mean of ``near`` and
``far`` with exponent ``gamma`` at the fractions ``t_i`` (``gamma = 1``: even in metres; ``0``: even in
log depth; ``-1``: even in dioptres), with the outer frames at a fraction ``c`` of the range from its
ends (``c = 1/(2S)``: bin centres). The member minimising the mean over the range (depths even in log
depth) of ``log(1 + rel(d) / 0.2)``, ``rel = std(d) / d``, is chosen: the mean relative depth error where
depth is resolved, its logarithm where it is not (so that a part of the range the lens cannot resolve
does not decide everything). Only sets whose depth working range (``model.optics.working_range_m``,
what the depth model predicts in) holds the range are considered. Both even spacings (bin centres)
are members, so the plan is never worse than either by this measure (where they hold the range
themselves: with very few frames they may not).

Why a family and not free positions: the bound above is local (it knows the precision of a depth
estimate near the truth, not the chance of mistaking a depth for a far one). Freely placed, it
bunches the frames where blur is informative and leaves depths that every frame blurs by less than
a pixel or so; on rendered stacks (``benchmarks/bench_sweep_plan.py``) such bunched sets measured
clearly worse than even spacings although the bound predicted them better. Spread sets do not have
that failure, and among them the bound ranks well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from model.optics import ThinLensLike, coc_sigma_px, working_range_m

__all__ = ["PlanNoise", "SweepPlan", "sigma_per_dioptre_px", "depth_uncertainty_m", "plan_focus_distances"]


@dataclass(frozen=True)
class PlanNoise:
    """The stated noise model of :func:`depth_uncertainty_m` (see the module docstring).

    Attributes:
        noise_px: blur measurement noise floor per frame, pixels (standard deviation).
        rel_noise: part of the noise that grows with the blur (fraction of the blur).
        sigma0_px: the lens's own blur at best focus (with the pixel's area), pixels.
        max_blur_px: frames blurring a depth more than this tell nothing about it.
    """

    noise_px: float = 0.1
    rel_noise: float = 0.1
    sigma0_px: float = 0.5
    max_blur_px: float = 12.0

    def __post_init__(self) -> None:
        for key in ("noise_px", "max_blur_px"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{key} must be a positive number of pixels, got {v!r}")
        for key in ("rel_noise", "sigma0_px"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{key} must be a number >= 0, got {v!r}")


@dataclass(frozen=True)
class SweepPlan:
    """A proposed focus sweep and the depth uncertainty it gives.

    Attributes:
        focus_m: ``(S,)`` focus distances, metres, ascending (nearest first).
        control_values: ``(S,)`` the camera's raw focus values for them (the profile's
            ``focus_control``), or ``None`` when the profile has no mapping.
        control_name: the name of that control (e.g. ``LensPosition``), or ``None``.
        depth_grid_m: ``(G,)`` depths over the working range (even in log depth, ascending), metres.
        depth_std_m: ``(G,)`` expected depth standard deviation at those depths, metres.
        rel_std: ``(G,)`` ``depth_std_m / depth_grid_m``.
        unresolved_m: ``[(near, far), ...]`` depth intervals (metres) whose relative uncertainty exceeds
            ``resolve_rel_std``: where the lens cannot tell depths apart with this sweep.
        resolve_rel_std: the relative uncertainty above which a depth counts as unresolved.
        blur_per_dioptre_px: ``K`` of the lens at the middle of the range, pixels per dioptre.
        near_m, far_m: the working range.
        noise: the noise model used.
        warnings: one line each: what is wrong with the range and what would help.
        rms_rel_err: the plan's typical relative depth error over the range: the mean of
            ``depth_std_m / depth_grid_m`` (over depths even in log depth) where that is well below 0.2,
            a generalised mean that grows only logarithmically where it is not (what the plan
            minimises; see the module docstring).
        even_dioptre_rel_err, even_metre_rel_err: the same for even spacing in dioptres and in metres
            with the same frame count (bin centres), for comparison.
    """

    focus_m: np.ndarray
    control_values: np.ndarray | None
    control_name: str | None
    depth_grid_m: np.ndarray
    depth_std_m: np.ndarray
    rel_std: np.ndarray
    unresolved_m: list[tuple[float, float]]
    resolve_rel_std: float
    blur_per_dioptre_px: float
    near_m: float
    far_m: float
    noise: PlanNoise
    rms_rel_err: float
    even_dioptre_rel_err: float
    even_metre_rel_err: float
    warnings: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return int(self.focus_m.size)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (focus distances, control values, unresolved ranges, warnings)."""
        return {
            "focus_m": [float(x) for x in self.focus_m],
            "control_values": None if self.control_values is None else [float(x) for x in self.control_values],
            "control": self.control_name,
            "range_m": [self.near_m, self.far_m],
            "blur_per_dioptre_px": self.blur_per_dioptre_px,
            "noise": {"noise_px": self.noise.noise_px, "rel_noise": self.noise.rel_noise,
                      "sigma0_px": self.noise.sigma0_px, "max_blur_px": self.noise.max_blur_px},
            "rms_rel_err": self.rms_rel_err,
            "even_dioptre_rel_err": self.even_dioptre_rel_err,
            "even_metre_rel_err": self.even_metre_rel_err,
            "unresolved_m": [[float(a), float(b)] for a, b in self.unresolved_m],
            "resolve_rel_std": self.resolve_rel_std,
            "warnings": list(self.warnings),
        }


def _number(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise ValueError(f"{what} must be a number, got {v!r}")
    x = float(v)
    if not math.isfinite(x):
        raise ValueError(f"{what} must be finite, got {v!r}")
    return x


def _check_lens(lens: ThinLensLike) -> None:
    for key in ("focal_length_m", "f_number", "pixel_pitch_m"):
        v = getattr(lens, key, None)
        if v is None or _number(v, f"lens {key}") <= 0:
            raise ValueError(f"lens {key} must be a positive number, got {v!r}")


def sigma_per_dioptre_px(lens: ThinLensLike, focus_m: Any) -> Any:
    """``K``: pixels of blur (moment-matched sigma) per dioptre of defocus for a lens focused at
    ``focus_m`` metres (float or array), read from :func:`model.optics.coc_sigma_px` one dioptre away
    (the blur is exactly linear in dioptres of defocus). This is ``K_i = K d_f / (d_f - f)`` with ``K`` the
    lens's focus-independent gain :func:`model.optics.blur_per_dioptre_px`."""
    fm = np.asarray(focus_m, np.float64)
    return coc_sigma_px(1.0 / (1.0 / fm + 1.0), fm, lens)


def _information(lens: ThinLensLike, focus_m: np.ndarray, depth_m: np.ndarray, noise: PlanNoise) -> np.ndarray:
    """``(F, G)`` Fisher information (1/m^2) about depth of each focus distance at each depth."""
    fm = np.asarray(focus_m, np.float64)[:, None]
    d = np.asarray(depth_m, np.float64)[None, :]
    sig = coc_sigma_px(d, fm, lens)  # (F, G)
    k = sigma_per_dioptre_px(lens, fm)  # (F, 1)
    s_tot = np.sqrt(sig * sig + noise.sigma0_px**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(s_tot > 0, sig / s_tot, 0.0)
    dsdd = ratio * k / (d * d)  # px per metre of depth
    err = noise.noise_px + noise.rel_noise * s_tot
    info = (dsdd / err) ** 2
    return np.where(sig <= noise.max_blur_px, info, 0.0)


def depth_uncertainty_m(
    lens: ThinLensLike, focus_m: Sequence[float] | np.ndarray, depth_m: Sequence[float] | np.ndarray,
    noise: PlanNoise = PlanNoise(),
) -> np.ndarray:
    """Expected depth standard deviation (metres) at ``depth_m`` ``(G,)`` for a sweep focused at
    ``focus_m`` ``(S,)`` (Cramér-Rao bound of the module's noise model; ``inf`` where no frame tells
    anything). Raises ``ValueError`` for non-positive or non-finite distances."""
    _check_lens(lens)
    fm = np.asarray(focus_m, np.float64).reshape(-1)
    d = np.asarray(depth_m, np.float64).reshape(-1)
    for name, arr in (("focus_m", fm), ("depth_m", d)):
        if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= lens.focal_length_m):
            raise ValueError(f"{name} must be finite distances beyond the focal length ({lens.focal_length_m} m)")
    total = _information(lens, fm, d, noise).sum(axis=0)
    with np.errstate(divide="ignore"):
        return np.where(total > 0, 1.0 / np.sqrt(total), np.inf)


#: relative error at which the objective turns from linear (the mean relative error) to logarithmic
_REL_KNEE = 0.2


def _objective(total_info: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Mean over the last axis of ``log(1 + rel / knee)``, ``rel = std / d``, for info ``(..., G)``: the
    mean relative error where depth is resolved, its logarithm where it is not (so that a hopeless part
    of the range does not take all the frames)."""
    rel = 1.0 / np.sqrt(np.maximum(total_info, 1e-300) * d * d)
    return np.mean(np.log1p(np.minimum(rel, 1e6) / _REL_KNEE), axis=-1)


def _typical(objective: float) -> float:
    """The objective as a relative error: the generalised mean ``knee * (exp(objective) - 1)`` (equal to
    the mean relative error when all are well below the knee)."""
    return _REL_KNEE * math.expm1(objective)


def _intervals(mask: np.ndarray, d: np.ndarray) -> list[tuple[float, float]]:
    out = []
    i, n = 0, mask.size
    while i < n:
        if mask[i]:
            j = i
            while j + 1 < n and mask[j + 1]:
                j += 1
            out.append((float(d[i]), float(d[j])))
            i = j + 1
        else:
            i += 1
    return out


def _covers(working: tuple[float, float], near: float, far: float) -> bool:
    return working[0] <= near * (1 + 1e-9) and working[1] >= far * (1 - 1e-9)


def plan_focus_distances(
    lens: ThinLensLike,
    near_m: float,
    far_m: float,
    frames: int,
    noise_px: float | None = None,
    noise: PlanNoise | None = None,
    resolve_rel_std: float = 0.1,
    grid: int = 241,
    cover_range: bool = True,
) -> SweepPlan:
    """Propose ``frames`` focus distances in ``[near_m, far_m]`` that make depth best determined there.

    Args:
        lens: the thin lens (a :class:`model.lens.LensProfile`; its ``focus_control``, when there is one,
            gives the raw control values, and its ``pixel_pitch_m`` must be that of the images used).
        near_m, far_m: the working range, metres (both finite, ``far_m > near_m``).
        frames: ``S >= 2`` focus distances to choose.
        noise_px: shorthand for ``PlanNoise(noise_px=...)`` (the per-frame blur noise floor, pixels).
        noise: the full noise model (default :class:`PlanNoise`; ``noise_px`` overrides its floor).
        resolve_rel_std: a depth whose relative standard deviation exceeds this is "unresolved".
        grid: depths evaluated over the range (even in log depth), at least 16.
        cover_range: only consider focus sets whose depth working range
            (:func:`model.optics.working_range_m`: half the nearest to twice the farthest focus
            distance, what the depth model predicts in) holds ``[near_m, far_m]``; estimators that
            place depth between focus distances (depth from focus) need the frames to span the range.

    Returns:
        A :class:`SweepPlan`.

    Raises:
        ValueError: a non-positive, non-finite or inverted range, a range starting within 1.5 focal
            lengths of the lens, fewer than 2 or more than 64 frames, a bad noise level or lens.
    """
    _check_lens(lens)
    near = _number(near_m, "near (metres)")
    far = _number(far_m, "far (metres)")
    if near <= 0 or far <= 0:
        raise ValueError(f"the range must be positive distances in metres, got near={near_m!r}, far={far_m!r}")
    if not far > near:
        raise ValueError(f"the range's far end ({far:g} m) must be beyond its near end ({near:g} m)")
    f = float(lens.focal_length_m)
    if near <= 1.5 * f:
        raise ValueError(f"the near end {near:g} m is within 1.5 focal lengths ({1.5 * f:.3g} m) of the lens: no thin-lens focus there")
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)):
        raise ValueError(f"frames must be a whole number, got {frames!r}")
    s_count = int(frames)
    if not 2 <= s_count <= 64:
        raise ValueError(f"frames must be between 2 and 64 (one frame cannot tell near from far of focus), got {s_count}")
    if noise is None:
        noise = PlanNoise()
    if noise_px is not None:
        noise = PlanNoise(_number(noise_px, "noise_px"), noise.rel_noise, noise.sigma0_px, noise.max_blur_px)
    resolve = _number(resolve_rel_std, "resolve_rel_std")
    if not 0 < resolve < 1:
        raise ValueError(f"resolve_rel_std must be between 0 and 1, got {resolve_rel_std!r}")
    if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)) or grid < 16:
        raise ValueError(f"grid must be a whole number >= 16, got {grid!r}")
    p_near, p_far = 1.0 / near, 1.0 / far
    d_grid = np.geomspace(near, far, int(grid))  # ascending depth, even in log depth

    def spacing(gamma: float, c: float) -> np.ndarray:
        """Power-mean spacing of ``near`` and ``far`` (exponent ``gamma``) at ``S`` fractions from ``c`` to
        ``1 - c``: ascending metres."""
        t = np.linspace(c, 1.0 - c, s_count)
        if abs(gamma) < 1e-9:
            return np.exp((1 - t) * math.log(near) + t * math.log(far))
        return ((1 - t) * near**gamma + t * far**gamma) ** (1.0 / gamma)

    def score(fm: np.ndarray) -> float:
        return float(_objective(_information(lens, fm, d_grid, noise).sum(axis=0), d_grid))

    centre = 1.0 / (2 * s_count)
    even_m, even_dpt = spacing(1.0, centre), spacing(-1.0, centre)
    members = [spacing(g, c) for g in np.round(np.linspace(-2.0, 1.5, 36), 3)
               for c in (0.0, 0.5 * centre, centre, 1.5 * centre, 2.0 * centre)]
    if cover_range:  # the depth model's working range (model.optics.working_range_m) must hold the range
        members = [fm for fm in members if _covers(working_range_m(list(fm), lens), near, far)] or members
    best, focus = min(((score(fm), fm) for fm in members), key=lambda r: r[0])
    focus = np.sort(focus)  # ascending metres (nearest first)
    info = _information(lens, focus, d_grid, noise).sum(axis=0)
    with np.errstate(divide="ignore"):
        std = np.where(info > 0, 1.0 / np.sqrt(np.maximum(info, 1e-300)), np.inf)
    rel = std / d_grid

    def even_score(fm: np.ndarray) -> float:
        return _typical(score(fm))

    k_mid = float(sigma_per_dioptre_px(lens, 2.0 / (p_near + p_far)))
    unresolved = _intervals(rel > resolve, d_grid)
    warnings: list[str] = []
    if unresolved:
        frac = float(np.mean(rel > resolve))
        spans = ", ".join(f"{a:.3g}-{b:.3g} m" for a, b in unresolved)
        size = getattr(lens, "image_size", None)
        at = f" at {size[0]}x{size[1]}" if size else ""
        helps = []
        # what would help: the resolved part nearest the camera, and how much more blur per dioptre
        ok = ~(rel > resolve)
        if ok[0]:
            last_ok = int(np.argmax(~ok)) - 1 if (~ok).any() else ok.size - 1
            helps.append(f"a closer range (up to about {d_grid[max(last_ok, 0)]:.2g} m is resolved with this plan)")
        else:
            # the best dioptre precision these frames reach; depth d is resolved while d * std_P < resolve
            p_std = float(np.min(std / (d_grid * d_grid)))
            reach = resolve / p_std if p_std > 0 and math.isfinite(p_std) else 0.0
            helps.append(f"a closer range (this lens resolves depth only nearer than about {reach:.2g} m)" if reach > 0
                         else "a closer range")
        need = float(np.nanmax(np.where(np.isfinite(rel), rel, np.nan)) / resolve) if np.isfinite(rel).any() else math.inf
        factor = (f" (about {need:.2g}x the blur per dioptre would resolve it all)" if need <= 20
                  else " (it would take more than 20x the blur per dioptre to resolve it all)")
        helps.append(f"a higher resolution (finer pixels: the blur per dioptre grows as 1/p){factor}")
        helps.append(f"a wider aperture (f/{lens.f_number:.2g} now; the blur per dioptre grows as 1/N)")
        helps.append("more frames")
        warnings.append(
            f"the lens cannot tell depths apart over {spans} ({100 * frac:.0f}% of the range; depth uncertainty above "
            f"{100 * resolve:.0f}%){at}: it blurs only {k_mid:.2g} px per dioptre there at a blur noise of "
            f"{noise.noise_px:g} px. What helps: " + "; ".join(helps) + "."
        )
    fc = getattr(lens, "focus_control", None)
    controls = None
    cname = None
    if fc is not None:
        controls = np.array([fc.control_value(float(x)) for x in focus])
        cname = str(getattr(fc, "control", "")) or None
    return SweepPlan(
        focus_m=focus,
        control_values=controls,
        control_name=cname,
        depth_grid_m=d_grid,
        depth_std_m=std,
        rel_std=rel,
        unresolved_m=unresolved,
        resolve_rel_std=resolve,
        blur_per_dioptre_px=k_mid,
        near_m=near,
        far_m=far,
        noise=noise,
        rms_rel_err=_typical(best),
        even_dioptre_rel_err=even_score(even_dpt),
        even_metre_rel_err=even_score(even_m),
        warnings=warnings,
    )
