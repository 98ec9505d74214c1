#!/usr/bin/env python3
"""Convert phone focus sweeps of the AF 4D data set into registered focal-stack/1 folders.

The data: Abuolaim, Punnappurath and Brown, "Revisiting Autofocus for Smartphone Cameras" (ECCV 2018),
as redistributed in github NUCS331/HW5_Focal_Stack. Each scene folder holds one JPEG per lens
position, named IMAGE_<capture>_<dioptres>.jpg (e.g. IMAGE_01_03.59207582.jpg): <dioptres> is the
focus distance in dioptres (1/m, Android's LENS_FOCUS_DISTANCE). The camera (Samsung Galaxy S6 edge,
4.3 mm f/1.9) breathes: the image magnification grows by about 0.65 % per dioptre of focus, so the
frames are registered before they are written.

For each scene folder the converter picks the frames whose dioptres are nearest the requested ones,
estimates each frame's magnification relative to the frame focused farthest (a coarse-to-fine search
over isotropic scale about the image centre, maximising the normalised cross-correlation of the
blurred gradient magnitude, which tolerates the frames' different defocus), resamples every frame to
the reference magnification, crops the common border that every frame covers, resizes to --width
(area interpolation) and writes OUT_DIR/<scene folder name>/ as focal-stack/1 (docs/FORMATS.md):
frame PNGs, stack.json (focus_distance_m = 1/dioptre, provenance under "source" and "registration")
and lens.json (lens/1 with the pixel pitch of the written images). No depth.npy, no aif.png: the data
set has no ground truth.

The whole OUT_DIR appears at once when every scene is done (built in a temporary sibling folder);
bad input is refused before anything is written (exit code 2, one line on stderr).

The data set carries no licence: keep its images and the converted stacks out of the repository
(data/ is git-ignored).

examples:
  python scripts/af4d_to_stacks.py /tmp/nu/Data/scene1 /tmp/nu/Data/scene2 --out data/real_af4d
  python scripts/af4d_to_stacks.py scene6 --out data/af4d_s6 --dioptres 1.0,2.0,3.2,4.4,5.6 --width 816
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

try:  # run as a plain file from a checkout that was not pip-installed
    import model  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.atomic import atomic_dir
from model.errors import FormatError
from model.formats import FocalStack, write_stack
from model.lens import FocusControl, LensProfile

__all__ = [
    "ConversionError",
    "ConvertConfig",
    "SourceFrame",
    "Registration",
    "SceneResult",
    "DEFAULT_DIOPTRES",
    "plan",
    "parse_scene",
    "select_frames",
    "frame_size",
    "load_rgb",
    "registration_features",
    "estimate_magnification",
    "register_frames",
    "fit_breathing",
    "common_crop",
    "resample_frame",
    "convert_scene",
    "convert",
    "main",
]

DEFAULT_DIOPTRES: tuple[float, ...] = tuple(float(d) for d in np.linspace(1.0, 6.0, 5))
"""5 focus settings evenly spaced from 1 to 6 dioptres (1 m to 0.17 m)."""

SOURCE = "Abuolaim et al. ECCV 2018 AF dataset via github NUCS331/HW5_Focal_Stack"
LICENCE_NOTE = "no licence: keep out of the repository"

_NAME = re.compile(r"^IMAGE_(?P<capture>[^_]+)_(?P<dioptres>.+)\.jpe?g$", re.IGNORECASE)
_FLOAT = re.compile(r"^[0-9]+(\.[0-9]*)?$")


class ConversionError(ValueError):
    """Input the converter cannot use: the message names the file or value and the fix (exit code 2)."""


@dataclass(frozen=True)
class ConvertConfig:
    """What to convert and how.

    Attributes:
        scenes: scene folders, each holding IMAGE_<capture>_<dioptres>.jpg files.
        out: the output root; must not exist or be an empty folder. One stack folder per scene, named
            after the scene folder.
        dioptres: the focus settings to pick, dioptres (1/m); the nearest frame is taken for each.
        width: width of the written frames, pixels (the height keeps the registered crop's aspect).
        focal_mm: focal length, millimetres.
        f_number: the f-number N.
        pitch_um: pixel pitch of the source JPEGs at their full width, micrometres.
        tolerance_d: the most a picked frame's dioptres may differ from the requested value.
        scale_range: (lowest, highest) magnification searched, relative to the reference frame.
        quiet: print nothing.
    """

    scenes: tuple[Path, ...]
    out: Path
    dioptres: tuple[float, ...] = DEFAULT_DIOPTRES
    width: int = 1632
    focal_mm: float = 4.3
    f_number: float = 1.9
    pitch_um: float = 1.8
    tolerance_d: float = 0.3
    scale_range: tuple[float, float] = (0.90, 1.10)
    quiet: bool = False


@dataclass(frozen=True)
class SourceFrame:
    """One JPEG of a focus sweep.

    Attributes:
        path: the file.
        capture: the capture label of its name (``01`` in ``IMAGE_01_03.59207582.jpg``).
        dioptres: the focus setting of its name, dioptres (1/m).
    """

    path: Path
    capture: str
    dioptres: float


@dataclass(frozen=True)
class Registration:
    """The registration of one frame to the reference frame.

    Attributes:
        magnification: the frame's image scale relative to the reference (the frame is the reference
            magnified by this about the image centre; 1 for the reference itself).
        ncc: the normalised cross-correlation of the feature images at that scale, in [-1, 1].
    """

    magnification: float
    ncc: float


@dataclass
class SceneResult:
    """What :func:`convert_scene` made of one scene folder.

    Attributes:
        scene: the scene folder.
        stack_dir: the written stack folder (its final place under ``out``).
        frames: the picked source frames, nearest focus first (the stack's frame order).
        registrations: one per frame, same order.
        breathing_b: fitted ``b`` of ``magnification = 1 + b * (D - D_ref)``, per dioptre.
        breathing_rms: RMS residual of that fit (magnification units).
        reference: the reference frame (focused farthest).
        crop: ``(x0, y0, width, height)`` of the common crop in reference-frame source pixels
            (``x0, y0`` may be fractional: the crop is centred).
        size: ``(width, height)`` of the written frames, pixels.
        pixel_pitch_m: pixel pitch of the written frames, metres.
        seconds: wall time of the conversion.
        notes: warnings (weak registration, breathing not linear in dioptres).
    """

    scene: Path
    stack_dir: Path
    frames: list[SourceFrame]
    registrations: list[Registration]
    breathing_b: float
    breathing_rms: float
    reference: SourceFrame
    crop: tuple[float, float, int, int]
    size: tuple[int, int]
    pixel_pitch_m: float
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


Log = Callable[[str], None]


def _no_log(_: str) -> None:
    pass


# ----------------------------------------------------------------------------- input


def parse_scene(folder: Path) -> list[SourceFrame]:
    """The focus sweep in ``folder``: every ``IMAGE_<capture>_<dioptres>.jpg``, sorted by dioptres.

    Other files are ignored.

    Raises:
        ConversionError: ``folder`` is not a folder, holds no such file, a name's dioptres are not a
            number, two files have the same dioptres, or the files come from several captures.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConversionError(f"{folder}: not a folder (pass scene folders holding IMAGE_<n>_<dioptres>.jpg files)")
    frames: list[SourceFrame] = []
    for p in sorted(folder.iterdir()):
        if not p.is_file() or not p.name.upper().startswith("IMAGE_") or p.suffix.lower() not in (".jpg", ".jpeg"):
            continue
        m = _NAME.match(p.name)
        if m is None or not _FLOAT.match(m.group("dioptres")):
            raise ConversionError(f"{p}: cannot read the focus setting from the name (expected "
                                  f"IMAGE_<n>_<dioptres>.jpg, e.g. IMAGE_01_03.59207582.jpg); rename or remove it")
        frames.append(SourceFrame(p, m.group("capture"), float(m.group("dioptres"))))
    if not frames:
        raise ConversionError(f"{folder}: no IMAGE_<n>_<dioptres>.jpg files (e.g. IMAGE_01_03.59207582.jpg); "
                              f"pass the AF 4D scene folders themselves")
    captures = sorted({f.capture for f in frames})
    if len(captures) > 1:
        raise ConversionError(f"{folder}: frames of {len(captures)} captures ({', '.join(captures[:4])}); "
                              f"keep one capture's IMAGE_<n>_*.jpg files per scene folder")
    frames.sort(key=lambda f: f.dioptres)
    for a, b in zip(frames, frames[1:]):
        if a.dioptres == b.dioptres:
            raise ConversionError(f"{b.path}: same focus setting ({b.dioptres:g} D) as {a.path.name}; remove one")
    return frames


def select_frames(frames: Sequence[SourceFrame], dioptres: Sequence[float], tolerance_d: float = 0.3) -> list[SourceFrame]:
    """For each requested focus setting (dioptres) the frame whose dioptres are nearest.

    Args:
        frames: the sweep, sorted by dioptres.
        dioptres: requested focus settings, dioptres (1/m).
        tolerance_d: the most the picked frame may differ from the request, dioptres.

    Returns:
        The picked frames, in the order of ``dioptres``.

    Raises:
        ConversionError: a request with no frame within ``tolerance_d`` (outside the sweep's range),
            two requests that pick the same frame, or a picked frame at 0 dioptres (infinity).
    """
    folder = frames[0].path.parent
    lo, hi = frames[0].dioptres, frames[-1].dioptres
    avail = np.array([f.dioptres for f in frames])
    picked: list[SourceFrame] = []
    by_file: dict[Path, float] = {}
    for d in dioptres:
        i = int(np.argmin(np.abs(avail - d)))
        f = frames[i]
        if abs(f.dioptres - d) > tolerance_d:
            raise ConversionError(f"--dioptres {d:g}: {folder} has no frame within {tolerance_d:g} D (nearest "
                                  f"{f.path.name} at {f.dioptres:.3f} D; the sweep covers {lo:.3f}-{hi:.3f} D); "
                                  f"request values inside that range")
        if f.path in by_file:
            raise ConversionError(f"--dioptres {by_file[f.path]:g} and {d:g} both pick {f.path} ({f.dioptres:.3f} D); "
                                  f"request settings further apart")
        if f.dioptres <= 0:
            raise ConversionError(f"--dioptres {d:g}: picks {f.path} focused at infinity (0 D); request a value > 0")
        by_file[f.path] = d
        picked.append(f)
    return picked


def frame_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` in pixels of a JPEG as displayed (EXIF orientation applied), from its header.

    Raises:
        ConversionError: the file is not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except (OSError, UnidentifiedImageError) as e:
        raise ConversionError(f"{path}: not a readable JPEG ({e}); replace or remove it") from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _check_sizes(frames: Sequence[SourceFrame]) -> tuple[int, int]:
    """The common ``(width, height)`` of ``frames``; raises :class:`ConversionError` if they differ."""
    size = frame_size(frames[0].path)
    for f in frames[1:]:
        s = frame_size(f.path)
        if s != size:
            raise ConversionError(f"{f.path}: {s[0]}x{s[1]} pixels, but {frames[0].path.name} is {size[0]}x{size[1]}; "
                                  f"every frame of a sweep must have the same size")
    return size


def load_rgb(path: Path) -> np.ndarray:
    """Decode a JPEG as ``(H, W, 3)`` uint8 sRGB (EXIF orientation applied).

    Raises:
        ConversionError: the file cannot be decoded.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as e:
        raise ConversionError(f"{path}: cannot decode the image ({e}); replace or remove it") from None


# ----------------------------------------------------------------------------- registration


def registration_features(rgb: np.ndarray, width: int) -> np.ndarray:
    """The image the magnification search compares: blurred gradient magnitude of the grey image.

    The grey image is area-resized to ``width`` pixels (aspect kept); the Sobel gradient magnitude is
    blurred by a Gaussian of ``max(1, 0.0025 * width)`` pixels so that frames with different defocus
    still correlate.

    Args:
        rgb: ``(H, W, 3)`` uint8 or float image.
        width: working width, pixels (at most ``W``).

    Returns:
        ``(h, width)`` float32 feature image.
    """
    import cv2

    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32)
    h, w = grey.shape
    width = min(int(width), w)
    height = max(8, int(round(h * width / w)))
    if width != w:
        grey = cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.GaussianBlur(cv2.magnitude(gx, gy), (0, 0), max(1.0, 0.0025 * width))


def _scale_about_centre(img: np.ndarray, scale: float) -> np.ndarray:
    """``out(x) = img(c + scale * (x - c))``, same size, bilinear, reflected at the border (``c``: the image centre):
    the package's :func:`model.synth.frame.magnify` by ``1 / scale``."""
    from model.synth.frame import magnify

    return magnify(img, 1.0 / scale)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two equally shaped arrays, in [-1, 1] (0 for a constant one)."""
    a = a.astype(np.float64) - a.mean()
    b = b.astype(np.float64) - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum()) / den if den > 0 else 0.0


def _centre(img: np.ndarray, frac: float) -> np.ndarray:
    h, w = img.shape[:2]
    y0, x0 = int(round(h * (1 - frac) / 2)), int(round(w * (1 - frac) / 2))
    return img[y0:h - y0, x0:w - x0]


def _scan(feat: np.ndarray, ref_centre: np.ndarray, frac: float, scales: np.ndarray) -> np.ndarray:
    """NCC of ``ref``'s centre with ``feat`` rescaled by each of ``scales``."""
    return np.array([_ncc(ref_centre, _centre(_scale_about_centre(feat, float(s)), frac)) for s in scales])


def _peak(scales: np.ndarray, scores: np.ndarray) -> tuple[float, float, int]:
    """Sub-step peak of a sampled score curve (parabola through the best sample and its neighbours)."""
    i = int(np.argmax(scores))
    s, c = float(scales[i]), float(scores[i])
    if 0 < i < len(scales) - 1:
        den = scores[i - 1] - 2 * scores[i] + scores[i + 1]
        if den < 0:
            off = 0.5 * (scores[i - 1] - scores[i + 1]) / den
            s += float(np.clip(off, -0.5, 0.5)) * float(scales[1] - scales[0])
    return s, c, i


def estimate_magnification(
    frame: np.ndarray,
    reference: np.ndarray,
    scale_range: tuple[float, float] = (0.90, 1.10),
    coarse_width: int = 400,
    fine_width: int = 816,
    name: str = "frame",
) -> Registration:
    """Magnification of ``frame`` relative to ``reference`` (isotropic, about the image centre).

    A coarse search over ``scale_range`` (steps of 0.004) at ``coarse_width`` pixels, then a fine one
    (steps of 0.0005, +-0.006 about the coarse peak) at ``fine_width`` pixels, each scoring the
    normalised cross-correlation of :func:`registration_features` over the central 85 % of the
    reference; the fine peak is refined by a parabola. Robust to different defocus of the two frames.

    Args:
        frame: ``(H, W, 3)`` image (uint8 or float).
        reference: ``(H, W, 3)`` image of the same size.
        scale_range: lowest and highest magnification searched.
        coarse_width, fine_width: working widths, pixels (capped at ``W``).
        name: the frame's name for error messages.

    Returns:
        The :class:`Registration` (``frame`` is ``reference`` magnified by ``magnification``).

    Raises:
        ConversionError: the best coarse scale is at an end of ``scale_range`` (the frames do not show
            the same scene, or the breathing is larger than the range).
    """
    lo, hi = scale_range
    # the central window stays inside every rescaled frame: the feature at x is read at c + s (x - c)
    frac = min(0.85, 0.98 / max(1.0, hi))
    feat_c, ref_c = registration_features(frame, coarse_width), registration_features(reference, coarse_width)
    coarse = np.arange(lo, hi + 1e-9, 0.004)
    scores = _scan(feat_c, _centre(ref_c, frac), frac, coarse)
    s0, _, i = _peak(coarse, scores)
    if i == 0 or i == len(coarse) - 1:
        raise ConversionError(f"{name}: the best magnification relative to the reference is at the end of the searched "
                              f"range {lo:g}-{hi:g} ({coarse[i]:.3f}); are all frames one scene from one viewpoint?")
    feat_f, ref_f = registration_features(frame, fine_width), registration_features(reference, fine_width)
    ref_fc = _centre(ref_f, frac)
    for _ in range(4):  # recentre when the fine peak lands on an end of its window
        fine = s0 + np.arange(-12, 13) * 0.0005
        scores = _scan(feat_f, ref_fc, frac, fine)
        s, c, i = _peak(fine, scores)
        if 0 < i < len(fine) - 1:
            break
        s0 = float(fine[i])
    return Registration(magnification=float(s), ncc=float(c))


def register_frames(
    images: Sequence[np.ndarray],
    ref_index: int,
    names: Sequence[str],
    scale_range: tuple[float, float] = (0.90, 1.10),
    log: Log = _no_log,
    coarse_width: int = 400,
    fine_width: int = 816,
) -> list[Registration]:
    """Magnification of every image relative to ``images[ref_index]`` (1 for the reference itself).

    Args:
        images: ``(H, W, 3)`` images of one size.
        ref_index: which one is the reference.
        names: a name per image (progress lines and errors).
        scale_range: lowest and highest magnification searched.
        log: called with one progress line per frame.
    """
    regs: list[Registration] = []
    for k, (img, name) in enumerate(zip(images, names)):
        if k == ref_index:
            reg = Registration(1.0, 1.0)
        else:
            reg = estimate_magnification(img, images[ref_index], scale_range, coarse_width, fine_width, name)
        regs.append(reg)
        log(f"  registered {k + 1}/{len(images)} {name}: magnification {reg.magnification:.5f}"
            f"{' (reference)' if k == ref_index else f', ncc {reg.ncc:.3f}'}")
    return regs


def fit_breathing(dioptres: Sequence[float], magnifications: Sequence[float], d_ref: float) -> tuple[float, float]:
    """Least-squares ``b`` of ``magnification = 1 + b * (D - d_ref)``.

    Args:
        dioptres: focus settings ``D``, dioptres.
        magnifications: the measured magnifications, same order.
        d_ref: the reference frame's focus setting, dioptres.

    Returns:
        ``(b, rms)``: the slope per dioptre and the RMS residual (magnification units); ``(0, 0)``
        when every ``D`` equals ``d_ref``.
    """
    x = np.asarray(dioptres, np.float64) - d_ref
    y = np.asarray(magnifications, np.float64) - 1.0
    den = float((x * x).sum())
    if den == 0:
        return 0.0, 0.0
    b = float((x * y).sum()) / den
    return b, float(np.sqrt(np.mean((y - b * x) ** 2)))


# ----------------------------------------------------------------------------- resampling


def common_crop(width: int, height: int, magnifications: Sequence[float], margin_px: int = 1) -> tuple[float, float, int, int]:
    """The centred crop, in reference-frame pixels, that every frame covers after resampling.

    A frame of magnification ``m > 1`` resampled to the reference magnification covers only the central
    ``1/m`` of the reference's field of view; frames with ``m <= 1`` cover all of it.

    Args:
        width, height: source frame size, pixels.
        magnifications: per-frame magnification relative to the reference.
        margin_px: extra pixels dropped on each side (bilinear footprint).

    Returns:
        ``(x0, y0, w, h)``: top-left corner (may be half-integer) and size in pixels; ``w / h`` is as
        close to ``width / height`` as whole pixels allow.
    """
    m = max(1.0, *[float(v) for v in magnifications])
    w = int(math.floor((width - 1) / m)) + 1 - 2 * margin_px
    h_fit = int(math.floor((height - 1) / m)) + 1 - 2 * margin_px
    h = min(h_fit, int(round(w * height / width)))
    if w < 8 or h < 8:
        raise ConversionError(f"the frames' magnifications (up to {m:.3f}) leave no common field of view")
    return (width - w) / 2.0, (height - h) / 2.0, w, h


def resample_frame(rgb: np.ndarray, magnification: float, crop: tuple[float, float, int, int], out_size: tuple[int, int]) -> np.ndarray:
    """Resample a frame to the reference magnification, crop, and resize.

    The crop's pixel ``u`` (reference coordinates ``x = x0 + u``) is read from the frame at
    ``c + magnification * (x - c)`` (``c``: the image centre; bilinear), then the crop is area-resized.

    Args:
        rgb: ``(H, W, 3)`` uint8 frame.
        magnification: the frame's magnification relative to the reference.
        crop: ``(x0, y0, w, h)`` from :func:`common_crop`, reference pixels.
        out_size: ``(width, height)`` of the result, pixels (at most the crop's).

    Returns:
        ``(out_h, out_w, 3)`` float32 RGB in [0, 1].
    """
    import cv2

    h, w = rgb.shape[:2]
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    x0, y0, cw, ch = crop
    m = float(magnification)
    # src = c + m * (x0 + u - c)
    affine = np.array([[m, 0.0, cx + m * (x0 - cx)], [0.0, m, cy + m * (y0 - cy)]], np.float64)
    img = rgb.astype(np.float32) / 255.0
    warped = cv2.warpAffine(img, affine, (cw, ch), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_REPLICATE)
    if (cw, ch) != tuple(out_size):
        warped = cv2.resize(warped, tuple(int(v) for v in out_size), interpolation=cv2.INTER_AREA)
    return np.clip(warped, 0.0, 1.0)


# ----------------------------------------------------------------------------- conversion


def _output_size(crop: tuple[float, float, int, int], width: int, source_size: tuple[int, int], name: str) -> tuple[int, int]:
    """``(width, height)`` of the written frames: ``width`` wide with the source frames' aspect.

    Every scene of one camera then gets the same size (the crop's own aspect differs from the source's
    by under a pixel; the resize absorbs that, a scale difference of at most ``1 / crop height``).

    Raises:
        ConversionError: ``width`` is wider than the crop (frames are never upsampled).
    """
    cw = crop[2]
    if width > cw:
        raise ConversionError(f"--width {width}: larger than the registered crop of {name} ({cw} pixels); "
                              f"use --width {cw} or less (frames are never upsampled)")
    return int(width), max(1, int(round(width * source_size[1] / source_size[0])))


def convert_scene(scene: Path, frames: Sequence[SourceFrame], dest: Path, cfg: ConvertConfig, log: Log = _no_log) -> SceneResult:
    """Register the picked frames of one scene and write them as a focal-stack/1 folder at ``dest``.

    Args:
        scene: the scene folder.
        frames: the picked frames (:func:`select_frames`).
        dest: the stack folder to write (must not exist); written through a temporary folder.
        cfg: the configuration (lens numbers, output width, search range).
        log: called with progress lines.

    Returns:
        The :class:`SceneResult` (``stack_dir`` is ``cfg.out / scene.name``).
    """
    t0 = time.perf_counter()
    order = sorted(frames, key=lambda f: -f.dioptres)  # nearest focus first, as FocalStack keeps them
    ref_index = len(order) - 1  # the smallest dioptres: focused farthest
    images = [load_rgb(f.path) for f in order]
    src_h, src_w = images[0].shape[:2]
    regs = register_frames(images, ref_index, [f.path.name for f in order], cfg.scale_range, log)
    mags = [r.magnification for r in regs]
    b, rms = fit_breathing([f.dioptres for f in order], mags, order[ref_index].dioptres)
    crop = common_crop(src_w, src_h, mags)
    size = _output_size(crop, cfg.width, (src_w, src_h), scene.name)
    out = np.stack([resample_frame(img, m, crop, size) for img, m in zip(images, mags)])
    del images
    pitch_m = cfg.pitch_um * 1e-6 * crop[2] / size[0]  # one written pixel spans crop_w / width source pixels
    lens = LensProfile(
        focal_length_m=cfg.focal_mm * 1e-3,
        f_number=cfg.f_number,
        pixel_pitch_m=pitch_m,
        name=f"af4d-samsung-galaxy-s6-edge-{size[0]}x{size[1]}",
        image_size=size,
        focus_control=FocusControl(control="LENS_FOCUS_DISTANCE", a=1.0, b=0.0),
    )
    thin_b = cfg.focal_mm * 1e-3
    notes = []
    low = [f.path.name for f, r in zip(order, regs) if r.ncc < 0.3]
    if low:
        notes.append(f"weak registration (ncc < 0.3): {', '.join(low)}")
    if rms > 0.002:
        notes.append(f"magnifications are not linear in dioptres (rms residual {rms:.4f})")
    extra = {
        "source": {
            "dataset": SOURCE,
            "paper": "A. Abuolaim, A. Punnappurath, M. S. Brown, Revisiting Autofocus for Smartphone Cameras, ECCV 2018",
            "camera": "Samsung Galaxy S6 edge (SM-G925), 4.3 mm f/1.9",
            "scene": scene.name,
            "files": [f.path.name for f in order],
            "focus_dioptres": [f.dioptres for f in order],
            "source_size": [src_w, src_h],
            "licence": "none (the data set and its redistribution carry no licence)",
            "note": LICENCE_NOTE,
        },
        "registration": {
            "method": "isotropic scale about the image centre, NCC of blurred gradient magnitude, coarse-to-fine",
            "reference_file": order[ref_index].path.name,
            "magnification": mags,
            "ncc": [r.ncc for r in regs],
            "breathing_fit": {"model": "m = 1 + b * (D - D_ref)", "b_per_dioptre": b, "d_ref": order[ref_index].dioptres,
                              "rms_residual": rms, "thin_lens_b_per_dioptre": thin_b},
            "crop_source_px": [crop[0], crop[1], crop[2], crop[3]],
            "pixel_pitch_note": f"{cfg.pitch_um:g} um at the {src_w} px source width x crop {crop[2]} px / {size[0]} px",
            "warnings": notes,
        },
    }
    stack = FocalStack(images=out, focus_m=np.array([1.0 / f.dioptres for f in order]), lens=lens, extra=extra)
    with atomic_dir(dest) as tmp:
        write_stack(tmp, stack, overwrite=True, lens_profile_ref="lens.json")  # replaces the empty tmp atomically
        lens.save(tmp / "lens.json")
    return SceneResult(
        scene=scene, stack_dir=cfg.out / scene.name, frames=list(order), registrations=regs, breathing_b=b,
        breathing_rms=rms, reference=order[ref_index], crop=crop, size=size, pixel_pitch_m=pitch_m,
        seconds=time.perf_counter() - t0, notes=notes,
    )


def _check_config(cfg: ConvertConfig) -> None:
    """Refuse impossible numbers and an unusable output folder (:class:`ConversionError`)."""
    if not cfg.scenes:
        raise ConversionError("no scene folders given")
    if len(cfg.dioptres) < 2:
        raise ConversionError(f"--dioptres: a focal stack needs at least 2 focus settings, got {len(cfg.dioptres)}")
    for name, v in (("--width", cfg.width), ("--focal-mm", cfg.focal_mm), ("--f-number", cfg.f_number),
                    ("--pitch-um", cfg.pitch_um)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ConversionError(f"{name} {v}: expected a positive number")
    if cfg.width < 16:
        raise ConversionError(f"--width {cfg.width}: too small, use at least 16 pixels")
    if any(not (math.isfinite(d) and d > 0) for d in cfg.dioptres):
        raise ConversionError(f"--dioptres {','.join(f'{d:g}' for d in cfg.dioptres)}: expected positive dioptres")
    out = Path(cfg.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConversionError(f"--out {out}: exists and is not an empty folder; choose a new folder (or empty it)")
    names = [Path(s).name for s in cfg.scenes]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConversionError(f"two scene folders are named {dup[0]!r}; their stacks would collide under --out "
                              f"(copy or link one under another name)")
    try:
        LensProfile(cfg.focal_mm * 1e-3, cfg.f_number, cfg.pitch_um * 1e-6)
    except FormatError as e:
        raise ConversionError(str(e)) from None


def plan(cfg: ConvertConfig) -> list[tuple[Path, list[SourceFrame]]]:
    """Check every scene before anything is written: names, picked frames, frame sizes.

    Returns:
        ``(scene folder, picked frames)`` per scene, in the order given.

    Raises:
        ConversionError: naming the file or value and the fix.
    """
    _check_config(cfg)
    jobs = []
    for scene in cfg.scenes:
        scene = Path(scene)
        picked = select_frames(parse_scene(scene), cfg.dioptres, cfg.tolerance_d)
        src_w, _ = _check_sizes(picked)
        if cfg.width > src_w:
            raise ConversionError(f"--width {cfg.width}: wider than the frames of {scene} ({src_w} pixels); use "
                                  f"less than {src_w} (the registered crop is narrower still; frames are never upsampled)")
        jobs.append((scene, picked))
    return jobs


def convert(cfg: ConvertConfig) -> list[SceneResult]:
    """Convert every scene of ``cfg`` into ``cfg.out/<scene name>/`` (focal-stack/1).

    Everything is checked first (:func:`plan`); the output root is then built in a temporary sibling
    folder and renamed to ``cfg.out`` when every scene is done, so a failure leaves nothing behind.

    Raises:
        ConversionError: bad input (nothing is written).
        OSError: on a full disk or another write failure (nothing is left at ``cfg.out``).
    """
    log: Log = _no_log if cfg.quiet else (lambda s: print(s, flush=True))
    jobs = plan(cfg)
    out = Path(cfg.out)
    results: list[SceneResult] = []
    existed = out.exists()
    with atomic_dir(out, overwrite=existed) as root:
        for scene, picked in jobs:
            log(f"{scene.name}: frames " + ", ".join(f"{f.path.name} ({f.dioptres:.3f} D)" for f in picked))
            res = convert_scene(scene, picked, root / scene.name, cfg, log)
            results.append(res)
            _report(res, cfg, log)
    return results


def _report(res: SceneResult, cfg: ConvertConfig, log: Log) -> None:
    """The breathing report of one scene."""
    d_ref = res.reference.dioptres
    log(f"{res.scene.name}: breathing relative to {res.reference.path.name} ({d_ref:.3f} D):")
    for f, r in zip(res.frames, res.registrations):
        pred = 1.0 + res.breathing_b * (f.dioptres - d_ref)
        log(f"  {f.dioptres:7.3f} D  focus {1.0 / f.dioptres:6.3f} m  magnification {r.magnification:.5f}  "
            f"fit {pred:.5f}  ncc {r.ncc:.3f}")
    thin = cfg.focal_mm * 1e-3
    log(f"  fit: magnification = 1 + {res.breathing_b:.5f} * (D - {d_ref:.3f}), rms {res.breathing_rms:.5f} "
        f"({res.breathing_b / thin:.2f}x the thin-lens f = {thin:.4f} per dioptre)")
    x0, y0, cw, ch = res.crop
    log(f"  crop {cw}x{ch} at ({x0:g}, {y0:g}) source px -> {res.size[0]}x{res.size[1]}, "
        f"pixel pitch {res.pixel_pitch_m * 1e6:.3f} um; {res.seconds:.1f} s -> {res.stack_dir}")
    for n in res.notes:
        log(f"  warning: {n}")


# ----------------------------------------------------------------------------- command line


def _dioptre_list(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated dioptres, e.g. 1.0,2.0,3.2,4.4,5.6") from None
    if not vals:
        raise argparse.ArgumentTypeError("expected comma-separated dioptres, e.g. 1.0,2.0,3.2,4.4,5.6")
    return vals


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    p = argparse.ArgumentParser(prog="python scripts/af4d_to_stacks.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenes", nargs="+", type=Path, metavar="SCENE_DIR",
                   help="AF 4D scene folders holding IMAGE_<n>_<dioptres>.jpg files")
    p.add_argument("--out", type=Path, required=True, metavar="OUT_DIR",
                   help="output root (new or empty); one stack folder per scene, named after the scene folder")
    p.add_argument("--dioptres", type=_dioptre_list, default=DEFAULT_DIOPTRES, metavar="D1,D2,...",
                   help="focus settings to pick, dioptres (1/m); the nearest frame is taken for each "
                        f"(default: {','.join(f'{d:g}' for d in DEFAULT_DIOPTRES)})")
    p.add_argument("--width", type=int, default=1632, help="width of the written frames, pixels (default: 1632)")
    p.add_argument("--focal-mm", type=float, default=4.3, help="focal length, mm (default: 4.3, from the EXIF)")
    p.add_argument("--f-number", type=float, default=1.9, help="f-number (default: 1.9, from the EXIF)")
    p.add_argument("--pitch-um", type=float, default=1.8,
                   help="pixel pitch of the source JPEGs at their full width, um (default: 1.8 = 1.12 um sensor "
                        "pixels x 5312/3264 for the 3264 px AF 4D frames)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the converter; returns the exit code (0 done, 1 write failure, 2 bad input)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, already printed by argparse)
        return int(e.code or 0)
    cfg = ConvertConfig(scenes=tuple(args.scenes), out=args.out, dioptres=tuple(args.dioptres), width=args.width,
                        focal_mm=args.focal_mm, f_number=args.f_number, pitch_um=args.pitch_um, quiet=args.quiet)
    t0 = time.perf_counter()
    try:
        results = convert(cfg)
    except (ConversionError, FormatError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {e.filename + ': ' if getattr(e, 'filename', None) else ''}{e.strerror or e}", file=sys.stderr)
        return 1
    if not cfg.quiet:
        print(f"wrote {len(results)} stack(s) to {cfg.out} in {time.perf_counter() - t0:.1f} s "
              f"(no licence: keep them out of the repository)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
