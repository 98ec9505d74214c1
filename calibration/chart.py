"""The printable calibration chart: layout, rasterisation, PNG/PDF output and ``chart.json``.

The chart is a grid of black squares on white paper, each square turned by a few degrees:

- the square **centres** are a known-spaced pattern whose image spacing gives the image scale in
  pixels per metre (a centre is unchanged by any symmetric blur, so the scale is measured the same way
  in sharp and blurred frames);
- the square **edges** are long straight step edges, slanted against the pixel grid (slanted-edge
  style), whose width gives the blur.

Coordinates on the chart are metres from the chart centre, ``x`` to the right and ``y`` down as
printed. The chart centre is the page centre. ``chart.json`` (``calibration-chart/1``) describes the
layout; see ``calibration/README.md``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from model.atomic import atomic_write_bytes, atomic_write_json
from model.errors import FormatError
from model.jsonfile import read_json_object

__all__ = [
    "CHART_FORMAT",
    "PAPERS",
    "Square",
    "ChartSpec",
    "default_chart",
    "load_chart",
    "rasterize_page",
    "write_target",
    "chart_dict_for_session",
]

CHART_FORMAT = "calibration-chart/1"

#: Paper sizes, landscape ``(width_m, height_m)``.
PAPERS: dict[str, tuple[float, float]] = {
    "A4": (0.297, 0.210),
    "letter": (0.2794, 0.2159),
    "A3": (0.420, 0.297),
}


@dataclass(frozen=True)
class Square:
    """One black square of the chart.

    Attributes:
        centre_m: ``(x, y)`` metres from the chart centre (x right, y down).
        side_m: side length, metres.
        rotation_deg: counter-clockwise turn against the page edges as seen on the page, degrees.
    """

    centre_m: tuple[float, float]
    side_m: float
    rotation_deg: float

    def corners_m(self) -> np.ndarray:
        """``(4, 2)`` corner coordinates in metres (x right, y down), in drawing order."""
        h = self.side_m / 2
        t = math.radians(self.rotation_deg)
        c, s = math.cos(t), math.sin(t)
        # y points down, so a counter-clockwise turn on the page is (x, y) -> (c x + s y, -s x + c y)
        local = np.array([[-h, -h], [h, -h], [h, h], [-h, h]])
        rot = np.array([[c, s], [-s, c]])
        return local @ rot.T + np.asarray(self.centre_m)


@dataclass(frozen=True)
class ChartSpec:
    """The chart layout.

    Attributes:
        paper: paper name (a key of :data:`PAPERS`), landscape.
        columns, rows: the grid of squares.
        square_m: square side, metres.
        pitch_m: ``(x, y)`` centre-to-centre spacing, metres.
        rotation_deg: turn of every square (slanted edges), degrees.
        ruler_m: length of the printed check bar, metres (the user measures it on the print).
        name: a name written into ``chart.json``.
        scale: printed size / nominal size (1.0 for a print at 100 %; a measured ruler corrects it).
    """

    paper: str = "A4"
    columns: int = 3
    rows: int = 2
    square_m: float = 0.050
    pitch_m: tuple[float, float] = (0.080, 0.080)
    rotation_deg: float = 5.0
    ruler_m: float = 0.200
    name: str = "daif-squares-3x2"
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.paper not in PAPERS:
            raise ValueError(f"unknown paper {self.paper!r} (known: {', '.join(PAPERS)})")
        if self.columns < 2 or self.rows < 2:
            raise ValueError("the chart needs at least 2 columns and 2 rows of squares")
        for key in ("square_m", "ruler_m", "scale"):
            v = getattr(self, key)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{key} must be a positive number, got {v!r}")
        if not 1.0 <= abs(self.rotation_deg) <= 20.0:
            raise ValueError(f"rotation_deg must be between 1 and 20 degrees (slanted edges), got {self.rotation_deg}")
        ext = self.square_m * (abs(math.cos(math.radians(self.rotation_deg))) + abs(math.sin(math.radians(self.rotation_deg))))
        if min(self.pitch_m) < ext + 0.25 * self.square_m:
            raise ValueError(f"pitch {self.pitch_m} m leaves too little white between {self.square_m} m squares")
        w, h = self.chart_size_m
        pw, ph = self.paper_size_m
        if w > pw - 0.02 * self.scale or h > ph - 0.04 * self.scale:
            raise ValueError(
                f"a {w * 1000:.0f} x {h * 1000:.0f} mm chart does not fit on {self.paper} paper "
                f"({pw * 1000:.0f} x {ph * 1000:.0f} mm) with room for the ruler; use fewer or smaller squares"
            )

    @property
    def paper_size_m(self) -> tuple[float, float]:
        """``(width, height)`` of the (landscape) page as printed, metres."""
        w, h = PAPERS[self.paper]
        return w * self.scale, h * self.scale

    @property
    def chart_size_m(self) -> tuple[float, float]:
        """``(width, height)`` of the chart area (squares plus a white border of half a gap), metres."""
        ext = self.square_m * (abs(math.cos(math.radians(self.rotation_deg))) + abs(math.sin(math.radians(self.rotation_deg))))
        border = 0.2 * self.square_m
        return (
            ((self.columns - 1) * self.pitch_m[0] + ext + 2 * border) * self.scale,
            ((self.rows - 1) * self.pitch_m[1] + ext + 2 * border) * self.scale,
        )

    def squares(self) -> list[Square]:
        """The squares, row by row, as printed (``scale`` applied)."""
        out = []
        k = self.scale
        for r in range(self.rows):
            for c in range(self.columns):
                x = (c - (self.columns - 1) / 2) * self.pitch_m[0] * k
                y = (r - (self.rows - 1) / 2) * self.pitch_m[1] * k
                out.append(Square((x, y), self.square_m * k, self.rotation_deg))
        return out

    @property
    def centres_m(self) -> np.ndarray:
        """``(K, 2)`` square centres in metres, row by row."""
        return np.array([sq.centre_m for sq in self.squares()], dtype=np.float64)

    @property
    def ruler_centre_m(self) -> tuple[float, float]:
        """Where the check bar is printed (near the bottom edge of the page, away from the squares), metres."""
        _, ch = self.chart_size_m
        _, ph = self.paper_size_m
        return (0.0, max(ch / 2 + 0.008 * self.scale, ph / 2 - 0.016 * self.scale))

    @property
    def caption_centre_m(self) -> tuple[float, float]:
        """Where the caption is printed (near the top edge of the page), metres."""
        _, ch = self.chart_size_m
        _, ph = self.paper_size_m
        return (0.0, -max(ch / 2 + 0.008 * self.scale, ph / 2 - 0.016 * self.scale))

    def keepout_m(self) -> list[tuple[float, float, float, float]]:
        """Printed things that are not squares (caption, check bar) as ``(x0, y0, x1, y1)`` rectangles in
        chart metres; a measurement keeps away from them and from the page edge."""
        pw, _ = self.paper_size_m
        rx, ry = self.ruler_centre_m
        cx, cy = self.caption_centre_m
        L = self.ruler_m * self.scale
        tick = 0.004 * self.scale
        cap = 0.006 * self.scale
        return [
            (rx - L / 2 - tick, ry - tick, rx + L / 2 + tick, ry + tick),
            (-pw / 2, cy - cap, pw / 2, cy + cap),
        ]

    def distance_limits_m(self, image_size: tuple[int, int], s_over_p_px: float, min_square_px: float = 24.0,
                          fill: float = 0.9) -> tuple[float, float]:
        """``(near, far)`` chart distances for a camera whose image scale times distance is ``s_over_p_px``
        (about ``f / p``): near enough for squares of ``min_square_px`` pixels, far enough for the whole
        chart to fill at most ``fill`` of the frame."""
        cw, ch = self.chart_size_m
        near = s_over_p_px * max(cw / (fill * image_size[0]), ch / (fill * image_size[1]))
        far = s_over_p_px * self.square_m * self.scale / float(min_square_px)
        return near, max(far, 1.2 * near)

    def with_scale(self, scale: float) -> "ChartSpec":
        """The same chart printed at ``scale`` times its nominal size."""
        return replace(self, scale=float(scale))

    def to_dict(self, image: str | None = None, image_size: tuple[int, int] | None = None, dpi: float | None = None) -> dict[str, Any]:
        """The ``calibration-chart/1`` object (see ``calibration/README.md``)."""
        pw, ph = self.paper_size_m
        cw, chh = self.chart_size_m
        d: dict[str, Any] = {
            "format": CHART_FORMAT,
            "name": self.name,
            "coordinates": "metres from the chart centre (= page centre), x right, y down, as printed",
            "paper": {"name": self.paper, "width_m": pw, "height_m": ph},
            "width_m": cw,
            "height_m": chh,
            "grid": {
                "columns": self.columns,
                "rows": self.rows,
                "pitch_m": [self.pitch_m[0] * self.scale, self.pitch_m[1] * self.scale],
                "square_m": self.square_m * self.scale,
                "rotation_deg": self.rotation_deg,
            },
            "squares": [
                {"centre_m": [float(sq.centre_m[0]), float(sq.centre_m[1])], "side_m": sq.side_m, "rotation_deg": sq.rotation_deg}
                for sq in self.squares()
            ],
            "ruler": {"length_m": self.ruler_m * self.scale, "centre_m": list(self.ruler_centre_m)},
            "colours": {"square": 0.0, "background": 1.0},
            "print_scale": self.scale,
        }
        if image is not None:
            d["image"] = image
            d["image_covers"] = "page"
        if image_size is not None:
            d["image_size"] = [int(image_size[0]), int(image_size[1])]
        if dpi is not None:
            d["image_dpi"] = float(dpi)
        return d

    @classmethod
    def from_dict(cls, d: Any, source: str | os.PathLike[str] | None = None) -> "ChartSpec":
        """Parse a ``calibration-chart/1`` object; raises :class:`FormatError` naming the key."""
        if not isinstance(d, Mapping):
            raise FormatError(source, None, "expected a JSON object")
        if d.get("format") != CHART_FORMAT:
            raise FormatError(source, "format", f"expected {CHART_FORMAT!r}, got {d.get('format')!r}")
        grid = d.get("grid")
        if not isinstance(grid, Mapping):
            raise FormatError(source, "grid", "missing or not an object")
        paper = d.get("paper", {})
        paper_name = paper.get("name", "A4") if isinstance(paper, Mapping) else "A4"
        scale = d.get("print_scale", 1.0)
        try:
            scale = _pos(scale, source, "print_scale")
            pitch = grid.get("pitch_m")
            if not isinstance(pitch, (list, tuple)) or len(pitch) != 2:
                raise FormatError(source, "grid.pitch_m", f"expected [x, y] metres, got {pitch!r}")
            cols, rows = grid.get("columns"), grid.get("rows")
            for key, v in (("grid.columns", cols), ("grid.rows", rows)):
                if isinstance(v, bool) or not isinstance(v, int) or v < 2:
                    raise FormatError(source, key, f"expected an integer >= 2, got {v!r}")
            ruler = d.get("ruler", {})
            ruler_m = _pos(ruler.get("length_m", 0.2 * scale), source, "ruler.length_m") if isinstance(ruler, Mapping) else 0.2 * scale
            spec = cls(
                paper=str(paper_name),
                columns=int(cols),  # type: ignore[arg-type]
                rows=int(rows),  # type: ignore[arg-type]
                square_m=_pos(grid.get("square_m"), source, "grid.square_m") / scale,
                pitch_m=(_pos(pitch[0], source, "grid.pitch_m[0]") / scale, _pos(pitch[1], source, "grid.pitch_m[1]") / scale),
                rotation_deg=float(grid.get("rotation_deg", 5.0)),
                ruler_m=ruler_m / scale,
                name=str(d.get("name", "chart")),
                scale=scale,
            )
        except FormatError:
            raise
        except ValueError as e:
            raise FormatError(source, "grid", str(e)) from None
        return spec


def _pos(v: Any, source: Any, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)) or float(v) <= 0:
        raise FormatError(source, key, f"expected a positive number, got {v!r}")
    return float(v)


def default_chart(paper: str = "A4") -> ChartSpec:
    """The standard chart for ``paper`` (3 x 2 squares of 50 mm at 80 mm pitch on A4/letter, larger on A3)."""
    if paper == "A3":
        return ChartSpec(paper="A3", square_m=0.070, pitch_m=(0.115, 0.115), ruler_m=0.3, name="daif-squares-3x2-a3")
    return ChartSpec(paper=paper, name=f"daif-squares-3x2-{paper.lower()}")


def load_chart(path: str | os.PathLike[str]) -> ChartSpec:
    """Read ``chart.json``; raises :class:`FormatError` naming the file and key."""
    path = Path(path)
    return ChartSpec.from_dict(read_json_object(path), source=path)


# ----------------------------------------------------------------------------- rasterisation


def rasterize_page(
    spec: ChartSpec, px_per_m: float, supersample: int = 4, text: bool = True, max_pixels: int = 60_000_000
) -> np.ndarray:
    """Draw the whole page (squares, check bar, caption) as a grey image.

    Args:
        spec: the chart.
        px_per_m: resolution, pixels per metre of paper.
        supersample: edges are anti-aliased by drawing at this many times the resolution and
            area-averaging.
        text: draw the caption and the check bar (a simulator may leave them out).
        max_pixels: refuse larger outputs.

    Returns:
        ``(H, W)`` float32 in ``[0, 1]`` (1 = white paper); pixel ``(i, j)`` covers
        ``x in [j, j+1) / px_per_m - page_w / 2``, likewise for ``y``.
    """
    import cv2

    pw, ph = spec.paper_size_m
    w, h = int(round(pw * px_per_m)), int(round(ph * px_per_m))
    if w * h > max_pixels or w < 8 or h < 8:
        raise ValueError(f"page raster {w}x{h} pixels is out of range; choose another resolution")
    ss = max(1, int(supersample))
    while ss > 1 and w * h * ss * ss > 4 * max_pixels // 10:
        ss -= 1
    # fillPoly with fractional coordinates: `shift` bits of sub-pixel precision
    shift = 8
    canvas = np.full((h * ss, w * ss), 255, np.uint8)
    k = px_per_m * ss

    def to_px(pts_m: np.ndarray) -> np.ndarray:
        xy = (pts_m + np.array([pw / 2, ph / 2])) * k - 0.5  # pixel centres at integer coordinates
        return np.round(xy * (1 << shift)).astype(np.int32)

    for sq in spec.squares():
        # exact point sampling at the canvas pixel centres (cv2.fillPoly would also paint the pixels its
        # outline touches, about one pixel too many per side)
        _fill_convex(canvas, (sq.corners_m() + np.array([pw / 2, ph / 2])) * k - 0.5)
    if text:
        rx, ry = spec.ruler_centre_m
        L = spec.ruler_m * spec.scale
        bar = 0.0008 * spec.scale
        tick = 0.004 * spec.scale
        rects = [
            np.array([[rx - L / 2, ry - bar / 2], [rx + L / 2, ry - bar / 2], [rx + L / 2, ry + bar / 2], [rx - L / 2, ry + bar / 2]]),
        ]
        for x0 in (rx - L / 2, rx + L / 2):
            rects.append(np.array([[x0 - bar / 2, ry - tick], [x0 + bar / 2, ry - tick], [x0 + bar / 2, ry + tick], [x0 - bar / 2, ry + tick]]))
        for r in rects:
            cv2.fillPoly(canvas, [to_px(r)], 0, lineType=cv2.LINE_8, shift=shift)
        font_h_m = 0.0028 * spec.scale
        fscale = font_h_m * k / 22.0
        thick = max(1, int(round(fscale * 1.6)))
        cx, cy = spec.caption_centre_m
        lines = _caption(spec)
        for i, line in enumerate(lines):
            (tw, _), _ = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, fscale, thick)
            y = cy + (i - (len(lines) - 1) / 2) * 2.0 * font_h_m
            org = (int((cx + pw / 2) * k - tw / 2), int((y + ph / 2) * k + font_h_m * k / 2))
            cv2.putText(canvas, line, org, cv2.FONT_HERSHEY_SIMPLEX, fscale, 0, thick, cv2.LINE_AA)
    img = canvas.astype(np.float32) / 255.0
    if ss > 1:
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    return img


def _fill_convex(canvas: np.ndarray, poly: np.ndarray, value: int = 0) -> None:
    """Set the pixels of ``canvas`` whose centres (integer coordinates) lie inside the convex polygon
    ``poly`` (``(K, 2)`` x, y, either winding) to ``value``."""
    h, w = canvas.shape
    x0, y0 = np.floor(poly.min(0)).astype(int)
    x1, y1 = np.ceil(poly.max(0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w - 1), min(y1, h - 1)
    if x1 < x0 or y1 < y0:
        return
    ys, xs = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
    ys, xs = ys.astype(np.float64), xs.astype(np.float64)
    area2 = 0.0
    n = len(poly)
    for i in range(n):
        (ax, ay), (bx, by) = poly[i], poly[(i + 1) % n]
        area2 += ax * by - bx * ay
    sign = 1.0 if area2 > 0 else -1.0
    inside = np.ones(xs.shape, bool)
    for i in range(n):
        (ax, ay), (bx, by) = poly[i], poly[(i + 1) % n]
        inside &= sign * ((bx - ax) * (ys - ay) - (by - ay) * (xs - ax)) >= 0
    canvas[y0 : y1 + 1, x0 : x1 + 1][inside] = value


def _caption(spec: ChartSpec) -> list[str]:
    k = spec.scale * 1000
    return [
        f"{spec.name} - print at 100% (actual size); check: the bar below the squares is {spec.ruler_m * k:.0f} mm long",
        f"squares {spec.square_m * k:.0f} mm at {spec.pitch_m[0] * k:.0f} mm pitch - keep the page flat, matte, evenly lit, facing the camera",
    ]


def _pdf_bytes(spec: ChartSpec) -> bytes:
    """A one-page vector PDF of the page at its physical size."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.patches import Polygon

    pw, ph = spec.paper_size_m
    inch = 0.0254
    fig = Figure(figsize=(pw / inch, ph / inch))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-pw / 2, pw / 2)
    ax.set_ylim(ph / 2, -ph / 2)  # y down, as on the page
    ax.set_axis_off()
    for sq in spec.squares():
        ax.add_patch(Polygon(sq.corners_m(), closed=True, facecolor="black", edgecolor="none", antialiased=True))
    rx, ry = spec.ruler_centre_m
    L = spec.ruler_m * spec.scale
    bar = 0.0008 * spec.scale
    tick = 0.004 * spec.scale
    ax.add_patch(Polygon([[rx - L / 2, ry - bar / 2], [rx + L / 2, ry - bar / 2], [rx + L / 2, ry + bar / 2], [rx - L / 2, ry + bar / 2]],
                         closed=True, facecolor="black", edgecolor="none"))
    for x0 in (rx - L / 2, rx + L / 2):
        ax.add_patch(Polygon([[x0 - bar / 2, ry - tick], [x0 + bar / 2, ry - tick], [x0 + bar / 2, ry + tick], [x0 - bar / 2, ry + tick]],
                             closed=True, facecolor="black", edgecolor="none"))
    cx, cy = spec.caption_centre_m
    ax.text(cx, cy, "\n".join(_caption(spec)), ha="center", va="center", fontsize=7, linespacing=1.6)
    buf = io.BytesIO()
    fig.savefig(buf, format="pdf", metadata={"Title": spec.name, "Subject": "DAIF lens calibration chart"})
    return buf.getvalue()


def _png_bytes(img: np.ndarray, dpi: float) -> bytes:
    import io

    from PIL import Image

    im = Image.fromarray(np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8), mode="L")
    buf = io.BytesIO()
    im.save(buf, format="PNG", dpi=(dpi, dpi))
    return buf.getvalue()


def write_target(out_dir: str | os.PathLike[str], spec: ChartSpec | None = None, dpi: float = 300.0) -> dict[str, Path]:
    """Write ``chart.png`` (the page at ``dpi``, with the physical resolution stored), ``chart.pdf``
    (vector, page size = paper size) and ``chart.json`` into ``out_dir``, each atomically.

    Returns ``{"png": ..., "pdf": ..., "json": ...}``.
    """
    spec = spec or default_chart()
    if not (isinstance(dpi, (int, float)) and 50 <= dpi <= 1200):
        raise ValueError(f"dpi must be between 50 and 1200, got {dpi!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    px_per_m = dpi / 0.0254
    img = rasterize_page(spec, px_per_m)
    png = atomic_write_bytes(out / "chart.png", _png_bytes(img, dpi))
    pdf = atomic_write_bytes(out / "chart.pdf", _pdf_bytes(spec))
    js = atomic_write_json(out / "chart.json", spec.to_dict(image="chart.png", image_size=(img.shape[1], img.shape[0]), dpi=dpi) | {"pdf": "chart.pdf"})
    return {"png": png, "pdf": pdf, "json": js}


def chart_dict_for_session(spec: ChartSpec) -> dict[str, Any]:
    """The ``chart.json`` object written beside captured stacks (no image: the geometry is all a fit needs)."""
    d = spec.to_dict()
    d["image"] = None
    return d

