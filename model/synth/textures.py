"""A bank of all-in-focus textures: fast procedural patterns and scikit-image's bundled photographs.

Every texture is float32 ``(H, W, 3)`` RGB in ``[0, 1]``. Photographs are split once and for all into
:data:`TRAIN_PHOTOS` and :data:`HELD_OUT_PHOTOS`; the held-out ones (and the Middlebury Motorcycle
pair, :data:`HELD_OUT_EXTRA`) are reserved for the evaluation set (``model.make_eval``) and never
returned by ``random_texture(..., split="train")``.

Only images that ship inside the scikit-image wheel are used (no network, no ``pooch``); names that
cannot be loaded in the installed version are skipped with a warning (:func:`available_photos`).
``skimage.data.cat`` is the same picture as ``chelsea`` and is therefore not used at all.

More training photographs can come from a folder (``scripts/get_photos.sh`` fills ``data/photos/`` with
the sample images of Debian's ``opencv-doc``): :func:`folder_photos` lists its usable images (any image
that matches a held-out photograph is skipped), and ``random_texture(..., photo_dir=...)`` — or any
texture drawn inside ``with training_photo_dir(...)`` — draws from them beside scikit-image's training
photographs. They are never used for the held-out split.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import math
import os
from pathlib import Path
from typing import Callable, Iterator, Literal

import cv2
import numpy as np

__all__ = [
    "TRAIN_PHOTOS",
    "HELD_OUT_PHOTOS",
    "HELD_OUT_EXTRA",
    "Split",
    "available_photos",
    "load_photo",
    "load_photo_file",
    "folder_photos",
    "training_photo_dir",
    "value_noise",
    "stripes",
    "checker",
    "blobs",
    "colourise",
    "procedural_texture",
    "photo_texture",
    "random_texture",
]

log = logging.getLogger(__name__)

Split = Literal["train", "held_out"]

#: Photographs (``skimage.data.<name>``) used for training content.
TRAIN_PHOTOS: tuple[str, ...] = (
    "astronaut",
    "brick",
    "grass",
    "camera",
    "text",
    "coins",
    "moon",
    "page",
    "clock",
    "cell",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "colorwheel",
)

#: Photographs reserved for evaluation; never used for training.
HELD_OUT_PHOTOS: tuple[str, ...] = ("coffee", "chelsea", "rocket", "gravel")

#: Other held-out scikit-image data: the Middlebury 2014 Motorcycle RGB-D pair (``stereo_motorcycle``).
#: ``cat`` is an alias of ``chelsea`` and is excluded from both splits.
HELD_OUT_EXTRA: tuple[str, ...] = ("stereo_motorcycle", "cat")

_SPLITS = ("train", "held_out")


def _check_split(split: str) -> None:
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")


@functools.lru_cache(maxsize=None)
def _load_photo_cached(name: str) -> np.ndarray:
    import skimage.data

    fn: Callable[[], np.ndarray] | None = getattr(skimage.data, name, None)
    if fn is None:
        raise ValueError(f"skimage.data has no image {name!r}")
    img = np.asarray(fn())
    if img.dtype == bool:
        img = img.astype(np.float32)
    elif img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    elif img.dtype == np.uint16:
        img = img.astype(np.float32) / 65535.0
    else:
        img = img.astype(np.float32)
        lo, hi = float(img.min()), float(img.max())
        img = (img - lo) / max(hi - lo, 1e-12)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"skimage.data.{name}: unexpected shape {img.shape}")
    img = np.ascontiguousarray(np.clip(img, 0.0, 1.0))
    img.setflags(write=False)
    return img


def load_photo(name: str) -> np.ndarray:
    """One bundled scikit-image photograph as float32 ``(H, W, 3)`` in ``[0, 1]`` (read-only, cached).

    Grey images are repeated into three channels. Raises ``ValueError`` for a name that is not in
    :data:`TRAIN_PHOTOS` or :data:`HELD_OUT_PHOTOS`, and whatever scikit-image raises if the image is
    not bundled with the installed version.
    """
    if name not in TRAIN_PHOTOS and name not in HELD_OUT_PHOTOS:
        raise ValueError(f"unknown photo {name!r}: known are {TRAIN_PHOTOS + HELD_OUT_PHOTOS}")
    return _load_photo_cached(name)


@functools.lru_cache(maxsize=None)
def available_photos(split: Split = "train") -> tuple[str, ...]:
    """The photographs of ``split`` that load offline in the installed scikit-image (others are logged)."""
    _check_split(split)
    names = TRAIN_PHOTOS if split == "train" else HELD_OUT_PHOTOS
    ok = []
    for n in names:
        try:
            load_photo(n)
        except Exception as e:  # noqa: BLE001 - a missing optional image only shrinks the bank
            log.warning("skimage.data.%s unavailable (%s: %s); skipped", n, type(e).__name__, e)
            continue
        ok.append(n)
    return tuple(ok)


# ----------------------------------------------------------------------------- photographs from a folder

#: File types :func:`folder_photos` reads (case-insensitive).
PHOTO_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")
#: Folder photographs with a shorter side below this (pixels) are skipped.
MIN_PHOTO_SIDE = 64
#: Folder photographs are shrunk (area average) to at most this longer side (pixels), to bound memory.
MAX_PHOTO_SIDE = 1024

_photo_dir_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("training_photo_dir", default=None)


@functools.lru_cache(maxsize=None)
def load_photo_file(path: str) -> np.ndarray:
    """An image file as ``(H, W, 3)`` RGB (read-only, cached): uint8 for 8-bit files, else float32 in [0, 1].

    Grey images are repeated into three channels, alpha is dropped, and images whose longer side exceeds
    :data:`MAX_PHOTO_SIDE` are shrunk to it. Raises ``ValueError`` for a file that cannot be read as an image.
    """
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ValueError(f"{path}: cannot be read as an image")
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 3:
        img = img[:, :, ::-1]  # BGR -> RGB
    else:
        raise ValueError(f"{path}: unexpected image shape {img.shape}")
    if img.dtype != np.uint8:
        top = 65535.0 if img.dtype == np.uint16 else max(float(img.max()), 1e-12)
        img = np.clip(img.astype(np.float32) / top, 0.0, 1.0)
    side = max(img.shape[:2])
    if side > MAX_PHOTO_SIDE:
        f = MAX_PHOTO_SIDE / side
        size = (max(1, round(img.shape[1] * f)), max(1, round(img.shape[0] * f)))
        img = cv2.resize(np.ascontiguousarray(img), size, interpolation=cv2.INTER_AREA)
    img = np.ascontiguousarray(img)
    img.setflags(write=False)
    return img


def _thumbnail(img: np.ndarray) -> np.ndarray:
    """Grey 32x32 thumbnail, zero mean and unit norm (for finding copies of a photograph)."""
    g = img.astype(np.float32)
    if img.dtype == np.uint8:
        g /= 255.0
    t = cv2.resize(np.ascontiguousarray(g.mean(axis=2)), (32, 32), interpolation=cv2.INTER_AREA).astype(np.float64)
    t -= t.mean()
    return t / max(float(np.linalg.norm(t)), 1e-9)


@functools.lru_cache(maxsize=1)
def _held_out_thumbnails() -> tuple[np.ndarray, ...]:
    """Thumbnails of every held-out picture (:data:`HELD_OUT_PHOTOS`, the Motorcycle pair) and their flips."""
    pics = [load_photo(n) for n in available_photos("held_out")]
    try:
        import skimage.data

        left, right, _ = skimage.data.stereo_motorcycle()
        pics += [np.asarray(left), np.asarray(right)]
    except Exception as e:  # noqa: BLE001 - only shrinks the check; the evaluation cannot use it either
        log.debug("stereo_motorcycle unavailable for the held-out check (%s)", e)
    out = []
    for p in pics:
        t = _thumbnail(p)
        out += [t, t[::-1], t[:, ::-1], t[::-1, ::-1], t.T, t.T[::-1], t.T[:, ::-1], t.T[::-1, ::-1]]
    return tuple(out)


def _is_held_out_copy(img: np.ndarray, threshold: float = 0.97) -> bool:
    t = _thumbnail(img)
    return any(float((t * h).sum()) > threshold for h in _held_out_thumbnails())


@functools.lru_cache(maxsize=None)
def _folder_photos(folder: str) -> tuple[str, ...]:
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"photo_dir {folder}: no such folder (fetch photos with scripts/get_photos.sh, or leave photo_dir unset)")
    files = sorted(str(f) for f in root.rglob("*") if f.suffix.lower() in PHOTO_SUFFIXES and f.is_file())
    ok = []
    for f in files:
        try:
            img = load_photo_file(f)
        except ValueError as e:
            log.warning("%s; skipped", e)
            continue
        if min(img.shape[:2]) < MIN_PHOTO_SIDE:
            log.warning("%s: %dx%d is smaller than %d px; skipped", f, img.shape[1], img.shape[0], MIN_PHOTO_SIDE)
            continue
        if _is_held_out_copy(img):
            log.warning("%s: a copy of a held-out photograph (kept for evaluation); skipped", f)
            continue
        ok.append(f)
    if not ok:
        raise ValueError(f"photo_dir {folder}: no usable .png/.jpg image (at least {MIN_PHOTO_SIDE} px, not a held-out photograph)")
    log.info("photo_dir %s: %d training photographs", folder, len(ok))
    return tuple(ok)


def folder_photos(photo_dir: str | os.PathLike[str]) -> tuple[str, ...]:
    """The usable training photographs in ``photo_dir`` (searched recursively; cached): paths of
    ``.png``/``.jpg`` images at least :data:`MIN_PHOTO_SIDE` px on the shorter side that are not a copy
    (up to flips and scale) of a held-out picture.

    Raises:
        ValueError: the folder does not exist or holds no usable image (the message says how to fetch some).
    """
    return _folder_photos(os.path.abspath(os.fspath(photo_dir)))


@contextlib.contextmanager
def training_photo_dir(photo_dir: str | os.PathLike[str] | None) -> Iterator[None]:
    """Inside this block, train-split textures (:func:`random_texture` without its own ``photo_dir``) draw
    from ``photo_dir``'s photographs too; ``None`` changes nothing. For callers that reach
    :func:`random_texture` through other functions (:func:`model.synth.scenes.random_scene`)."""
    token = _photo_dir_var.set(None if photo_dir is None else os.fspath(photo_dir))
    try:
        yield
    finally:
        _photo_dir_var.reset(token)


# ----------------------------------------------------------------------------- procedural patterns


def value_noise(
    rng: np.random.Generator, h: int, w: int, octaves: int = 5, base_cells: float = 4.0, persistence: float = 0.6
) -> np.ndarray:
    """Multi-octave value noise (bicubic-interpolated random lattices), float32 ``(h, w)`` in ``[0, 1]``.

    Octave ``k`` has about ``base_cells * 2**k`` cells across the longer side and amplitude
    ``persistence**k``; the sum is rescaled to fill ``[0, 1]``.
    """
    out = np.zeros((h, w), np.float32)
    amp = 1.0
    side = max(h, w)
    for k in range(octaves):
        cells = base_cells * (2.0**k)
        if cells > side:
            break
        gh = max(2, int(math.ceil(cells * h / side)) + 1)
        gw = max(2, int(math.ceil(cells * w / side)) + 1)
        grid = rng.random((gh, gw), dtype=np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        amp *= persistence
    return _normalise(out)


def stripes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Sine or square stripes at a random angle, period 3-30 px, optionally warped; ``(h, w)`` in [0, 1]."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    period = float(np.exp(rng.uniform(np.log(3.0), np.log(30.0))))
    phase = (xx * np.cos(theta) + yy * np.sin(theta)) * (2 * np.pi / period)
    if rng.random() < 0.5:
        phase += rng.uniform(1, 6) * (value_noise(rng, h, w, octaves=2, base_cells=2) - 0.5)
    s = np.sin(phase + rng.uniform(0, 2 * np.pi))
    if rng.random() < 0.5:
        s = np.sign(s)
    return (0.5 + 0.5 * s).astype(np.float32)


def checker(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A rotated checkerboard with squares of 3-24 px; ``(h, w)`` in {0, 1} (anti-aliased)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0, np.pi / 2)
    size = float(np.exp(rng.uniform(np.log(3.0), np.log(24.0))))
    u = (xx * np.cos(theta) + yy * np.sin(theta)) / size
    v = (-xx * np.sin(theta) + yy * np.cos(theta)) / size
    # smooth square waves (anti-aliasing of about one pixel)
    k = size * 1.5
    su = np.tanh(k * np.sin(np.pi * u) / np.pi)
    sv = np.tanh(k * np.sin(np.pi * v) / np.pi)
    return (0.5 + 0.5 * su * sv).astype(np.float32)


def blobs(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Random discs of many sizes on a noise background; ``(h, w)`` in [0, 1]."""
    img = 0.5 * value_noise(rng, h, w, octaves=3, base_cells=3)
    n = int(rng.integers(10, 60))
    rmax = max(2.0, 0.15 * max(h, w))
    for _ in range(n):
        r = float(np.exp(rng.uniform(np.log(1.5), np.log(rmax))))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        cv2.circle(img, (int(cx * 16), int(cy * 16)), int(r * 16), float(rng.random()), -1, cv2.LINE_AA, 4)
    return np.clip(img, 0.0, 1.0)


def _normalise(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return ((x - lo) / max(hi - lo, 1e-6)).astype(np.float32)


def colourise(rng: np.random.Generator, grey: np.ndarray) -> np.ndarray:
    """Map a grey ``(h, w)`` pattern to RGB ``(h, w, 3)`` through a random colour ramp of 2-4 colours."""
    n = int(rng.integers(2, 5))
    stops = np.sort(rng.random(n)).astype(np.float32)
    stops[0], stops[-1] = 0.0, 1.0
    colours = rng.random((n, 3)).astype(np.float32)
    if rng.random() < 0.5:  # keep contrast: force a dark and a bright end
        colours[0] *= 0.3
        colours[-1] = 0.6 + 0.4 * colours[-1]
    g = grey.reshape(-1)
    out = np.stack([np.interp(g, stops, colours[:, c]) for c in range(3)], axis=-1)
    return out.reshape(grey.shape + (3,)).astype(np.float32)


def _rich_noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Value noise with random coarseness and roughness (fine detail down to a few pixels)."""
    return value_noise(rng, h, w, octaves=8, base_cells=float(rng.uniform(2.0, 8.0)), persistence=float(rng.uniform(0.55, 0.9)))


_PATTERNS: tuple[Callable[[np.random.Generator, int, int], np.ndarray], ...] = (
    _rich_noise,
    _rich_noise,
    stripes,
    checker,
    blobs,
)


def procedural_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random procedural texture, float32 ``(h, w, 3)`` in [0, 1].

    One of: multi-octave value noise, stripes, checkerboard, blobs — optionally multiplied by a second
    pattern — coloured through a random ramp, sometimes with independent noise per channel.
    """
    pat = _PATTERNS[int(rng.integers(len(_PATTERNS)))]
    g = pat(rng, h, w)
    if rng.random() < 0.3:
        g = _normalise(g * (0.4 + 0.6 * value_noise(rng, h, w, octaves=int(rng.integers(2, 6)))))
    if rng.random() < 0.2:
        rgb = np.stack([value_noise(rng, h, w, octaves=int(rng.integers(3, 7))) for _ in range(3)], -1)
        return (0.5 * rgb + 0.5 * g[..., None]).astype(np.float32)
    return colourise(rng, g)


def photo_texture(rng: np.random.Generator, h: int, w: int, name: str, scale_range: tuple[float, float] = (0.35, 1.0)) -> np.ndarray:
    """A random crop of photograph ``name`` (a scikit-image name, or a path from :func:`folder_photos`),
    resized to ``(h, w, 3)`` float32.

    The crop covers ``(h, w) / s`` photo pixels for a zoom ``s`` drawn log-uniformly in ``scale_range``
    (clipped to the photo), then is flipped / rotated by 90 degrees at random. Grey photos get a random
    colour ramp half of the time.
    """
    img = load_photo(name) if name in TRAIN_PHOTOS or name in HELD_OUT_PHOTOS else load_photo_file(name)
    ph, pw = img.shape[:2]
    if rng.random() < 0.5:  # rotate the crop window too, so tall crops of wide photos work
        img = np.rot90(img)
        ph, pw = pw, ph
    s = float(np.exp(rng.uniform(np.log(scale_range[0]), np.log(scale_range[1]))))
    ch, cw = h / s, w / s
    fit = min(1.0, ph / ch, pw / cw)
    ch, cw = max(2, int(round(ch * fit))), max(2, int(round(cw * fit)))
    y0 = int(rng.integers(0, ph - ch + 1))
    x0 = int(rng.integers(0, pw - cw + 1))
    crop = img[y0 : y0 + ch, x0 : x0 + cw]
    if crop.dtype == np.uint8:
        crop = crop.astype(np.float32) / 255.0
    interp = cv2.INTER_AREA if ch > h else cv2.INTER_LINEAR
    out = cv2.resize(np.ascontiguousarray(crop), (w, h), interpolation=interp)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    if rng.random() < 0.5:
        out = out[::-1]
    grey = bool(np.allclose(out[..., 0], out[..., 1]) and np.allclose(out[..., 1], out[..., 2]))
    if grey and rng.random() < 0.5:
        out = colourise(rng, out[..., 0])
    return np.ascontiguousarray(out, dtype=np.float32)


def random_texture(
    rng: np.random.Generator, h: int, w: int, split: Split = "train", photo_prob: float = 0.5, photo_dir: str | os.PathLike[str] | None = None
) -> np.ndarray:
    """A random all-in-focus texture, float32 ``(h, w, 3)`` in ``[0, 1]``.

    Args:
        rng: the random generator (all randomness comes from it).
        h, w: size in pixels (>= 1).
        split: ``"train"``: procedural patterns (probability ``1 - photo_prob``) or a crop of one of
            :data:`TRAIN_PHOTOS`; ``"held_out"``: a crop of one of :data:`HELD_OUT_PHOTOS` only.
        photo_prob: probability of a photograph in the train split.
        photo_dir: train split: also draw the photograph from this folder's (:func:`folder_photos`; each
            photograph, scikit-image's or the folder's, equally likely). Default: the folder of the
            enclosing :func:`training_photo_dir` block, if any.

    Raises:
        ValueError: bad split or size; a missing or unusable ``photo_dir``.
    """
    _check_split(split)
    if int(h) < 1 or int(w) < 1:
        raise ValueError(f"texture size must be positive, got {h}x{w}")
    h, w = int(h), int(w)
    names = available_photos(split)
    if split == "held_out":
        if not names:
            raise ValueError("no held-out photographs are available in the installed scikit-image")
        return photo_texture(rng, h, w, names[int(rng.integers(len(names)))])
    folder = photo_dir if photo_dir is not None else _photo_dir_var.get()
    if folder is not None:
        names = names + folder_photos(folder)
    if names and rng.random() < photo_prob:
        tex = photo_texture(rng, h, w, names[int(rng.integers(len(names)))])
    else:
        tex = procedural_texture(rng, h, w)
    return np.clip(tex, 0.0, 1.0)
