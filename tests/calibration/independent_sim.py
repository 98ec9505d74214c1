"""A second, independent rendering path for calibration sessions (tests only).

Written from the thin-lens formulas, not from ``calibration/simulate.py`` or ``model.synth``: only the
chart's printed layout (``calibration.chart.ChartSpec``: squares, check bar, caption box) is shared.
What a camera at the chart gives, per frame:

1. **Geometry** (thin lens, chief ray through the lens centre). Focused at ``P_f`` dioptres the sensor
   sits at ``s = 1 / (1/f - P_f)``; a chart at ``D`` metres images at ``k = s / (D p)`` pixels per
   metre (focus breathing: ``k`` grows as the lens focuses nearer). The chart may be rolled in its
   plane and off the axis by a few pixels.
2. **Sharp irradiance**, integrated over each pixel's area by ``ss x ss`` point samples: ink
   squares (half-plane tests on the printed corners), check bar and ticks, a caption of dark "words",
   white paper, a grey wall around the page; a gentle ``cos^4``-like vignetting.
3. **Defocus**: a uniform disc of diameter ``c = A s |P_f - 1/D|`` (``A = f / N``; equal to the
   ``A f |D - d_f| / (D (d_f - f))`` of ``docs/FORMATS.md``), i.e. radius ``c / (2 p)`` pixels, drawn
   with its own anti-aliased coverage on the fine grid and convolved (FFT) before the pixel's area is
   integrated; an optional small Gaussian for the lens's blur at best focus.
4. **Sensor**: photon noise (Poisson, ``full_well_e`` electrons at full scale), read noise
   (Gaussian, electrons), independently per colour channel; clipping at full scale; sRGB encoding;
   8-bit quantisation.

Sessions are written as ``focal-stack/1`` calibration captures with this module's own JSON and PNG
writer (``docs/FORMATS.md``, "Calibration captures"), so reading them tests the reader too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from calibration.chart import ChartSpec


@dataclass(frozen=True)
class TrueCamera:
    """The lens and sensor a session is rendered through.

    Attributes:
        focal_length_m: ``f``, metres.
        f_number: ``N``.
        pixel_pitch_m: ``p`` at ``image_size``, metres.
        image_size: ``(width, height)``, pixels.
        a, b: the raw focus control ``v`` focuses at ``1/d_f = a v + b`` dioptres.
        intrinsic_sigma_px: the lens's own blur at best focus (Gaussian sigma, pixels; 0 for none).
        paper_level: linear level of the white paper at the image centre (1 = full scale).
        ink: reflectance of the ink relative to the paper.
        wall: level of what surrounds the page, relative to the paper.
        vignetting: fractional fall-off of the light at the image corners.
        full_well_e: electrons at full scale (photon noise).
        read_noise_e: read noise, electrons rms.
        supersample: ``ss``: point samples per pixel and axis.
    """

    focal_length_m: float
    f_number: float
    pixel_pitch_m: float
    image_size: tuple[int, int]
    a: float = 1.0
    b: float = 0.0
    intrinsic_sigma_px: float = 0.0
    paper_level: float = 0.8
    ink: float = 0.06
    wall: float = 0.3
    vignetting: float = 0.12
    full_well_e: float = 3000.0
    read_noise_e: float = 3.0
    supersample: int = 3

    def control(self, dioptres: np.ndarray) -> np.ndarray:
        """Raw control values that focus at ``dioptres``."""
        return (np.asarray(dioptres, np.float64) - self.b) / self.a


def sweep_dioptres(distance_m: float, frames: int = 17, near: float = 0.45, far: float = 2.5) -> np.ndarray:
    """Focus powers (dioptres) of a sweep from ``near x`` to ``far x`` the chart distance, even in dioptres,
    ascending."""
    return np.linspace(1.0 / (far * distance_m), 1.0 / (near * distance_m), frames)


def _sensor_distance_m(cam: TrueCamera, focus_dioptres: float) -> float:
    inv_s = 1.0 / cam.focal_length_m - focus_dioptres
    if inv_s <= 0:
        raise ValueError("focus nearer than the focal length")
    return 1.0 / inv_s


def true_scale_px_per_m(cam: TrueCamera, distance_m: float, focus_dioptres: float) -> float:
    """``s / (D p)``: image scale, pixels per metre of chart."""
    return _sensor_distance_m(cam, focus_dioptres) / (distance_m * cam.pixel_pitch_m)


def true_coc_m(cam: TrueCamera, distance_m: float, focus_dioptres: float) -> float:
    """Circle-of-confusion diameter ``A s |P_f - 1/D|`` on the sensor, metres."""
    s = _sensor_distance_m(cam, focus_dioptres)
    return (cam.focal_length_m / cam.f_number) * s * abs(focus_dioptres - 1.0 / distance_m)


def true_sigma_px(cam: TrueCamera, distance_m: float, focus_dioptres: float) -> float:
    """The disc's moment-matched sigma ``c / (4 p)`` with the lens's own blur in quadrature, pixels."""
    return math.hypot(true_coc_m(cam, distance_m, focus_dioptres) / (4.0 * cam.pixel_pitch_m), cam.intrinsic_sigma_px)


def _inside_convex(X: np.ndarray, Y: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Points ``(X, Y)`` inside the convex polygon ``poly`` ``(K, 2)`` (either winding)."""
    n = len(poly)
    area2 = sum(poly[i, 0] * poly[(i + 1) % n, 1] - poly[(i + 1) % n, 0] * poly[i, 1] for i in range(n))
    sign = 1.0 if area2 > 0 else -1.0
    out = np.ones(X.shape, bool)
    for i in range(n):
        (ax, ay), (bx, by) = poly[i], poly[(i + 1) % n]
        out &= sign * ((bx - ax) * (Y - ay) - (by - ay) * (X - ax)) >= 0
    return out


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


def _page_shapes(spec: ChartSpec) -> list[np.ndarray]:
    """Every dark shape printed on the page, as convex polygons in chart metres."""
    shapes = [sq.corners_m() for sq in spec.squares()]
    rx, ry = spec.ruler_centre_m
    L = spec.ruler_m * spec.scale
    bar, tick = 0.0008 * spec.scale, 0.004 * spec.scale
    shapes.append(_rect(rx - L / 2, ry - bar / 2, rx + L / 2, ry + bar / 2))
    for x in (rx - L / 2, rx + L / 2):
        shapes.append(_rect(x - bar / 2, ry - tick, x + bar / 2, ry + tick))
    # the caption: two lines of "words" (dark blocks of a letter's height)
    cx, cy = spec.caption_centre_m
    fh = 0.0028 * spec.scale
    words = np.random.default_rng(12345)
    for line in (-1, 1):
        y = cy + line * fh
        x = cx - 0.12 * spec.scale
        while x < cx + 0.12 * spec.scale:
            w = float(words.uniform(0.004, 0.014)) * spec.scale
            shapes.append(_rect(x, y - fh / 2, x + w, y + fh / 2))
            x += w + 0.0025 * spec.scale
    return shapes


def _disc_kernel(radius: float) -> np.ndarray:
    """A uniform disc of ``radius`` (fine pixels) with exact-ish anti-aliased coverage (16 x 16 samples per
    cell), normalised to sum 1."""
    if radius < 0.3:
        return np.ones((1, 1))
    r = int(math.ceil(radius + 1))
    sub = (np.arange(16) + 0.5) / 16 - 0.5
    g = np.arange(-r, r + 1, dtype=np.float64)
    xs = (g[:, None] + sub[None, :]).reshape(-1)
    inside = (xs[:, None] ** 2 + xs[None, :] ** 2) <= radius * radius
    n = 2 * r + 1
    k = inside.reshape(n, 16, n, 16).mean(axis=(1, 3))
    return k / k.sum()


def render_linear(
    cam: TrueCamera,
    spec: ChartSpec,
    distance_m: float,
    focus_dioptres: float,
    roll_deg: float = 0.0,
    offset_px: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """The noise-free linear irradiance ``(H, W)`` (1 = full scale) of the chart at ``distance_m`` with the
    lens focused at ``focus_dioptres``."""
    from scipy.ndimage import gaussian_filter
    from scipy.signal import fftconvolve

    k = true_scale_px_per_m(cam, distance_m, focus_dioptres)  # pixels per metre of chart
    radius_px = true_coc_m(cam, distance_m, focus_dioptres) / (2.0 * cam.pixel_pitch_m)
    w, h = cam.image_size
    ss = cam.supersample
    pad = int(math.ceil(radius_px + 4 * cam.intrinsic_sigma_px)) + 2
    # fine sample positions (pixel centres at integers), with a margin for the blur
    W, H = (w + 2 * pad) * ss, (h + 2 * pad) * ss
    cx, cy = (w - 1) / 2 + offset_px[0], (h - 1) / 2 + offset_px[1]
    t = math.radians(roll_deg)
    ct, st = math.cos(t), math.sin(t)

    def to_fine(pts: np.ndarray) -> np.ndarray:
        """chart metres (K, 2) -> fine-grid indices (K, 2) (x, y)."""
        u = ct * pts[:, 0] - st * pts[:, 1]
        v = st * pts[:, 0] + ct * pts[:, 1]
        return np.column_stack([((u * k + cx) + 0.5 + pad) * ss - 0.5, ((v * k + cy) + 0.5 + pad) * ss - 0.5])

    def chart_xy(ix0: int, ix1: int, iy0: int, iy1: int) -> tuple[np.ndarray, np.ndarray]:
        """chart metres of the fine samples in the window [iy0, iy1) x [ix0, ix1)."""
        fx = (np.arange(ix0, ix1) + 0.5) / ss - 0.5 - pad
        fy = (np.arange(iy0, iy1) + 0.5) / ss - 0.5 - pad
        u = (fx[None, :] - cx) / k
        v = (fy[:, None] - cy) / k
        return ct * u + st * v, -st * u + ct * v  # the chart turned by roll_deg in the image

    pw, ph = spec.paper_size_m
    ker = _disc_kernel(radius_px * ss).astype(np.float32)
    # only the page and a margin for the blur differ from the wall: render that window, as the
    # departure from the wall's level (zero outside, so the convolution's zero padding is exact)
    margin = ker.shape[0] // 2 + int(math.ceil(4 * cam.intrinsic_sigma_px * ss)) + 2
    q = to_fine(np.array([[-pw / 2, -ph / 2], [pw / 2, -ph / 2], [pw / 2, ph / 2], [-pw / 2, ph / 2]]))
    wx0, wy0 = np.maximum(np.floor(q.min(0)).astype(int) - margin, 0)
    wx1, wy1 = np.minimum(np.ceil(q.max(0)).astype(int) + margin + 1, [W, H])
    fine = np.full((H, W), cam.wall, np.float32)
    if wx1 > wx0 and wy1 > wy0:
        X, Y = chart_xy(wx0, wx1, wy0, wy1)
        dev = np.where((np.abs(X) <= pw / 2) & (np.abs(Y) <= ph / 2), 1.0 - cam.wall, 0.0).astype(np.float32)
        for poly in _page_shapes(spec):
            q = to_fine(poly) - np.array([wx0, wy0])
            x0, y0 = np.maximum(np.floor(q.min(0)).astype(int) - 1, 0)
            x1, y1 = np.minimum(np.ceil(q.max(0)).astype(int) + 2, [wx1 - wx0, wy1 - wy0])
            if x1 <= x0 or y1 <= y0:
                continue
            ins = _inside_convex(X[y0:y1, x0:x1], Y[y0:y1, x0:x1], poly)
            dev[y0:y1, x0:x1][ins] = cam.ink - cam.wall
        if ker.size > 1:
            dev = fftconvolve(dev, ker, mode="same")
        if cam.intrinsic_sigma_px > 0:
            dev = gaussian_filter(dev, cam.intrinsic_sigma_px * ss, mode="constant")
        fine[wy0:wy1, wx0:wx1] += dev
    fine = fine[pad * ss : (pad + h) * ss, pad * ss : (pad + w) * ss]
    lin = fine.reshape(h, ss, w, ss).mean(axis=(1, 3))
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = ((xx - (w - 1) / 2) ** 2 + (yy - (h - 1) / 2) ** 2) / (((w - 1) / 2) ** 2 + ((h - 1) / 2) ** 2)
    return cam.paper_level * (1.0 - cam.vignetting * r2) * lin


def sensor(cam: TrueCamera, lin: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Photon + read noise per channel, clipping, sRGB, 8 bit: ``(H, W)`` linear -> ``(H, W, 3)`` uint8."""
    e = np.clip(lin, 0, None)[:, :, None] * cam.full_well_e
    e = rng.poisson(np.broadcast_to(e, e.shape[:2] + (3,))).astype(np.float64)
    e += rng.normal(0.0, cam.read_noise_e, e.shape)
    x = np.clip(e / cam.full_well_e, 0.0, 1.0)
    enc = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return np.round(enc * 255.0).astype(np.uint8)


def _write_png(path: Path, img: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(img, mode="RGB").save(path)


def write_session(
    out: Path,
    cam: TrueCamera,
    spec: ChartSpec,
    distances_m: Sequence[float],
    frames: int = 17,
    seed: int = 0,
    rolls_deg: Sequence[float] | None = None,
    sweep: tuple[float, float] = (0.45, 2.5),
) -> Path:
    """Render one sweep per chart distance (focus from ``sweep[0] x`` to ``sweep[1] x`` the distance, even in
    dioptres) and write the session: ``chart.json`` and one ``focal-stack/1`` folder per distance whose
    frames carry ``focus_control`` (the raw value) and whose ``target`` names the distance."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "chart.json").write_text(json.dumps(spec.to_dict()), encoding="utf-8")
    rng = np.random.default_rng(seed)
    rolls = list(rolls_deg) if rolls_deg is not None else [1.5 - 2.0 * i for i in range(len(distances_m))]
    for i, d in enumerate(distances_m):
        folder = out / f"chart_{d:.2f}m"
        folder.mkdir()
        dpt = sweep_dioptres(d, frames, *sweep)
        offset = (float(rng.uniform(-6, 6)), float(rng.uniform(-6, 6)))
        entries = []
        for j, P in enumerate(dpt):
            img = sensor(cam, render_linear(cam, spec, d, float(P), rolls[i % len(rolls)], offset), rng)
            name = f"img{j:02d}.png"
            _write_png(folder / name, img)
            entries.append({"file": name, "focus_control": float(cam.control(P))})
        stack = {
            "format": "focal-stack/1",
            "frames": entries,
            "lens": {"focal_length_m": 0.004, "f_number": 2.0, "pixel_pitch_m": 5e-6},
            "target": {"distance_m": float(d), "chart": "../chart.json"},
            "capture": {"lens_placeholder": True, "source": "tests/calibration/independent_sim.py"},
        }
        (folder / "stack.json").write_text(json.dumps(stack, indent=1), encoding="utf-8")
    return out


def mapping_error_dpt(cam: TrueCamera, a: float, b: float, controls: np.ndarray) -> float:
    """Largest ``|(a v + b) - (a_true v + b_true)|`` over ``controls``, dioptres."""
    v = np.asarray(controls, np.float64)
    return float(np.max(np.abs((a * v + b) - (cam.a * v + cam.b))))


#: The two sessions of issue 15 that the fit refused.
LENS_16MM = TrueCamera(16e-3, 1.4, 9.8e-6, (640, 480), a=1.0, b=0.0, intrinsic_sigma_px=0.3)
PHONE_MODULE = TrueCamera(4.74e-3, 1.8, 5e-6, (1280, 960), a=1.0, b=0.0, intrinsic_sigma_px=0.3, paper_level=0.93)
