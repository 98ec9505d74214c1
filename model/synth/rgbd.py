"""Reading an RGB-D folder (e.g. NYUv2 exported to files) as all-in-focus images with metric depth.

Layout (searched recursively; the pairing is by name)::

    root/
      kitchen_0001_rgb.png       colour image: PNG or JPEG, 8 or 16 bit
      kitchen_0001_depth.png     depth: 16-bit PNG in millimetres (0 = unknown)      -- or --
      kitchen_0001_depth.npy     depth: float array in metres, or integer array in millimetres
                                 (0, NaN, inf and negative values = unknown)
      sub/folder/x_rgb.jpg + sub/folder/x_depth.npy ...

``NAME_rgb.<png|jpg|jpeg>`` pairs with ``NAME_depth.<npy|png>`` in the same folder (``.npy`` wins
if both exist). The depth map must have the colour image's size. An 8-bit depth PNG is refused (its
unit would be a guess). Colour images without a depth file are skipped with a warning.

Also the one home of two things every RGB-D consumer needs: :func:`motorcycle_rgbd` (scikit-image's
Middlebury 2014 Motorcycle with metric depth; the evaluation set, the export check and the simulated
camera use it) and :func:`crop_resize` (an RGB-D pair cropped to an aspect and resized). Unknown depth is
NaN everywhere, never a made-up distance.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, overload

import numpy as np

from model.errors import FormatError
from model.formats import read_image

__all__ = ["RGBDPair", "find_rgbd_pairs", "read_depth", "read_rgbd", "RGB_SUFFIXES", "motorcycle_rgbd",
           "disparity_to_depth_m", "crop_resize", "CropAlign"]

log = logging.getLogger(__name__)

RGB_SUFFIXES = ("_rgb.png", "_rgb.jpg", "_rgb.jpeg")

#: How :func:`crop_resize`'s window snaps to whole pixels.
CropAlign = Literal["nearest", "floor"]


@dataclass(frozen=True)
class RGBDPair:
    """Paths of one colour image and its depth map."""

    rgb: Path
    depth: Path

    @property
    def name(self) -> str:
        """The shared ``NAME`` prefix."""
        n = self.rgb.name
        return n[: n.lower().rfind("_rgb.")]


def find_rgbd_pairs(root: str | os.PathLike[str]) -> list[RGBDPair]:
    """All ``NAME_rgb.*`` / ``NAME_depth.*`` pairs under ``root``, sorted by path.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: no pair was found.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such folder")
    pairs: list[RGBDPair] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        names = set(filenames)
        for fn in sorted(filenames):
            low = fn.lower()
            suffix = next((s for s in RGB_SUFFIXES if low.endswith(s)), None)
            if suffix is None:
                continue
            stem = fn[: len(fn) - len(suffix)]
            depth = next((stem + s for s in ("_depth.npy", "_depth.png") if stem + s in names), None)
            if depth is None:
                log.warning("%s: no %s_depth.npy or %s_depth.png beside it; skipped", Path(dirpath) / fn, stem, stem)
                continue
            pairs.append(RGBDPair(Path(dirpath) / fn, Path(dirpath) / depth))
    if not pairs:
        raise ValueError(f"{root}: no RGB-D pairs found (expected NAME_rgb.png + NAME_depth.npy|png)")
    return sorted(pairs, key=lambda p: str(p.rgb))


def read_depth(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a depth file as float32 ``(H, W)`` metres, NaN where unknown.

    ``.npy``: float = metres, integer = millimetres. ``.png``: 16-bit millimetres.
    Raises :class:`FormatError` naming the file.
    """
    import cv2

    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            d = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise FormatError(path, "depth", f"unreadable: {e}") from None
        if d.ndim == 3 and d.shape[2] == 1:
            d = d[:, :, 0]
        if d.ndim != 2:
            raise FormatError(path, "depth", f"expected an (H, W) array, got shape {d.shape}")
        if d.dtype.kind in "iu":
            d = d.astype(np.float32) / 1000.0
        elif d.dtype.kind == "f":
            d = d.astype(np.float32)
        else:
            raise FormatError(path, "depth", f"unsupported dtype {d.dtype}")
    elif path.suffix.lower() == ".png":
        raw = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_UNCHANGED) if path.is_file() else None
        if raw is None:
            raise FormatError(path, "depth", "unreadable image")
        if raw.dtype != np.uint16:
            raise FormatError(path, "depth", f"expected a 16-bit PNG in millimetres, got {raw.dtype}")
        if raw.ndim == 3:
            raw = raw[:, :, 0]
        d = raw.astype(np.float32) / 1000.0
    else:
        raise FormatError(path, "depth", "expected a .npy or .png depth file")
    d[~np.isfinite(d) | (d <= 0)] = np.nan
    return d


def read_rgbd(pair: RGBDPair) -> tuple[np.ndarray, np.ndarray]:
    """Read one pair: ``(rgb float32 (H, W, 3) in [0, 1], depth float32 (H, W) metres, NaN unknown)``.

    Raises :class:`FormatError` if either file is unreadable or the sizes differ.
    """
    rgb = read_image(pair.rgb, key="rgb")
    depth = read_depth(pair.depth)
    if depth.shape != rgb.shape[:2]:
        raise FormatError(pair.depth, "depth", f"size {depth.shape[1]}x{depth.shape[0]} differs from the colour image's "
                          f"{rgb.shape[1]}x{rgb.shape[0]}")
    return rgb, depth


# Middlebury 2014 Motorcycle (calib.txt of the "perfect" left view): focal length in pixels, baseline in
# metres and the disparity offset between the two cameras' principal points, pixels
_MOTORCYCLE_FOCAL_PX = 994.978
_MOTORCYCLE_BASELINE_M = 0.193001
_MOTORCYCLE_DOFFS_PX = 31.086


def disparity_to_depth_m(disparity_px: np.ndarray, focal_px: float, baseline_m: float, doffs_px: float = 0.0) -> np.ndarray:
    """Metric depth of a disparity map: ``f B / (disparity + doffs)`` metres, float32 ``(H, W)``.

    Unknown disparity (not finite, or 0: Middlebury's "no match") gives NaN, never a made-up distance.
    """
    disp = np.asarray(disparity_px, np.float64)
    valid = np.isfinite(disp) & (disp != 0)
    depth = np.full(disp.shape, np.nan, np.float32)
    depth[valid] = (focal_px * baseline_m / (disp[valid] + doffs_px)).astype(np.float32)
    return depth


@functools.lru_cache(maxsize=1)
def motorcycle_rgbd() -> tuple[np.ndarray, np.ndarray]:
    """Middlebury 2014 Motorcycle (``skimage.data.stereo_motorcycle``): ``(rgb float32 (500, 741, 3) in
    [0, 1], depth float32 (500, 741) metres, NaN unknown)`` (:func:`disparity_to_depth_m`).

    Cached; treat the arrays as read-only.
    """
    import skimage.data

    left, _right, disp = skimage.data.stereo_motorcycle()
    depth = disparity_to_depth_m(disp, _MOTORCYCLE_FOCAL_PX, _MOTORCYCLE_BASELINE_M, _MOTORCYCLE_DOFFS_PX)
    return np.asarray(left, np.float32) / 255.0, depth


@overload
def crop_resize(rgb: np.ndarray, depth: np.ndarray, size: tuple[int, int], frac: float = ...,
                centre: tuple[float, float] = ..., *, align: CropAlign = ..., interpolation: Optional[int] = ...
                ) -> tuple[np.ndarray, np.ndarray]: ...


@overload
def crop_resize(rgb: np.ndarray, depth: None, size: tuple[int, int], frac: float = ...,
                centre: tuple[float, float] = ..., *, align: CropAlign = ..., interpolation: Optional[int] = ...
                ) -> tuple[np.ndarray, None]: ...


def crop_resize(rgb: np.ndarray, depth: Optional[np.ndarray], size: tuple[int, int], frac: float = 1.0,
                centre: tuple[float, float] = (0.5, 0.5), *, align: CropAlign = "nearest",
                interpolation: Optional[int] = None) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Crop the largest window of ``size``'s aspect, shrunk by ``frac`` and centred at ``centre`` (relative,
    clamped to the image), and resize it to ``size = (w, h)`` pixels.

    Colour by area (shrinking) or bilinear (enlarging), or by ``interpolation``, clipped to [0, 1]; depth by
    nearest neighbour, so NaN (unknown) stays NaN and no depth is averaged across an edge.

    Args:
        rgb: ``(H, W, 3)`` (or ``(H, W)``) float image.
        depth: ``(H, W)`` metres, or ``None``.
        size: ``(width, height)`` of the result, pixels.
        frac: the crop's size relative to the largest window of that aspect, in (0, 1].
        centre: the crop's centre, relative ``(x, y)``.
        align: how the window snaps to whole pixels. ``"nearest"``: its real-valued offset and size are each
            rounded (the evaluation set, the simulated camera). ``"floor"``: its size is rounded first and its
            offset rounded down, so a centred crop leaves the odd pixel after the window, ``(W - w) // 2``
            (RGB-D training folders, the export's check stack).
        interpolation: an OpenCV flag (``cv2.INTER_*``) for the colour image; ``None``: area when shrinking,
            bilinear when enlarging.

    Returns:
        ``(rgb float32 (h, w, ...), depth (h, w) or None)``.
    """
    import cv2

    if align not in ("nearest", "floor"):
        raise ValueError(f"align must be 'nearest' or 'floor', got {align!r}")
    tw, th = int(size[0]), int(size[1])
    ih, iw = rgb.shape[:2]
    cw_f = min(iw, ih * tw / th) * frac
    ch_f = cw_f * th / tw
    if align == "nearest":
        x0 = int(round(min(max(centre[0] * iw - cw_f / 2, 0), iw - cw_f)))
        y0 = int(round(min(max(centre[1] * ih - ch_f / 2, 0), ih - ch_f)))
        cw, ch = int(round(cw_f)), int(round(ch_f))
    else:
        cw, ch = int(round(cw_f)), int(round(ch_f))
        x0 = int(math.floor(min(max(centre[0] * iw - cw / 2, 0), iw - cw)))
        y0 = int(math.floor(min(max(centre[1] * ih - ch / 2, 0), ih - ch)))
    if interpolation is None:
        interpolation = cv2.INTER_AREA if cw > tw else cv2.INTER_LINEAR
    r = np.ascontiguousarray(rgb[y0 : y0 + ch, x0 : x0 + cw])
    r = cv2.resize(r, (tw, th), interpolation=interpolation)
    d = None
    if depth is not None:
        d = cv2.resize(np.ascontiguousarray(depth[y0 : y0 + ch, x0 : x0 + cw]), (tw, th), interpolation=cv2.INTER_NEAREST)
    return np.clip(r, 0, 1).astype(np.float32), d
