"""A bank of all-in-focus textures: fast procedural patterns and scikit-image's bundled photographs.

Every texture is float32 ``(H, W, 3)`` RGB in ``[0, 1]``. Photographs are split once and for all into
:data:`TRAIN_PHOTOS` and :data:`HELD_OUT_PHOTOS`; the held-out ones (and the Middlebury Motorcycle
pair, :data:`HELD_OUT_EXTRA`) are reserved for the evaluation set (``model.make_eval``) and never
returned by ``random_texture(..., split="train")``.

Only images that ship inside the scikit-image wheel are used (no network, no ``pooch``); names that
cannot be loaded in the installed version are skipped with a warning (:func:`available_photos`).
``skimage.data.cat`` is the same picture as ``chelsea`` and is therefore not used at all.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Callable, Literal

import cv2
import numpy as np

__all__ = [
    "TRAIN_PHOTOS",
    "HELD_OUT_PHOTOS",
    "HELD_OUT_EXTRA",
    "Split",
    "available_photos",
    "load_photo",
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
    """A random crop of photograph ``name``, resized to ``(h, w, 3)`` float32.

    The crop covers ``(h, w) / s`` photo pixels for a zoom ``s`` drawn log-uniformly in ``scale_range``
    (clipped to the photo), then is flipped / rotated by 90 degrees at random. Grey photos get a random
    colour ramp half of the time.
    """
    img = load_photo(name)
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


def random_texture(rng: np.random.Generator, h: int, w: int, split: Split = "train", photo_prob: float = 0.5) -> np.ndarray:
    """A random all-in-focus texture, float32 ``(h, w, 3)`` in ``[0, 1]``.

    Args:
        rng: the random generator (all randomness comes from it).
        h, w: size in pixels (>= 1).
        split: ``"train"``: procedural patterns (probability ``1 - photo_prob``) or a crop of one of
            :data:`TRAIN_PHOTOS`; ``"held_out"``: a crop of one of :data:`HELD_OUT_PHOTOS` only.
        photo_prob: probability of a photograph in the train split.

    Raises:
        ValueError: bad split or size.
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
    if names and rng.random() < photo_prob:
        tex = photo_texture(rng, h, w, names[int(rng.integers(len(names)))])
    else:
        tex = procedural_texture(rng, h, w)
    return np.clip(tex, 0.0, 1.0)
