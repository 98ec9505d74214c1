"""Measure the chart in one frame: image scale (pixels per metre of chart) and blur (pixels).

Pure functions, no I/O. Steps for a frame:

1. Linearise (sRGB decoding by default: blur adds light linearly, the encoding does not) and average
   the channels.
2. Find the squares: dark connected components (Otsu threshold, then a few fixed fractions of the
   contrast), compact and square-ish, of similar size, whose centroids form the chart's grid under a
   similarity transform (scale, roll, shift). The grid is symmetric, so which way up does not matter.
3. Fit every square with the exact model of a square of side ``2h`` blurred by an isotropic Gaussian::

       I(x, y) = hi - (hi - lo) * S(u) * S(v) - (hi - lo) * [neighbours' darkness]
       S(u)    = (erf((u + h_u) / (sqrt(2) se)) - erf((u - h_u) / (sqrt(2) se))) / 2
       se^2    = sigma^2 + 1/12          (the pixel's own area, a 1-px box, as a Gaussian)

   with ``(u, v)`` the pixel's coordinates in the square's frame (centre, turn), by non-linear least
   squares over a window around the square. A Gaussian blur of a rectangle is separable in the
   rectangle's own frame, so the model is exact for the project's PSF; the neighbours' blurred edges
   that reach into the window are modelled with the same blur.
4. Scale: a similarity fit of the square centres (blur moves no centre) to the chart's centres gives
   pixels per metre and the chart's roll; its residual tells a wrong detection or a tilted chart.
   Blur: the second moment of the edges' line spread function, as the Gaussian fit's variance plus a
   correction linear in the fit's residual near the edges (so a disc-shaped PSF reads its own
   moment-matched sigma, not the best Gaussian's); the median over the squares, with an error from
   their spread.

``sigma`` is the optical blur without the pixel area (so that it is comparable with ``c / (4 p)``
plus the lens's own blur at best focus).
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from calibration.chart import ChartSpec

__all__ = ["MeasureConfig", "SquareFit", "FrameMeasurement", "linearize", "find_grid", "measure_frame"]

log = logging.getLogger(__name__)

_SQRT2 = math.sqrt(2.0)
_MAX_EDGE_PX = 5000  # pixels near a square's edges used per fit
_MAX_FLAT_PX = 1500  # pixels away from the edges used per fit


@dataclass(frozen=True)
class MeasureConfig:
    """Options of :func:`measure_frame`.

    Attributes:
        gamma: ``"srgb"`` (frames are sRGB-encoded, as camera ISPs and PNGs are) or ``"linear"``.
        blur: ``"moment"``: the second moment of the line spread function (the moment-matched sigma of
            ``shared/FORMATS.md`` whatever the PSF's shape: disc, Gaussian or between); ``"gauss"``:
            the sigma of the best-fitting Gaussian (reads about 8 % more than ``"moment"`` for a disc).
        min_square_px: squares smaller than this (side, pixels) are too small to measure.
        saturation_level: encoded values at or above this count as clipped (in any channel).
        max_saturated_fraction: more clipped chart pixels than this marks the frame over-exposed (not
            usable). Fewer are left out of the fits: photon noise alone clips a per cent or two of the
            pixels of a well-exposed white page, which biases nothing once they are left out.
        warn_saturated_fraction: more clipped chart pixels than this (and at most
            ``max_saturated_fraction``) gives a warning in ``problem``; the frame stays usable.
        min_contrast: linear paper-minus-ink contrast below this marks the frame too dark / washed out.
        max_grid_residual: largest similarity-fit residual of the centres, as a fraction of the pitch,
            for a detection to count.
    """

    gamma: str = "srgb"
    blur: str = "moment"
    min_square_px: float = 12.0
    saturation_level: float = 0.985
    max_saturated_fraction: float = 0.05
    warn_saturated_fraction: float = 0.001
    min_contrast: float = 0.08
    max_grid_residual: float = 0.06

    def __post_init__(self) -> None:
        if self.gamma not in ("srgb", "linear"):
            raise ValueError(f"gamma must be 'srgb' or 'linear', got {self.gamma!r}")
        if self.blur not in ("moment", "gauss"):
            raise ValueError(f"blur must be 'moment' or 'gauss', got {self.blur!r}")


@dataclass(frozen=True)
class SquareFit:
    """The fitted model of one square (pixels; ``angle_deg`` in image coordinates, y down)."""

    centre_px: tuple[float, float]
    half_sides_px: tuple[float, float]
    angle_deg: float
    sigma_px: float
    lo: float
    hi: float
    rms: float
    sigma_moment_px: float = math.nan


@dataclass(frozen=True)
class FrameMeasurement:
    """What one frame says about the chart.

    Attributes:
        found: the chart was found and measured.
        problem: why not (or a warning such as over-exposure), empty when all is well.
        scale_px_per_m: image scale, pixels per metre of chart (NaN if not found).
        scale_rel_err: 1-sigma relative error of the scale.
        sigma_px: optical blur (moment-matched Gaussian sigma, pixels, pixel area removed); NaN if not
            found, or if the squares are too small for this much blur (the scale is still valid).
        sigma_err_px: 1-sigma error of ``sigma_px``.
        centre_px: ``(x, y)`` of the chart centre in the image.
        roll_deg: the chart's roll in the image.
        grid_residual_px: rms residual of the similarity fit of the centres.
        keystone: ``(kx, ky)``: relative difference of the spacing between the first and last row
            (``kx``) and first and last column (``ky``); a tilted chart shows as a non-zero value.
        contrast: linear paper minus ink level.
        saturated_fraction: fraction of chart pixels at or above the saturation level.
        over_exposed: too many clipped pixels to trust the blur.
        squares: the per-square fits.
        square_px: mean side of the squares, pixels.
    """

    found: bool
    problem: str = ""
    scale_px_per_m: float = math.nan
    scale_rel_err: float = math.nan
    sigma_px: float = math.nan
    sigma_err_px: float = math.nan
    centre_px: tuple[float, float] = (math.nan, math.nan)
    roll_deg: float = math.nan
    grid_residual_px: float = math.nan
    keystone: tuple[float, float] = (math.nan, math.nan)
    contrast: float = math.nan
    saturated_fraction: float = 0.0
    over_exposed: bool = False
    squares: tuple[SquareFit, ...] = field(default_factory=tuple)
    square_px: float = math.nan

    @property
    def usable(self) -> bool:
        """Found and trustworthy for the fit (not over-exposed)."""
        return self.found and not self.over_exposed

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly summary (no per-square detail)."""
        return {
            "found": self.found,
            "problem": self.problem,
            "scale_px_per_m": _f(self.scale_px_per_m),
            "scale_rel_err": _f(self.scale_rel_err),
            "sigma_px": _f(self.sigma_px),
            "sigma_err_px": _f(self.sigma_err_px),
            "centre_px": [_f(self.centre_px[0]), _f(self.centre_px[1])],
            "roll_deg": _f(self.roll_deg),
            "grid_residual_px": _f(self.grid_residual_px),
            "keystone": [_f(self.keystone[0]), _f(self.keystone[1])],
            "contrast": _f(self.contrast),
            "saturated_fraction": _f(self.saturated_fraction),
            "square_px": _f(self.square_px),
        }


def _f(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


# ----------------------------------------------------------------------------- helpers


def linearize(image: np.ndarray, gamma: str = "srgb") -> np.ndarray:
    """``(H, W, 3)`` or ``(H, W)`` image in ``[0, 1]`` -> ``(H, W)`` float64 linear grey level."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3:
        if img.shape[2] not in (1, 3, 4):
            raise ValueError(f"expected an (H, W, 3) image, got {img.shape}")
        img = img[:, :, :3].mean(axis=2) if img.shape[2] >= 3 else img[:, :, 0]
    elif img.ndim != 2:
        raise ValueError(f"expected an (H, W, 3) or (H, W) image, got {img.shape}")
    if gamma == "srgb":
        img = np.where(img <= 0.04045, img / 12.92, np.power((np.clip(img, 0, None) + 0.055) / 1.055, 2.4))
    return img


def _similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Least-squares ``dst = k R(phi) src + t``; returns ``(k, phi, t, residuals (N, 2))``."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    sxx = (a * a).sum()
    c = (a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1]).sum() / sxx
    s = (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum() / sxx
    k = math.hypot(c, s)
    phi = math.atan2(s, c)
    rot = np.array([[c, -s], [s, c]])
    t = md - rot @ ms
    res = dst - (src @ rot.T + t)
    return k, phi, t, res


@dataclass(frozen=True)
class _Blob:
    centroid: tuple[float, float]
    area: float


def _candidates(gray: np.ndarray, thr: float, min_area: float) -> list[_Blob]:
    import cv2

    mask = (gray < thr).astype(np.uint8)
    n, labels, stats, cents = cv2.connectedComponentsWithStats(mask, connectivity=8)
    h, w = gray.shape
    out = []
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        if area < min_area or x == 0 or y == 0 or x + bw >= w or y + bh >= h:
            continue
        if max(bw, bh) > 3.0 * min(bw, bh):
            continue
        pts = np.column_stack(np.nonzero(labels[y : y + bh, x : x + bw] == i))[:, ::-1].astype(np.float32)
        (_, _), (rw, rh), _ = cv2.minAreaRect(pts)
        rw, rh = rw + 1.0, rh + 1.0
        if min(rw, rh) <= 0 or max(rw, rh) / min(rw, rh) > 1.6 or area / (rw * rh) < 0.7:
            continue
        out.append(_Blob((float(cents[i][0]), float(cents[i][1])), float(area)))
    return out


def _match_grid(blobs: list[_Blob], spec: ChartSpec) -> tuple[list[_Blob], float] | None:
    """Pick the blobs that form the chart's grid; returns them in chart order and the relative residual."""
    ref = spec.centres_m
    n_sq = ref.shape[0]
    pitch = min(spec.pitch_m) * spec.scale
    best: tuple[list[_Blob], float] | None = None
    blobs = sorted(blobs, key=lambda b: -b.area)
    tried: set[tuple[int, ...]] = set()
    for i0, b0 in enumerate(blobs):
        group = [j for j, b in enumerate(blobs) if 0.6 * b0.area <= b.area <= 1.6 * b0.area]
        if len(group) < n_sq:
            continue
        group = group[:12]
        for combo in itertools.combinations(group, n_sq):
            if combo in tried:
                continue
            tried.add(combo)
            pts = np.array([blobs[j].centroid for j in combo])
            order = _grid_order(pts, spec)
            if order is None:
                continue
            for perm in order:
                k, _, _, res = _similarity(ref, pts[perm])
                if k <= 0:
                    continue
                rel = float(np.sqrt((res**2).sum(1).mean()) / (k * pitch))
                # the squares' size must agree with the spacing
                side_px = math.sqrt(np.mean([blobs[j].area for j in combo]))
                size_ratio = side_px / (k * spec.square_m * spec.scale)
                if not 0.6 < size_ratio < 1.5:
                    continue
                if best is None or rel < best[1]:
                    best = ([blobs[combo[p]] for p in perm], rel)
        if best is not None and best[1] < 0.02:
            break
    return best


def _grid_order(pts: np.ndarray, spec: ChartSpec) -> list[np.ndarray] | None:
    """Candidate assignments of ``pts`` (N, 2) to the chart's grid nodes (row-major), found by sorting
    along the principal axes; both axis assignments are tried when rows == columns."""
    cols, rows = spec.columns, spec.rows
    c = pts - pts.mean(0)
    cov = c.T @ c
    evals, evecs = np.linalg.eigh(cov)
    major, minor = evecs[:, 1], evecs[:, 0]
    # the long side of the grid (more spread) is the one with more columns * pitch
    span_x = (cols - 1) * spec.pitch_m[0]
    span_y = (rows - 1) * spec.pitch_m[1]
    options = []
    if span_x >= span_y:
        options.append((major, minor))
    if span_y >= span_x:
        options.append((minor, major))
    perms = []
    for ax_x, ax_y in options:
        px, py = c @ ax_x, c @ ax_y
        # sort into rows by py, then within a row by px
        idx = np.argsort(py)
        perm = []
        for r in range(rows):
            row = idx[r * cols : (r + 1) * cols]
            perm.extend(row[np.argsort(px[row])])
        perms.append(np.array(perm))
        # the grid is symmetric under a half-turn, not under a mirror: also try y flipped
        idx = np.argsort(-py)
        perm = []
        for r in range(rows):
            row = idx[r * cols : (r + 1) * cols]
            perm.extend(row[np.argsort(px[row])])
        perms.append(np.array(perm))
    return perms


def find_grid(gray: np.ndarray, spec: ChartSpec, min_square_px: float = 10.0) -> tuple[np.ndarray, float] | None:
    """Find the chart's squares in a linear grey image.

    Returns ``(centroids (K, 2) in chart order, relative grid residual)`` or ``None``.
    """
    lo, hi = np.percentile(gray, [1, 99])
    if hi - lo <= 1e-6:
        return None
    g8 = np.clip((gray - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8)
    import cv2

    otsu, _ = cv2.threshold(g8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    thresholds = [otsu / 255.0] + [0.5, 0.3, 0.7, 0.2]
    min_area = max(16.0, (0.7 * min_square_px) ** 2)
    best = None
    for t in thresholds:
        blobs = _candidates(g8.astype(np.float64) / 255.0, t, min_area)
        if len(blobs) < spec.columns * spec.rows:
            continue
        m = _match_grid(blobs, spec)
        if m is not None and (best is None or m[1] < best[1]):
            best = m
        if best is not None and best[1] < 0.02:
            break
    if best is None:
        return None
    return np.array([b.centroid for b in best[0]]), best[1]


# ----------------------------------------------------------------------------- square model


def _profile(u: np.ndarray, h: float, se: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A blurred 1-D bar of half-width ``h``: ``S(u) = (erf((u+h)k) - erf((u-h)k)) / 2``, ``k = 1/(sqrt2 se)``,
    and its derivatives by ``u``, ``h`` and ``se``."""
    from scipy.special import erf

    k = 1.0 / (_SQRT2 * se)
    zp, zm = (u + h) * k, (u - h) * k
    ep, em = np.exp(-zp * zp), np.exp(-zm * zm)
    kk = k / math.sqrt(math.pi)
    s = 0.5 * (erf(zp) - erf(zm))
    ds_du = kk * (ep - em)
    ds_dh = kk * (ep + em)
    ds_dse = -(kk / se) * ((u + h) * ep - (u - h) * em)
    return s, ds_du, ds_dh, ds_dse


def _square(
    xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, psi: float, hu: float, hv: float, se: float, grad: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Darkness of a blurred square (1 inside, 0 far outside) and, with ``grad``, its derivatives
    ``(6, N)`` by ``cx, cy, psi, hu, hv, se``."""
    c, s = math.cos(psi), math.sin(psi)
    dx, dy = xx - cx, yy - cy
    u = c * dx + s * dy
    v = -s * dx + c * dy
    su, su_u, su_h, su_se = _profile(u, hu, se)
    sv, sv_v, sv_h, sv_se = _profile(v, hv, se)
    d = su * sv
    if not grad:
        return d, None
    jac = np.empty((6,) + d.shape)
    jac[0] = -c * su_u * sv + s * su * sv_v
    jac[1] = -s * su_u * sv - c * su * sv_v
    jac[2] = v * su_u * sv - u * su * sv_v
    jac[3] = su_h * sv
    jac[4] = su * sv_h
    jac[5] = su_se * sv + su * sv_se
    return d, jac


def _fit_square(
    gray: np.ndarray,
    centre: tuple[float, float],
    half: float,
    psi: float,
    sigma0: float,
    neighbours: list[tuple[float, float, float, float]],
    window_half: float,
    keep: Any,
) -> SquareFit | None:
    """Fit one square (and the illumination around it) in a window; ``keep(xx, yy) -> bool mask`` drops
    pixels near the page edge and printed text."""
    from scipy.optimize import least_squares

    h, w = gray.shape
    x0, x1 = int(max(0, math.floor(centre[0] - window_half))), int(min(w, math.ceil(centre[0] + window_half) + 1))
    y0, y1 = int(max(0, math.floor(centre[1] - window_half))), int(min(h, math.ceil(centre[1] + window_half) + 1))
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    zz = gray[y0:y1, x0:x1]
    m = keep(xx, yy)
    xx_all, yy_all, zz_all = xx[m], yy[m], zz[m]
    # all pixels near the square's edges; a third of the flat ones (they only set the levels)
    c, sn = math.cos(psi), math.sin(psi)
    du, dv = xx - centre[0], yy - centre[1]
    cheb = np.maximum(np.abs(c * du + sn * dv), np.abs(-sn * du + c * dv))
    band = (np.abs(cheb - half) < 4.0 * math.hypot(sigma0, 0.5) + 3.0) & m
    flat = ~band & m
    # cap the work per square: an even spread of the edge pixels (all edge phases stay represented)
    # and fewer of the flat ones (they only set the levels)
    nb_, nf_ = int(band.sum()), int(flat.sum())
    sel = np.zeros_like(m)
    idx_b = np.flatnonzero(band)
    idx_f = np.flatnonzero(flat)
    sel.ravel()[idx_b[:: max(1, int(math.ceil(nb_ / _MAX_EDGE_PX)))]] = True
    sel.ravel()[idx_f[:: max(3, int(math.ceil(nf_ / _MAX_FLAT_PX)))]] = True
    xx, yy, zz = xx[sel], yy[sel], zz[sel]
    if xx.size < 64:
        return None
    X, Y = xx - centre[0], yy - centre[1]
    hi0 = float(np.percentile(zz, 97))
    lo0 = float(np.percentile(zz, 3))
    # neighbours whose blurred edges reach into the window, each evaluated only where it matters
    nb: list[tuple[np.ndarray, float, float, float, float]] = []
    for ncx, ncy, nps, nh in neighbours:
        reach = 1.42 * nh + 5.0 * max(sigma0, 0.5) + 2.0
        sel = np.nonzero((np.abs(xx - ncx) < reach) & (np.abs(yy - ncy) < reach))[0]
        if sel.size:
            nb.append((sel, ncx, ncy, nps, nh))

    def parts(p: np.ndarray, grad: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        cx, cy, ps, hu, hv, sg, L0, gx, gy, con = p
        se = math.sqrt(sg * sg + 1.0 / 12.0)
        d, jd = _square(xx, yy, cx, cy, ps, hu, hv, se, grad)
        dn_se = np.zeros_like(d) if grad else None
        for sel, ncx, ncy, nps, nh in nb:
            dn, jn = _square(xx[sel], yy[sel], ncx, ncy, nps, nh, nh, se, grad)
            d[sel] += dn
            if grad:
                dn_se[sel] += jn[5]  # type: ignore[index]
        L = L0 + gx * X + gy * Y
        return d, L, np.asarray(se), jd, dn_se

    def fun(p: np.ndarray) -> np.ndarray:
        p = p.copy()
        p[5] = abs(p[5])
        d, L, _, _, _ = parts(p, False)
        return L * (1.0 - p[9] * d) - zz

    def jac(p: np.ndarray) -> np.ndarray:
        d, L, se, jd, dn_se = parts(p, True)  # sigma enters squared: its sign does not matter
        assert jd is not None and dn_se is not None  # noqa: S101 - grad=True
        con = p[9]
        out = np.empty((xx.size, 10))
        f = -L * con
        out[:, 0:5] = (f * jd[0:5]).T
        out[:, 5] = f * (jd[5] + dn_se) * (p[5] / float(se))
        one = 1.0 - con * d
        out[:, 6] = one
        out[:, 7] = X * one
        out[:, 8] = Y * one
        out[:, 9] = -L * d
        return out

    con0 = float(np.clip(1.0 - lo0 / hi0, 0.05, 1.0)) if hi0 > 0 else 0.9
    p0 = np.array([centre[0], centre[1], psi, half, half, max(sigma0, 0.3), hi0, 0.0, 0.0, con0])
    try:
        with np.errstate(all="ignore"):
            r = least_squares(fun, p0, jac=jac, x_scale="jac", method="lm", max_nfev=60)
    except (ValueError, FloatingPointError, np.linalg.LinAlgError):
        return None
    cx, cy, ps, hu, hv, sg, L0, _, _, con = r.x
    sg = abs(sg)
    if (
        not np.all(np.isfinite(r.x)) or L0 <= 0 or not 0 < con <= 1.5
        or math.hypot(cx - centre[0], cy - centre[1]) > 0.5 * half
        or not 0.5 * half < min(hu, hv) <= max(hu, hv) < 1.6 * half or sg > 2 * half
    ):
        return None
    rms = float(np.sqrt(np.mean(r.fun**2)) / (L0 * con))
    p_fit = r.x.copy()
    p_fit[5] = sg
    var_corr = _moment_correction(p_fit, centre, xx_all, yy_all, zz_all, [n[1:] for n in nb])
    sm = math.sqrt(max(sg * sg + var_corr, 0.0)) if math.isfinite(var_corr) else math.nan
    return SquareFit((float(cx), float(cy)), (float(hu), float(hv)), math.degrees(ps), float(sg), float(L0 * (1 - con)), float(L0), rms,
                     sigma_moment_px=sm)


def _moment_correction(
    p: np.ndarray, ref: tuple[float, float], xx: np.ndarray, yy: np.ndarray, zz: np.ndarray,
    neighbours: list[tuple[float, float, float, float]],
) -> float:
    """Second-moment correction of the Gaussian fit's blur, pixels squared.

    For an edge with darkness profile ``E(d)`` (``d`` the signed distance outwards from the edge),
    ``var = 2 * integral d (E(d) - step(d)) dd`` is the variance of the line spread function whatever
    its shape. Written as the fitted (Gaussian) model's variance plus a term linear in the residual,
    ``var = se_fit^2 + 2 * integral d r(d) dd`` with ``r`` the darkness residual (data minus model),
    it needs only the residual near the four edges: their middle parts (away from the corners), binned
    along ``d`` (edges with too few pixels are left out). Returns NaN when fewer than two edges are
    usable (a square too small for its blur).
    """
    cx, cy, ps, hu, hv, sg, L0, gx, gy, con = p
    se = math.sqrt(sg * sg + 1.0 / 12.0)
    W = 3.5 * se + 2.0
    c, s = math.cos(ps), math.sin(ps)
    dx, dy = xx - cx, yy - cy
    u = c * dx + s * dy
    v = -s * dx + c * dy
    corner = min(3.0 * se + 1.5, 0.45 * min(hu, hv))
    L = L0 + gx * (xx - ref[0]) + gy * (yy - ref[1])
    dark_model, _ = _square(xx, yy, cx, cy, ps, hu, hv, se, False)
    for ncx, ncy, nps, nh in neighbours:
        dn, _ = _square(xx, yy, ncx, ncy, nps, nh, nh, se, False)
        dark_model = dark_model + dn
    dark_obs = (1.0 - zz / L) / con
    resid = dark_obs - dark_model
    total, weight = 0.0, 0.0
    for along, across, h_across, h_along in ((v, u, hu, hv), (-v, -u, hu, hv), (u, v, hv, hu), (-u, -v, hv, hu)):
        sel = (np.abs(along) < h_along - corner) & (np.abs(across - h_across) < W)
        n = int(sel.sum())
        step = 0.25 if n >= 3 * (2 * W / 0.25) else 0.5
        nbins = int(math.ceil(2 * W / step))
        if n < 2 * nbins:
            continue  # too few pixels (a small square, or the edge runs into a keep-out zone)
        d = across[sel] - h_across
        idx = np.clip(((d + W) / step).astype(int), 0, nbins - 1)
        cnt = np.bincount(idx, minlength=nbins)
        acc = np.bincount(idx, weights=resid[sel], minlength=nbins)
        ok = cnt > 0
        centres = (np.arange(nbins) + 0.5) * step - W
        rb = np.interp(centres, centres[ok], acc[ok] / cnt[ok])
        # the levels: beyond the blur (the outer 1.5 px at either end) the residual must be flat; a
        # level error there would weigh like d^2 in the moment, so it is measured and taken out
        inner, outer = centres < -W + 1.5, centres > W - 1.5
        rb = rb - np.where(centres < 0, rb[inner].mean(), rb[outer].mean())
        total += 2.0 * float(np.sum(centres * rb) * step)
        weight += 1.0
    return total / weight if weight >= 2 else math.nan


def _grad_sigma(gray: np.ndarray, centre: tuple[float, float], half: float) -> float:
    """Rough blur estimate from the gradient of the patch (a starting value for the fit)."""
    h, w = gray.shape
    r = int(math.ceil(1.6 * half)) + 3
    x0, x1 = max(0, int(centre[0]) - r), min(w, int(centre[0]) + r + 1)
    y0, y1 = max(0, int(centre[1]) - r), min(h, int(centre[1]) + r + 1)
    p = gray[y0:y1, x0:x1]
    if p.shape[0] < 5 or p.shape[1] < 5:
        return 1.0
    gy, gx = np.gradient(p)
    g = np.hypot(gx, gy)
    contrast = float(np.percentile(p, 95) - np.percentile(p, 3))
    s1, s2 = float(g.sum()), float((g * g).sum())
    if contrast <= 0 or s2 <= 0:
        return 1.0
    # for a Gaussian edge of contrast C: sum |g| = C L, sum g^2 = C^2 L / (2 sqrt(pi) se)
    se = contrast * s1 / (2.0 * math.sqrt(math.pi) * s2)
    return float(np.clip(math.sqrt(max(se * se - 1.0 / 12.0, 0.01)), 0.2, half))


# ----------------------------------------------------------------------------- the frame


def _keep_mask(spec: ChartSpec, k: float, phi: float, t: np.ndarray, margin_px: float) -> Any:
    """A function ``(xx, yy) -> bool`` keeping pixels at least ``margin_px`` inside the page and away from
    the printed caption and check bar (image -> chart coordinates by the inverse similarity)."""
    pw, ph = spec.paper_size_m
    mg = margin_px / k
    c, s = math.cos(phi), math.sin(phi)
    boxes = spec.keepout_m()

    def keep(xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
        dx, dy = (xx - t[0]) / k, (yy - t[1]) / k
        X = c * dx + s * dy
        Y = -s * dx + c * dy
        ok = (np.abs(X) < pw / 2 - mg) & (np.abs(Y) < ph / 2 - mg)
        for x0, y0, x1, y1 in boxes:
            ok &= ~((X > x0 - mg) & (X < x1 + mg) & (Y > y0 - mg) & (Y < y1 + mg))
        return ok

    return keep


def _fit_squares_once(
    gray: np.ndarray, spec: ChartSpec, cents: np.ndarray, half: float, psi: float, sig0: float, pitch_px: float,
    clipped: np.ndarray | None = None,
) -> list[SquareFit] | None:
    ref = spec.centres_m
    ext = half * (abs(math.cos(math.radians(spec.rotation_deg))) + abs(math.sin(math.radians(spec.rotation_deg))))
    k, phi, t, _ = _similarity(ref, cents)
    keep_page = _keep_mask(spec, k, phi, t, 3.5 * math.hypot(sig0, 0.5) + 2.0)
    if clipped is None:
        keep = keep_page
    else:  # measure around clipped pixels: they carry only a lower bound of the light

        def keep(xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
            return keep_page(xx, yy) & ~clipped[yy.astype(np.intp), xx.astype(np.intp)]
    predicted = [(float(c[0]), float(c[1]), psi, half) for c in cents]
    fits = []
    window = max(min(ext + 3.5 * math.hypot(sig0, 0.6) + 2.0, pitch_px - ext), ext + 2.0)
    for i, c in enumerate(cents):
        nb = [p for j, p in enumerate(predicted) if j != i]
        fit = _fit_square(gray, (float(c[0]), float(c[1])), half, psi, sig0, nb, window, keep)
        if fit is None:
            return None
        fits.append(fit)
    return fits


def _fit_squares(
    gray: np.ndarray, spec: ChartSpec, cents: np.ndarray, half: float, psi: float, sig0: float, pitch_px: float,
    clipped: np.ndarray | None = None,
) -> list[SquareFit] | None:
    """Fit every square; a second round when the blur turns out much larger than guessed (the windows
    and margins are sized by the guess).

    Large blur is fitted on a binned image (``b x b`` pixel means): the model is the same in binned
    pixels (a binned pixel integrates a ``b``-pixel box), with blur and geometry divided by ``b``.
    ``clipped`` ``(H, W)`` bool marks pixels left out of the fits (a binned pixel with any clipped pixel
    is left out)."""
    fits: list[SquareFit] | None = None
    for _round in range(2):
        b = int(np.clip(math.floor(sig0 / 1.6), 1, 4))
        while b > 1 and 2 * half / b < 24:
            b -= 1
        if b > 1:
            h, w = gray.shape
            gb = gray[: h // b * b, : w // b * b].reshape(h // b, b, w // b, b).mean(axis=(1, 3))
            off = (b - 1) / 2.0
            cb = None if clipped is None else clipped[: h // b * b, : w // b * b].reshape(h // b, b, w // b, b).any(axis=(1, 3))
            fb = _fit_squares_once(gb, spec, (cents - off) / b, half / b, psi, sig0 / b, pitch_px / b, cb)
            fits = None if fb is None else [
                SquareFit((f.centre_px[0] * b + off, f.centre_px[1] * b + off), (f.half_sides_px[0] * b, f.half_sides_px[1] * b),
                          f.angle_deg, f.sigma_px * b, f.lo, f.hi, f.rms, f.sigma_moment_px * b)
                for f in fb
            ]
        else:
            fits = _fit_squares_once(gray, spec, cents, half, psi, sig0, pitch_px, clipped)
        if fits is None:
            return None
        new_sig = float(np.median([f.sigma_px for f in fits]))
        if new_sig < 1.25 * sig0 + 0.2:
            break
        cents = np.array([f.centre_px for f in fits])
        half = float(np.mean([0.5 * (f.half_sides_px[0] + f.half_sides_px[1]) for f in fits]))
        psi = math.radians(float(np.median([f.angle_deg for f in fits])))
        sig0 = new_sig
    return fits


def measure_frame(image: np.ndarray, spec: ChartSpec, config: MeasureConfig = MeasureConfig()) -> FrameMeasurement:
    """Find the chart in ``image`` and measure its scale and blur.

    Args:
        image: ``(H, W, 3)`` RGB in ``[0, 1]`` (sRGB-encoded unless ``config.gamma == "linear"``).
        spec: the chart.
        config: options.

    Returns:
        A :class:`FrameMeasurement`; ``found`` is false (with ``problem`` saying why) when the chart is
        not in view, cut off, too small or too low in contrast.
    """
    enc = np.asarray(image)
    if enc.ndim not in (2, 3) or enc.shape[0] < 16 or enc.shape[1] < 16:
        raise ValueError(f"expected an (H, W, 3) image of at least 16 x 16 pixels, got {enc.shape}")
    gray = linearize(enc, config.gamma)
    n_sq = spec.columns * spec.rows
    grid = find_grid(gray, spec, config.min_square_px)
    if grid is None:
        return FrameMeasurement(False, f"chart not found: all {n_sq} squares must be in view, evenly lit and not too blurred")
    cents, _ = grid
    ref = spec.centres_m
    k, phi, t, res = _similarity(ref, cents)
    pitch_px = k * min(spec.pitch_m) * spec.scale
    half = 0.5 * k * spec.square_m * spec.scale
    if 2 * half < config.min_square_px:
        return FrameMeasurement(False, f"chart too small in the image (squares {2 * half:.0f} px): move it closer")
    # the squares' own turn in the image: chart rotation (counter-clockwise on the page, y down) + roll
    psi = phi - math.radians(spec.rotation_deg)
    sig0 = float(np.median([_grad_sigma(gray, tuple(c), half) for c in cents]))
    ext = half * (abs(math.cos(math.radians(spec.rotation_deg))) + abs(math.sin(math.radians(spec.rotation_deg))))
    # clipping over the chart's area: a few clipped pixels (noise on a well-exposed white page, a
    # speck of glare) are left out of the fits; many mark the frame over-exposed
    enc3 = enc if enc.ndim == 3 else enc[:, :, None]
    clip_px = np.any(enc3[:, :, :3] >= config.saturation_level, axis=-1)
    xs, ys = cents[:, 0], cents[:, 1]
    m = ext + 2
    x0, x1 = int(max(0, xs.min() - m)), int(min(gray.shape[1], xs.max() + m + 1))
    y0, y1 = int(max(0, ys.min() - m)), int(min(gray.shape[0], ys.max() + m + 1))
    sat = float(np.mean(clip_px[y0:y1, x0:x1])) if y1 > y0 and x1 > x0 else 0.0
    over = sat > config.max_saturated_fraction
    fits = _fit_squares(gray, spec, cents, half, psi, sig0, pitch_px, clip_px if clip_px.any() else None)
    if fits is None:
        return FrameMeasurement(False, "chart found but a square could not be measured (cut off at the image edge?)")
    centres = np.array([f.centre_px for f in fits])
    k, phi, t, res = _similarity(ref, centres)
    dof = max(1, 2 * n_sq - 4)
    resid = float(np.sqrt((res**2).sum() / dof))
    if resid > config.max_grid_residual * pitch_px:
        return FrameMeasurement(False, f"chart found but its squares do not line up (residual {resid:.1f} px): is it flat and facing the camera?")
    # scale error: residual per coordinate over the spread of the chart centres
    spread = float(np.sqrt(((ref - ref.mean(0)) ** 2).sum()))
    scale_rel_err = max(resid / (k * spread) if spread > 0 else math.nan, 1e-6)
    if config.blur == "moment":
        sig = np.array([f.sigma_moment_px for f in fits])
        sig = sig[np.isfinite(sig)]
    else:
        sig = np.array([f.sigma_px for f in fits])
    if sig.size >= max(3, len(fits) // 2):
        sigma = float(np.median(sig))
        mad = float(np.median(np.abs(sig - sigma))) * 1.4826
        sigma_err = max(1.2533 * mad / math.sqrt(len(sig)), 0.003 + 0.003 * sigma)
    else:  # the squares are too small for the blur's second moment: scale only
        sigma, sigma_err = math.nan, math.nan
    # blur reaching across the white gap between squares couples their edges; the model accounts for
    # it only as far as the PSF is Gaussian, so such frames are trusted less
    gap_px = k * spec.scale * (min(spec.pitch_m) - spec.square_m * (abs(math.cos(math.radians(spec.rotation_deg)))
                                                                     + abs(math.sin(math.radians(spec.rotation_deg)))))
    blur_now = sigma if math.isfinite(sigma) else float(np.median([f.sigma_px for f in fits]))
    crowding = 5.0 * blur_now / max(gap_px, 1e-6)
    if crowding > 1.0:
        scale_rel_err = max(scale_rel_err, 2e-3 * crowding**2)
        sigma_err = max(sigma_err, 0.05 * sigma * crowding**2) if math.isfinite(sigma) else sigma_err
    lo = float(np.median([f.lo for f in fits]))
    hi = float(np.median([f.hi for f in fits]))
    contrast = hi - lo
    # keystone: spacing of the first vs last row and first vs last column
    cols, rows = spec.columns, spec.rows
    grid_pts = centres.reshape(rows, cols, 2)
    row_len = [float(np.linalg.norm(grid_pts[r, -1] - grid_pts[r, 0])) for r in (0, rows - 1)]
    col_len = [float(np.linalg.norm(grid_pts[-1, c] - grid_pts[0, c])) for c in (0, cols - 1)]
    kx = (row_len[0] - row_len[1]) / np.mean(row_len)
    ky = (col_len[0] - col_len[1]) / np.mean(col_len)
    problem = ""
    if sat > config.warn_saturated_fraction and not over:
        problem = (f"{100 * sat:.1f}% of the chart is clipped (noise on bright paper, or glare): measured around "
                   "those pixels; lower the exposure a little")
    if not math.isfinite(sigma):
        problem = f"the squares ({2 * half:.0f} px) are too small to measure this much blur: move the chart closer"
    if over:
        problem = (f"over-exposed: {100 * sat:.1f}% of the chart is clipped (more than "
                   f"{100 * config.max_saturated_fraction:.0f}%); lower the exposure or the light")
    if contrast < config.min_contrast:
        return FrameMeasurement(False, f"chart contrast too low ({contrast:.2f}): light it evenly, avoid glare")
    return FrameMeasurement(
        found=True,
        problem=problem,
        scale_px_per_m=float(k),
        scale_rel_err=float(scale_rel_err),
        sigma_px=sigma,
        sigma_err_px=float(sigma_err),
        centre_px=(float(t[0]), float(t[1])),
        roll_deg=math.degrees(phi),
        grid_residual_px=resid,
        keystone=(float(kx), float(ky)),
        contrast=float(contrast),
        saturated_fraction=sat,
        over_exposed=over,
        squares=tuple(fits),
        square_px=float(np.mean([f.half_sides_px[0] + f.half_sides_px[1] for f in fits])),
    )
